//! The compiled form of one fnmatch pattern: a few bytes per pattern, no automaton.
//!
//! A pattern is split at its stars into segments of single-character tokens (a character, `?`, a
//! class). Without a star the one segment must cover the whole text; with stars the first segment
//! is anchored at the start, the last at the end, and every segment in between is placed at its
//! leftmost fit after the previous one (leftmost placement never loses a match, because a star
//! can absorb whatever a later placement would have skipped). Matching is O(text × pattern) at
//! worst and allocates nothing.

/// One token that matches exactly one character.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Token {
    /// This character.
    Char(char),
    /// `?`: any character.
    Any,
    /// `[...]`: a character in (or, negated, not in) the inclusive ranges.
    Class {
        /// `[!...]`: the character must be outside the ranges.
        negated: bool,
        /// Inclusive ranges (a single character is a range of one).
        ranges: Box<[(char, char)]>,
    },
}

impl Token {
    fn accepts(&self, c: char) -> bool {
        match self {
            Token::Char(expected) => *expected == c,
            Token::Any => true,
            Token::Class { negated, ranges } => {
                ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated
            }
        }
    }
}

/// One compiled pattern, shared read-only (Send + Sync).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum GlobMatcher {
    /// No wildcard: the text must equal the pattern.
    Literal(Box<str>),
    /// No star: the text must be exactly these tokens.
    Exact(Box<[Token]>),
    /// At least one star: the segments between stars (first and last may be empty).
    Starred(Box<[Box<[Token]>]>),
}

impl GlobMatcher {
    /// Compiles `pattern` (every pattern compiles; an empty one is refused by the caller).
    pub(crate) fn new(pattern: &str) -> GlobMatcher {
        if !pattern.contains(['*', '?', '[']) {
            return GlobMatcher::Literal(pattern.into());
        }
        let mut segments = vec![Vec::new()];
        let chars: Vec<char> = pattern.chars().collect();
        let mut i = 0;
        while let Some(&c) = chars.get(i) {
            i += 1;
            let token = match c {
                '*' => {
                    segments.push(Vec::new());
                    continue;
                }
                '?' => Token::Any,
                '[' => match class_end(&chars, i) {
                    Some(end) => {
                        let token = class(&chars[i..end]);
                        i = end + 1;
                        token
                    }
                    None => Token::Char('['),
                },
                other => Token::Char(other),
            };
            if let Some(segment) = segments.last_mut() {
                segment.push(token);
            }
        }
        if segments.len() == 1 {
            return GlobMatcher::Exact(segments.concat().into());
        }
        // Empty segments between two stars (`a**b`) change nothing; keep the first and last.
        let last = segments.len() - 1;
        let kept = segments
            .into_iter()
            .enumerate()
            .filter(|(n, s)| *n == 0 || *n == last || !s.is_empty())
            .map(|(_, s)| s.into_boxed_slice())
            .collect();
        GlobMatcher::Starred(kept)
    }

    /// Whether the whole of `text` matches.
    pub(crate) fn is_match(&self, text: &str) -> bool {
        match self {
            GlobMatcher::Literal(literal) => **literal == *text,
            GlobMatcher::Exact(tokens) => {
                fit_at(tokens, text, 0).is_some_and(|end| end == text.len())
            }
            GlobMatcher::Starred(segments) => starred_match(segments, text),
        }
    }
}

fn starred_match(segments: &[Box<[Token]>], text: &str) -> bool {
    let (Some((first, rest)), Some(last)) = (segments.split_first(), segments.last()) else {
        return false;
    };
    let middles = &rest[..rest.len().saturating_sub(1)];
    let Some(mut at) = fit_at(first, text, 0) else {
        return false;
    };
    let Some(tail) = start_of_last_chars(text, last.len()) else {
        return false;
    };
    if tail < at || fit_at(last, text, tail).is_none() {
        return false;
    }
    for segment in middles {
        match leftmost_fit(segment, &text[..tail], at) {
            Some(end) => at = end,
            None => return false,
        }
    }
    true
}

/// The byte offset where `tokens` end when they match `text` from byte `start` on.
fn fit_at(tokens: &[Token], text: &str, start: usize) -> Option<usize> {
    let mut chars = text.get(start..)?.char_indices();
    for token in tokens {
        let (_, c) = chars.next()?;
        if !token.accepts(c) {
            return None;
        }
    }
    Some(chars.offset() + start)
}

/// The end of the leftmost place at or after `from` where `tokens` match inside `text`.
fn leftmost_fit(tokens: &[Token], text: &str, from: usize) -> Option<usize> {
    let tail = text.get(from..)?;
    tail.char_indices()
        .map(|(offset, _)| from + offset)
        .chain(std::iter::once(text.len()))
        .find_map(|start| fit_at(tokens, text, start))
}

/// The byte offset where the last `count` characters of `text` start.
fn start_of_last_chars(text: &str, count: usize) -> Option<usize> {
    if count == 0 {
        return Some(text.len());
    }
    text.char_indices().rev().nth(count - 1).map(|(at, _)| at)
}

/// Index of the `]` closing a class whose content starts at `start`, if any (the tests' regex
/// oracle finds classes the same way).
pub(super) fn class_end(chars: &[char], start: usize) -> Option<usize> {
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

/// The token for the content of `[...]` (without the brackets).
fn class(content: &[char]) -> Token {
    let (negated, items) = match content.split_first() {
        Some(('!', rest)) => (true, rest),
        _ => (false, content),
    };
    let mut ranges = Vec::new();
    let mut k = 0;
    while let Some(&lo) = items.get(k) {
        // `x-y` is a range unless the `-` is the last character of the set.
        if items.get(k + 1) == Some(&'-') && k + 2 < items.len() {
            let hi = items[k + 2];
            // An empty range (lo > hi) matches nothing, as in Python.
            if lo <= hi {
                ranges.push((lo, hi));
            }
            k += 3;
        } else {
            ranges.push((lo, lo));
            k += 1;
        }
    }
    Token::Class {
        negated,
        ranges: ranges.into(),
    }
}
