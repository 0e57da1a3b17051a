//! Start-up pacing for source connections: a global connect-rate limiter and start-up jitter,
//! so a restart with many sources never turns into a thundering herd (DESIGN §4.5).
//!
//! Pure like `policy`: time is passed in and randomness comes from the caller's `Rng`.

use std::time::{Duration, Instant};

use rand::Rng;

/// A random start-up offset in `[0, spread]`, so sources loaded together do not connect together.
pub fn startup_jitter(spread: Duration, rng: &mut impl Rng) -> Duration {
    let nanos = u64::try_from(spread.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.random_range(0..=nanos))
}

/// Global token bucket for connect attempts (GCRA): `burst` connects at once, then `per_second`.
///
/// `reserve` books a slot and returns the wait, so many callers at the same instant get spread
/// delays instead of all retrying together.
#[derive(Debug, Clone)]
pub struct ConnectRateLimiter {
    /// Time between two connects at the steady rate (rounded up, never faster than asked).
    interval: Duration,
    /// How far ahead of the steady schedule a burst may run: `interval * (burst - 1)`.
    tolerance: Duration,
    /// Theoretical time of the next connect at the steady rate.
    next: Option<Instant>,
}

impl ConnectRateLimiter {
    /// A limiter allowing `burst` (at least 1) immediate connects, then `per_second` connects a
    /// second. An infinite rate disables the limit; a zero, negative or NaN rate counts as 1.0.
    pub fn new(per_second: f64, burst: u32) -> Self {
        let rate = if per_second > 0.0 { per_second } else { 1.0 };
        // Saturating float-to-int cast; ceil so the rate is never exceeded through rounding.
        let interval = Duration::from_nanos((1e9 / rate).ceil() as u64);
        let tolerance = interval
            .checked_mul(burst.max(1) - 1)
            .unwrap_or(Duration::MAX);
        Self {
            interval,
            tolerance,
            next: None,
        }
    }

    /// Reserve one connect at `now`; the caller must wait the returned duration before it.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        let next = self.next.map_or(now, |next| next.max(now));
        let wait = next
            .saturating_duration_since(now)
            .saturating_sub(self.tolerance);
        self.next = Some(next.checked_add(self.interval).unwrap_or(next));
        wait
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn simultaneous_reservations_are_spread() {
        let mut limiter = ConnectRateLimiter::new(10.0, 2);
        let now = Instant::now();
        let waits: Vec<u64> = (0..5)
            .map(|_| limiter.reserve(now).as_millis() as u64)
            .collect();
        assert_eq!(waits, [0, 0, 100, 200, 300]);
        // After a long idle period the burst is available again, but no more than the burst.
        let later = now + SEC * 60;
        let waits: Vec<u64> = (0..3)
            .map(|_| limiter.reserve(later).as_millis() as u64)
            .collect();
        assert_eq!(waits, [0, 0, 100]);
    }

    proptest! {
        #[test]
        fn limiter_never_exceeds_burst_plus_rate(
            rate in 0.2f64..50.0, burst in 1u32..10, gaps in prop::collection::vec(0u64..2_000, 1..60),
        ) {
            let mut limiter = ConnectRateLimiter::new(rate, burst);
            let start = Instant::now();
            let mut now = start;
            let mut connects = Vec::new();
            for gap in gaps {
                now += Duration::from_millis(gap);
                connects.push(now + limiter.reserve(now));
            }
            connects.sort();
            for i in 0..connects.len() {
                for j in i..connects.len() {
                    let window = (connects[j] - connects[i]).as_secs_f64();
                    let allowed = f64::from(burst) + rate * window + 1e-9;
                    prop_assert!(((j - i + 1) as f64) <= allowed, "{} connects in {window}s", j - i + 1);
                }
            }
        }

        #[test]
        fn startup_jitter_stays_within_the_spread(spread_ms in 0u64..600_000, seed: u64) {
            let spread = Duration::from_millis(spread_ms);
            let mut rng = StdRng::seed_from_u64(seed);
            prop_assert!(startup_jitter(spread, &mut rng) <= spread);
        }
    }
}
