//! fnmatch-style patterns for a trigger's `on` field and the `glob()` filter function.
//!
//! The rules are Python's `fnmatch.fnmatchcase`, exactly: case-sensitive; `*` matches any run of
//! characters, `.` and `/` included; `?` matches one character; `[seq]` and `[!seq]` match one
//! character in or not in the set (ranges `a-z`, a `]` first in the set is literal); an unclosed
//! `[` is a literal `[`; every other character, backslash included, is literal. A pattern is
//! translated once into an anchored [`Regex`]; a pattern without `*`, `?` or `[` is compared as a
//! plain string.

use regex::Regex;

/// Why a list of `on` patterns was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GlobError {
    /// The list holds no pattern at all.
    #[error("at least one pattern is required")]
    Empty,
    /// One pattern cannot be used.
    #[error("invalid pattern {pattern:?}: {message}")]
    InvalidPattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        message: String,
    },
}

/// One compiled pattern.
#[derive(Clone, Debug)]
pub(crate) enum GlobMatcher {
    /// No wildcard: the text must equal the pattern.
    Literal(String),
    /// The anchored translation of the pattern.
    Regex(Regex),
}

impl GlobMatcher {
    /// Compiles `pattern`; fails only if the regex engine refuses the translation (size limits).
    pub(crate) fn new(pattern: &str) -> Result<GlobMatcher, regex::Error> {
        if pattern.contains(['*', '?', '[']) {
            Regex::new(&translate(pattern)).map(GlobMatcher::Regex)
        } else {
            Ok(GlobMatcher::Literal(pattern.to_owned()))
        }
    }

    /// Whether the whole of `text` matches.
    pub(crate) fn is_match(&self, text: &str) -> bool {
        match self {
            GlobMatcher::Literal(literal) => literal == text,
            GlobMatcher::Regex(regex) => regex.is_match(text),
        }
    }
}

/// A trigger's `on` patterns, compiled once and shared read-only (Send + Sync).
#[derive(Clone, Debug)]
pub struct OnPatterns {
    matchers: Vec<GlobMatcher>,
}

impl OnPatterns {
    /// Compiles every pattern; refuses an empty list and an empty pattern.
    pub fn compile<S: AsRef<str>>(patterns: &[S]) -> Result<OnPatterns, GlobError> {
        if patterns.is_empty() {
            return Err(GlobError::Empty);
        }
        let matchers = patterns
            .iter()
            .map(|pattern| compile_one(pattern.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OnPatterns { matchers })
    }

    /// Whether any of the patterns matches the whole event key.
    pub fn matches(&self, key: &str) -> bool {
        self.matchers.iter().any(|matcher| matcher.is_match(key))
    }
}

fn compile_one(pattern: &str) -> Result<GlobMatcher, GlobError> {
    let invalid = |message: String| GlobError::InvalidPattern {
        pattern: pattern.to_owned(),
        message,
    };
    if pattern.is_empty() {
        return Err(invalid("a pattern cannot be empty".to_owned()));
    }
    GlobMatcher::new(pattern).map_err(|err| invalid(err.to_string()))
}

/// Whether `text` matches the single fnmatch `pattern` (compiled for this one call).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    match GlobMatcher::new(pattern) {
        Ok(matcher) => matcher.is_match(text),
        // Only a translation over the regex size limit gets here; nothing that long can match.
        Err(_) => false,
    }
}

/// Translates a pattern into an anchored regex, like Python's `fnmatch.translate`.
pub(crate) fn translate(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::from(r"\A");
    let mut i = 0;
    let mut after_star = false;
    while let Some(&c) = chars.get(i) {
        i += 1;
        // Consecutive stars are one star (keeps the regex small).
        let star = c == '*';
        match c {
            '*' if after_star => {}
            '*' => out.push_str("(?s:.*)"),
            '?' => out.push_str("(?s:.)"),
            '[' => match class_end(&chars, i) {
                Some(end) => {
                    out.push_str(&translate_class(&chars[i..end]));
                    i = end + 1;
                }
                None => out.push_str(r"\["),
            },
            _ => out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
        after_star = star;
    }
    out.push_str(r"\z");
    out
}

/// Index of the `]` closing a class whose content starts at `start`, if any.
fn class_end(chars: &[char], start: usize) -> Option<usize> {
    let mut j = start;
    if chars.get(j) == Some(&'!') {
        j += 1;
    }
    if chars.get(j) == Some(&']') {
        j += 1;
    }
    chars[j.min(chars.len())..]
        .iter()
        .position(|&c| c == ']')
        .map(|offset| j + offset)
}

/// Translates the content of `[...]` (without the brackets) into a regex class.
fn translate_class(content: &[char]) -> String {
    let (negated, items) = match content.split_first() {
        Some(('!', rest)) => (true, rest),
        _ => (false, content),
    };
    let mut class = String::new();
    let mut k = 0;
    while let Some(&lo) = items.get(k) {
        // `x-y` is a range unless the `-` is the last character of the set.
        if items.get(k + 1) == Some(&'-') && k + 2 < items.len() {
            let hi = items[k + 2];
            // An empty range (lo > hi) matches nothing, as in Python.
            if lo <= hi {
                class.push_str(&format!("{}-{}", hex(lo), hex(hi)));
            }
            k += 3;
        } else {
            class.push_str(&hex(lo));
            k += 1;
        }
    }
    match (negated, class.is_empty()) {
        (false, true) => r"[^\x{0}-\x{10FFFF}]".to_owned(),
        (true, true) => "(?s:.)".to_owned(),
        (false, false) => format!("[{class}]"),
        (true, false) => format!("[^{class}]"),
    }
}

/// A character as a regex escape that means itself everywhere, inside a class too.
fn hex(c: char) -> String {
    format!(r"\x{{{:X}}}", u32::from(c))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn follows_fnmatch_rules() {
        let cases = [
            ("message.*", "message.channels/x.y", true),
            ("message.*", "Message.channels", false),
            ("*", "line\nbreak", true),
            ("?", "é", true),
            ("??", "é", false),
            ("[!a-c]x", "dx", true),
            ("[!a-c]x", "bx", false),
            ("[]]", "]", true),
            ("[!]]", "a", true),
            ("a[", "a[", true),
            ("[a-]", "-", true),
            ("{a,b}", "a", false),
            ("{a,b}", "{a,b}", true),
            ("a\\*", "a\\bc", true),
            ("a**b", "ab", true),
            ("[z-a]", "z", false),
            ("[!z-a]", "q", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                glob_match(pattern, text),
                expected,
                "{pattern:?} vs {text:?}"
            );
        }
    }

    #[test]
    fn translates_to_an_anchored_regex() {
        assert_eq!(translate("a*?"), r"\Aa(?s:.*)(?s:.)\z");
        assert_eq!(translate("[!a-c]"), r"\A[^\x{61}-\x{63}]\z");
        assert_eq!(translate("a.["), r"\Aa\.\[\z");
    }

    #[test]
    fn a_pattern_without_wildcards_is_a_plain_comparison() {
        assert!(matches!(
            GlobMatcher::new("a.b{c}").unwrap(),
            GlobMatcher::Literal(_)
        ));
        assert!(matches!(
            GlobMatcher::new("a[b").unwrap(),
            GlobMatcher::Regex(_)
        ));
    }

    #[test]
    fn compiled_patterns_are_shareable() {
        fn shareable<T: Send + Sync>(_: &T) {}
        let on = OnPatterns::compile(&["a.*", "b"]).unwrap();
        shareable(&on);
        assert!(on.matches("b") && on.matches("a.x") && !on.matches("c"));
    }
}
