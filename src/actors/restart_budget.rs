//! The supervisor's restart intensity: how many unexpected exits of one source actor it restarts
//! within a window before it gives up and marks the source failed (pure; time is passed in).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Restarts allowed within [`RestartBudget::WINDOW`].
pub const MAX_RESTARTS: usize = 5;

/// At most `limit` restarts within any `window`.
#[derive(Debug, Clone)]
pub struct RestartBudget {
    limit: usize,
    window: Duration,
    recent: VecDeque<Instant>,
}

impl Default for RestartBudget {
    fn default() -> Self {
        RestartBudget::new(MAX_RESTARTS, RestartBudget::WINDOW)
    }
}

impl RestartBudget {
    /// The window the default limit counts in.
    pub const WINDOW: Duration = Duration::from_secs(60);

    /// A budget of `limit` restarts within any `window`.
    pub fn new(limit: usize, window: Duration) -> RestartBudget {
        RestartBudget {
            limit,
            window,
            recent: VecDeque::new(),
        }
    }

    /// An unexpected exit at `now`: answers whether to restart (and then counts the restart).
    pub fn allow(&mut self, now: Instant) -> bool {
        while self
            .recent
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= self.window)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.limit {
            return false;
        }
        self.recent.push_back(now);
        true
    }

    /// An operator or a new spec started the source afresh: forget earlier restarts.
    pub fn reset(&mut self) {
        self.recent.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the exit times, no window of `window` ever holds more than `limit` restarts,
        /// and an exit is refused only when the window before it is full.
        #[test]
        fn never_more_than_the_limit_within_a_window(
            gaps_ms in prop::collection::vec(0u64..30_000, 1..60),
            limit in 1usize..8,
        ) {
            let window = Duration::from_secs(60);
            let mut budget = RestartBudget::new(limit, window);
            let start = Instant::now();
            let mut at = start;
            let mut allowed: Vec<Instant> = Vec::new();
            for gap in gaps_ms {
                at += Duration::from_millis(gap);
                let in_window = allowed.iter().filter(|t| at.duration_since(**t) < window).count();
                let ok = budget.allow(at);
                prop_assert_eq!(ok, in_window < limit);
                if ok {
                    allowed.push(at);
                }
            }
        }
    }

    #[test]
    fn reset_allows_again() {
        let mut budget = RestartBudget::new(1, Duration::from_secs(60));
        let now = Instant::now();
        assert!(budget.allow(now));
        assert!(!budget.allow(now));
        budget.reset();
        assert!(budget.allow(now));
    }
}
