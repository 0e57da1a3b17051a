//! How long the reference worker waits after a failed call: capped exponential backoff with
//! jitter. Pure (the caller brings the randomness), so that its bounds are tested without a clock.

use std::time::Duration;

/// Capped exponential backoff with "equal jitter": after the n-th failure in a row (n from 1) the
/// wait is a random time between half and all of `min(cap, base × 2^(n-1))`. The fixed half makes
/// every failure slow the worker down (full jitter may wait next to nothing, which is a spin on a
/// service that fails fast); the random half spreads workers that failed together. A success
/// starts the sequence again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    /// The claim loop's: 0.5 s, 1 s, 2 s, … up to 30 s (each with jitter).
    pub const CLAIMS: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    /// Reporting a finished run: 0.2 s, 0.4 s, … up to 5 s (the lease bounds how long it tries).
    pub const REPORTS: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));

    /// Starts at `base`, doubling up to `cap`.
    pub const fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap,
            failures: 0,
        }
    }

    /// Counts a failure and answers how long to wait before the next call; `unit` is a random
    /// number in `[0, 1]` (clamped), 0 giving the shortest wait and 1 the longest.
    pub fn failed(&mut self, unit: f64) -> Duration {
        let step = self.step();
        self.failures = self.failures.saturating_add(1);
        let half = step / 2;
        half + half.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// A call succeeded: the next failure waits the shortest again.
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// `min(cap, base × 2^failures)`.
    fn step(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.failures.min(31));
        self.base.saturating_mul(factor).min(self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_between_half_and_all_of_the_step_up_to_the_cap() {
        let mut backoff = Backoff::CLAIMS;
        let steps_ms = [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000];
        for step in steps_ms {
            let mut low = backoff.clone();
            assert_eq!(low.failed(0.0), Duration::from_millis(step / 2));
            assert_eq!(backoff.failed(1.0), Duration::from_millis(step));
        }
        assert_eq!(backoff.failures(), 8);
    }

    #[test]
    fn jitter_stays_within_its_bounds() {
        let mut backoff = Backoff::REPORTS;
        assert_eq!(backoff.failed(0.5), Duration::from_millis(150));
        assert_eq!(backoff.failed(-3.0), Duration::from_millis(200));
        assert_eq!(backoff.failed(7.0), Duration::from_millis(800));
    }

    #[test]
    fn a_success_starts_again_and_many_failures_never_overflow() {
        let mut backoff = Backoff::CLAIMS;
        for _ in 0..100 {
            backoff.failed(1.0);
        }
        assert_eq!(backoff.failed(1.0), Duration::from_secs(30));
        backoff.succeeded();
        assert_eq!(backoff.failures(), 0);
        assert_eq!(backoff.failed(1.0), Duration::from_millis(500));
    }
}
