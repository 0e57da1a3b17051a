//! The compiled matcher against fnmatch rules and against the regex translation (the oracle).
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
        GlobMatcher::new("a.b{c}"),
        GlobMatcher::Literal(_)
    ));
    assert!(matches!(GlobMatcher::new("a[b"), GlobMatcher::Exact(_)));
    assert!(matches!(GlobMatcher::new("a*b"), GlobMatcher::Starred(_)));
}

#[test]
fn stars_place_middle_segments_leftmost_without_losing_a_match() {
    let cases = [
        ("*a*b*", "xxaxxbxx", true),
        ("*ab*ab", "abab", true),
        ("*ab*ab", "aba", false),
        ("a*a", "a", false),
        ("a*a", "aa", true),
        ("*é?", "xéé", true),
        ("?*?", "é", false),
        ("*[!a]*", "aaa", false),
        ("*[!a]*", "aab", true),
        ("x*", "", false),
        ("*", "", true),
    ];
    for (pattern, text, expected) in cases {
        assert_eq!(
            GlobMatcher::new(pattern).is_match(text),
            expected,
            "{pattern:?} vs {text:?}"
        );
    }
}

proptest::proptest! {
    #[test]
    fn agrees_with_the_regex_translation(
        pattern in "[ab*?\\[\\]!\\-é.]{0,12}",
        text in "[abé.\\-\\]!\\[]{0,12}",
    ) {
        let oracle = regex::Regex::new(&translate(&pattern)).unwrap();
        proptest::prop_assert_eq!(
            GlobMatcher::new(&pattern).is_match(&text),
            oracle.is_match(&text),
            "{:?} vs {:?}", pattern, text
        );
    }
}

#[test]
fn compiled_patterns_are_shareable() {
    fn shareable<T: Send + Sync>(_: &T) {}
    let on = OnPatterns::compile(&["a.*", "b"]).unwrap();
    shareable(&on);
    assert!(on.matches("b") && on.matches("a.x") && !on.matches("c"));
}

/// The oracle: a pattern translated into an anchored regex, like Python's `fnmatch.translate`.
fn translate(pattern: &str) -> String {
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
            '[' => match super::matcher::class_end(&chars, i) {
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
