//! The pure restart policy of one connection slot: exponential backoff with full jitter, decisions
//! per [`FailureClass`], and a failure count that resets only after stable uptime.
//!
//! Nothing here touches a socket, a clock or a global random source: the source board passes `now`
//! and an `Rng` in, so every decision can be replayed in tests with a seeded `StdRng`.

use std::time::{Duration, Instant};

use rand::Rng;

use crate::sources::failure::FailureClass;

/// Tuning of the restart policy; the defaults are the reliability contract (DESIGN §4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Ceiling of the first retry's delay.
    pub base: Duration,
    /// Growth of the ceiling per consecutive failure (values below 1 act as 1).
    pub factor: u32,
    /// Largest delay ceiling, however many failures came before.
    pub cap: Duration,
    /// Readiness this long before a drop resets the failure count.
    pub stable_after: Duration,
    /// Consecutive failures from which a source is reported `failing`.
    pub failing_after: u32,
    /// Consecutive failures from which the source is paused instead of retried (`None`: never).
    pub pause_after_failures: Option<u32>,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            factor: 2,
            cap: Duration::from_secs(300),
            stable_after: Duration::from_secs(60),
            failing_after: 10,
            pause_after_failures: None,
        }
    }
}

/// Whether a retrying source is in ordinary backoff or has failed long enough to alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryState {
    /// Fewer than `failing_after` consecutive failures.
    Backoff,
    /// At least `failing_after` consecutive failures; still retrying, at the cap.
    Failing,
}

/// What the source board should do after a connection went down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start a fresh connection after `delay`; report the source as `state`.
    Retry {
        /// How long to wait before the next connect.
        delay: Duration,
        /// `backoff` or `failing`, for the source status.
        state: RetryState,
    },
    /// Terminal failure: no retry, the source is `failed` until an operator acts.
    Fail {
        /// Why, for the source status.
        reason: String,
    },
    /// `pause_after_failures` reached: the source is `paused` until resumed.
    Pause {
        /// Why, for the source status.
        reason: String,
    },
}

/// Restart policy state of one connection slot, owned by the source board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartPolicy {
    config: BackoffConfig,
    consecutive_failures: u32,
    ready_since: Option<Instant>,
}

impl RestartPolicy {
    /// A policy with no failures yet and no ready connection.
    pub fn new(config: BackoffConfig) -> Self {
        Self {
            config,
            consecutive_failures: 0,
            ready_since: None,
        }
    }

    /// The configuration this policy applies.
    pub fn config(&self) -> &BackoffConfig {
        &self.config
    }

    /// Consecutive failed attempts since the last stable connection or operator reset.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// The connection became ready (Slack `hello`, generic ready condition) at `now`.
    ///
    /// Repeated calls keep the earliest time, so a make-before-break replacement keeps the clock.
    pub fn on_ready(&mut self, now: Instant) {
        self.ready_since.get_or_insert(now);
    }

    /// Operator `Reconnect`: forget past failures and readiness.
    pub fn reset(&mut self) {
        self.consecutive_failures = 0;
        self.ready_since = None;
    }

    /// The connection went down at `now` for `class`; decide whether and when to retry.
    pub fn on_down(&mut self, now: Instant, class: FailureClass, rng: &mut impl Rng) -> Decision {
        if let Some(since) = self.ready_since.take()
            && now.saturating_duration_since(since) >= self.config.stable_after
        {
            self.consecutive_failures = 0;
        }
        let attempt = self.consecutive_failures;
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let jittered = full_jitter(self.ceiling(attempt), rng);
        let delay = match class {
            FailureClass::Terminal { reason } => return Decision::Fail { reason },
            FailureClass::Transient => jittered,
            FailureClass::RateLimited { retry_after } => jittered.max(retry_after),
            FailureClass::Throttled { min_delay } => min_delay.saturating_add(jittered),
        };
        let failures = self.consecutive_failures;
        if let Some(limit) = self.config.pause_after_failures
            && failures >= limit
        {
            let reason = format!("paused after {failures} consecutive failed attempts");
            return Decision::Pause { reason };
        }
        let state = if failures >= self.config.failing_after {
            RetryState::Failing
        } else {
            RetryState::Backoff
        };
        Decision::Retry { delay, state }
    }

    /// `min(cap, base * factor^attempt)` without overflow for any attempt count.
    fn ceiling(&self, attempt: u32) -> Duration {
        let BackoffConfig {
            base, factor, cap, ..
        } = self.config;
        if base.is_zero() {
            return Duration::ZERO;
        }
        factor
            .max(1)
            .checked_pow(attempt)
            .and_then(|growth| base.checked_mul(growth))
            .map_or(cap, |delay| delay.min(cap))
    }
}

