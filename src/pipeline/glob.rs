//! fnmatch-style patterns for a trigger's `on` field and the `glob()` filter function.
//!
//! The rules are Python's `fnmatch.fnmatchcase`, exactly: case-sensitive; `*` matches any run of
//! characters, `.` and `/` included; `?` matches one character; `[seq]` and `[!seq]` match one
//! character in or not in the set (ranges `a-z`, a `]` first in the set is literal); an unclosed
//! `[` is a literal `[`; every other character, backslash included, is literal. A pattern is
//! compiled once into a small token list ([`matcher`]); a pattern without `*`, `?` or `[` is
//! compared as a plain string. The automation index compiles each distinct pattern once
//! ([`GlobInterner`]).

mod interner;
mod matcher;

use std::sync::Arc;

pub use interner::GlobInterner;
pub(crate) use matcher::GlobMatcher;

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

/// One compiled pattern with its text (the text is what the interner keys it by).
#[derive(Debug)]
pub struct Glob {
    pattern: Box<str>,
    matcher: GlobMatcher,
}

impl Glob {
    fn compile(pattern: &str) -> Glob {
        Glob {
            pattern: pattern.into(),
            matcher: GlobMatcher::new(pattern),
        }
    }

    /// The pattern as given.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }
}

/// A trigger's `on` patterns, compiled once and shared read-only (Send + Sync).
#[derive(Clone, Debug)]
pub struct OnPatterns {
    globs: Box<[Arc<Glob>]>,
}

impl OnPatterns {
    /// Compiles every pattern on its own (not interned: validation and dry runs); refuses an
    /// empty list and an empty pattern.
    pub fn compile<S: AsRef<str>>(patterns: &[S]) -> Result<OnPatterns, GlobError> {
        check(patterns)?;
        let globs = patterns
            .iter()
            .map(|pattern| Arc::new(Glob::compile(pattern.as_ref())))
            .collect();
        Ok(OnPatterns { globs })
    }

    /// Whether any of the patterns matches the whole event key.
    pub fn matches(&self, key: &str) -> bool {
        self.globs.iter().any(|glob| glob.matcher.is_match(key))
    }

    /// The compiled patterns, in the order given.
    pub fn globs(&self) -> &[Arc<Glob>] {
        &self.globs
    }
}

/// Refuses an empty list and an empty pattern.
fn check<S: AsRef<str>>(patterns: &[S]) -> Result<(), GlobError> {
    if patterns.is_empty() {
        return Err(GlobError::Empty);
    }
    match patterns.iter().find(|p| p.as_ref().is_empty()) {
        Some(empty) => Err(GlobError::InvalidPattern {
            pattern: empty.as_ref().to_owned(),
            message: "a pattern cannot be empty".to_owned(),
        }),
        None => Ok(()),
    }
}

/// Whether `text` matches the single fnmatch `pattern` (compiled for this one call).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    GlobMatcher::new(pattern).is_match(text)
}

#[cfg(test)]
mod tests;
