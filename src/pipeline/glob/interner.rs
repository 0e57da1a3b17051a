//! One compiled glob per distinct pattern, shared by every automation that uses it.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Glob, GlobError, OnPatterns, check};

/// Compiled globs by pattern text, counted by their users. The automation index acquires the
/// patterns of every automation it adds and releases them when it removes one; a pattern no
/// automation uses any more is dropped. Snapshots still being read keep their own `Arc`s.
#[derive(Debug, Default)]
pub struct GlobInterner {
    entries: HashMap<Box<str>, Interned>,
}

#[derive(Debug)]
struct Interned {
    glob: Arc<Glob>,
    users: usize,
}

impl GlobInterner {
    /// Compiles `patterns`, reusing the glob of every pattern already known; refuses an empty
    /// list and an empty pattern (then nothing is acquired).
    pub fn acquire<S: AsRef<str>>(&mut self, patterns: &[S]) -> Result<OnPatterns, GlobError> {
        check(patterns)?;
        let globs = patterns
            .iter()
            .map(|pattern| {
                let pattern = pattern.as_ref();
                let entry = self
                    .entries
                    .entry(pattern.into())
                    .or_insert_with(|| Interned {
                        glob: Arc::new(Glob::compile(pattern)),
                        users: 0,
                    });
                entry.users += 1;
                entry.glob.clone()
            })
            .collect();
        Ok(OnPatterns { globs })
    }

    /// Gives back the patterns of an automation that is removed or replaced.
    pub fn release(&mut self, on: &OnPatterns) {
        for glob in on.globs() {
            if let Some(entry) = self.entries.get_mut(glob.pattern()) {
                entry.users = entry.users.saturating_sub(1);
                if entry.users == 0 {
                    self.entries.remove(glob.pattern());
                }
            }
        }
    }

    /// Number of distinct patterns compiled.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no pattern is compiled.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many automation patterns use `pattern` (0 when it is not compiled).
    pub fn users(&self, pattern: &str) -> usize {
        self.entries.get(pattern).map_or(0, |entry| entry.users)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_pattern_is_compiled_once_and_dropped_with_its_last_user() {
        let mut interner = GlobInterner::default();
        let a = interner.acquire(&["order.*", "x"]).unwrap();
        let b = interner.acquire(&["order.*"]).unwrap();
        assert!(Arc::ptr_eq(&a.globs()[0], &b.globs()[0]));
        assert_eq!((interner.len(), interner.users("order.*")), (2, 2));
        interner.release(&a);
        assert_eq!((interner.len(), interner.users("order.*")), (1, 1));
        assert!(b.matches("order.created"));
        interner.release(&b);
        assert!(interner.is_empty());
        assert!(interner.acquire(&[""]).is_err() && interner.is_empty());
    }
}