/// A uniformly random duration in `[0, max]`.
fn full_jitter(max: Duration, rng: &mut impl Rng) -> Duration {
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.random_range(0..=nanos))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const SEC: Duration = Duration::from_secs(1);

    fn retry_delay(decision: &Decision) -> Duration {
        match decision {
            Decision::Retry { delay, .. } => *delay,
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    /// A policy that has already failed `n` times in a row.
    fn failed(config: BackoffConfig, n: u32) -> RestartPolicy {
        let mut policy = RestartPolicy::new(config);
        policy.consecutive_failures = n;
        policy
    }

    fn median_delay(failures: u32) -> Duration {
        let mut rng = StdRng::seed_from_u64(7);
        let mut delays: Vec<Duration> = (0..401)
            .map(|_| failed(BackoffConfig::default(), failures))
            .map(|mut p| retry_delay(&p.on_down(Instant::now(), FailureClass::Transient, &mut rng)))
            .collect();
        delays.sort();
        delays[200]
    }

    #[test]
    fn median_delay_grows_with_attempts_until_the_cap() {
        let medians: Vec<Duration> = (0..12).map(median_delay).collect();
        for pair in medians[..8].windows(2) {
            assert!(pair[1] > pair[0], "{medians:?}");
        }
        assert!(medians[0] < SEC && medians[0] > SEC / 4, "{medians:?}");
        assert!(
            medians[11] > SEC * 100 && medians[11] <= SEC * 200,
            "{medians:?}"
        );
    }

    #[test]
    fn throttled_waits_at_least_the_minimum_and_pause_and_reset_work() {
        let config = BackoffConfig {
            pause_after_failures: Some(3),
            ..BackoffConfig::default()
        };
        let mut policy = RestartPolicy::new(config);
        let mut rng = StdRng::seed_from_u64(3);
        let throttled = FailureClass::Throttled {
            min_delay: SEC * 30,
        };
        let delay = retry_delay(&policy.on_down(Instant::now(), throttled, &mut rng));
        // The ceiling is computed without overflow, whatever the attempt count.
        assert_eq!(policy.ceiling(u32::MAX), SEC * 300);
        assert!(delay >= SEC * 30 && delay <= SEC * 31);
        policy.on_down(Instant::now(), FailureClass::Transient, &mut rng);
        let third = policy.on_down(Instant::now(), FailureClass::Transient, &mut rng);
        assert!(matches!(third, Decision::Pause { .. }), "{third:?}");
        policy.reset();
        assert_eq!(policy.consecutive_failures(), 0);
    }

    fn any_config() -> impl Strategy<Value = BackoffConfig> {
        (0u64..5_000, 0u32..5, 0u64..600_000, 0u32..20).prop_map(|(base, factor, cap, failing)| {
            BackoffConfig {
                base: Duration::from_millis(base),
                factor,
                cap: Duration::from_millis(cap),
                failing_after: failing,
                ..BackoffConfig::default()
            }
        })
    }

    fn any_class() -> impl Strategy<Value = FailureClass> {
        prop_oneof![
            Just(FailureClass::Transient),
            (0u64..1_000_000).prop_map(|ms| FailureClass::RateLimited {
                retry_after: Duration::from_millis(ms)
            }),
            (0u64..60_000).prop_map(|ms| FailureClass::Throttled {
                min_delay: Duration::from_millis(ms)
            }),
        ]
    }

    proptest! {
        #[test]
        fn delays_respect_cap_retry_after_and_failing_threshold(
            config in any_config(),
            classes in prop::collection::vec(any_class(), 1..80),
            already_failed in prop_oneof![0u32..30, any::<u32>()],
            seed: u64,
        ) {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut policy = failed(config.clone(), already_failed);
            for class in classes {
                let decision = policy.on_down(Instant::now(), class.clone(), &mut rng);
                let Decision::Retry { delay, state } = decision else {
                    return Err(TestCaseError::fail(format!("{decision:?}")));
                };
                let failing = policy.consecutive_failures() >= config.failing_after;
                prop_assert_eq!(state == RetryState::Failing, failing);
                match class {
                    FailureClass::Transient => prop_assert!(delay <= config.cap),
                    FailureClass::RateLimited { retry_after } => {
                        prop_assert!(delay >= retry_after);
                        prop_assert!(delay <= config.cap.max(retry_after));
                    }
                    FailureClass::Throttled { min_delay } => {
                        prop_assert!(delay >= min_delay && delay <= min_delay + config.cap);
                    }
                    FailureClass::Terminal { .. } => unreachable!(),
                }
            }
        }

        #[test]
        fn terminal_never_retries(failures in 0u32..1_000, seed: u64) {
            let mut policy = failed(BackoffConfig::default(), failures);
            let terminal = FailureClass::Terminal { reason: "invalid_auth".into() };
            let decision = policy.on_down(Instant::now(), terminal, &mut StdRng::seed_from_u64(seed));
            prop_assert_eq!(decision, Decision::Fail { reason: "invalid_auth".into() });
        }

        #[test]
        fn count_resets_only_after_stable_uptime(
            failures in 0u32..50, uptime_ms in 0u64..120_000, refreshes in 0usize..3, seed: u64,
        ) {
            let mut policy = failed(BackoffConfig::default(), failures);
            let start = Instant::now();
            policy.on_ready(start);
            // A routine refresh (make-before-break) reaches the policy only as a second
            // `on_ready` of the replacement: it keeps the clock and the count.
            for _ in 0..refreshes {
                policy.on_ready(start + SEC);
                prop_assert_eq!(policy.consecutive_failures(), failures);
            }
            let uptime = Duration::from_millis(uptime_ms);
            let mut rng = StdRng::seed_from_u64(seed);
            policy.on_down(start + uptime, FailureClass::Transient, &mut rng);
            let expected = if uptime >= SEC * 60 { 1 } else { failures + 1 };
            prop_assert_eq!(policy.consecutive_failures(), expected);
        }
    }
}
