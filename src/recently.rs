//! [`Recently`]: when something last happened, shared between threads without a lock, and whether
//! that was within some time. Pure (a monotonic clock).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The process's reference instant: marks are milliseconds after it.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn millis_since_epoch() -> u64 {
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// When something last happened (never, at first).
#[derive(Debug, Default)]
pub struct Recently {
    /// Milliseconds after [`epoch`] of the last mark, plus one (0: never marked).
    at_ms: AtomicU64,
}

impl Recently {
    /// Never marked.
    pub const fn new() -> Recently {
        Recently {
            at_ms: AtomicU64::new(0),
        }
    }

    /// It happened now.
    pub fn mark(&self) {
        self.at_ms
            .store(millis_since_epoch().saturating_add(1), Ordering::Relaxed);
    }

    /// Whether it was last marked less than `window` ago.
    pub fn within(&self, window: Duration) -> bool {
        match self.at_ms.load(Ordering::Relaxed) {
            0 => false,
            at => u128::from(millis_since_epoch().saturating_sub(at - 1)) < window.as_millis(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_counts_within_its_window_only() {
        let recently = Recently::new();
        assert!(!recently.within(Duration::from_secs(3600)), "never marked");
        recently.mark();
        assert!(recently.within(Duration::from_secs(3600)));
        assert!(!recently.within(Duration::ZERO));
    }
}
