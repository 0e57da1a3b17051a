//! The run lifecycle, without I/O: statuses and their transitions, an automation's queue policy
//! (retries with capped exponential backoff and full jitter, lease length, concurrency), what a
//! failed attempt leads to, and why a fenced call was refused.
//!
//! `PENDING` → `RUNNING` (claimed under a lease) → `SUCCEEDED` | `FAILED` | `CANCELLED`; a failed
//! attempt with attempts left goes back to `PENDING` with a later `available_at`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::statuses::RunStatus;
use crate::validation::Errors;

/// Attempts per run unless the automation says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// First backoff ceiling in seconds unless the automation says otherwise.
pub const DEFAULT_INITIAL_BACKOFF_S: u32 = 10;
/// Largest backoff ceiling in seconds unless the automation says otherwise.
pub const DEFAULT_MAX_BACKOFF_S: u32 = 600;
/// Lease of a claimed run in seconds unless the automation or the claim says otherwise.
pub const DEFAULT_LEASE_S: u32 = 60;
/// Longest lease a claim, heartbeat or automation may ask for (one day).
pub const MAX_LEASE_S: u32 = 86_400;

/// An automation's retry settings (all three are always set once defaults are applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Attempts in all, the first included (1..=100; default 3).
    pub max_attempts: u32,
    /// Backoff ceiling after the first failed attempt, in seconds (0..=86400; default 10).
    pub initial_backoff_s: u32,
    /// Largest backoff ceiling, in seconds (1..=604800, at least `initial_backoff_s`; default 600).
    pub max_backoff_s: u32,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            initial_backoff_s: DEFAULT_INITIAL_BACKOFF_S,
            max_backoff_s: DEFAULT_MAX_BACKOFF_S,
        }
    }
}

/// Retry settings as given: any field left out takes its default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryIn {
    /// Attempts in all, the first included (1..=100; default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100)]
    pub max_attempts: Option<u32>,
    /// Backoff ceiling after the first failed attempt, in seconds (0..=86400; default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_backoff_s: Option<u32>,
    /// Largest backoff ceiling, in seconds (1..=604800; default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backoff_s: Option<u32>,
}

impl RetryIn {
    /// With the defaults applied.
    pub fn resolve(&self) -> Retry {
        let d = Retry::default();
        Retry {
            max_attempts: self.max_attempts.unwrap_or(d.max_attempts),
            initial_backoff_s: self.initial_backoff_s.unwrap_or(d.initial_backoff_s),
            max_backoff_s: self.max_backoff_s.unwrap_or(d.max_backoff_s),
        }
    }
}

/// An automation's queue settings as given (each optional).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyIn {
    /// Retry settings.
    pub retry: Option<RetryIn>,
    /// Lease in seconds.
    pub lease_s: Option<u32>,
    /// RUNNING runs at once.
    pub max_concurrency: Option<u32>,
}

/// Adds a 422 entry for every out-of-range queue setting, naming the field.
pub fn check_policy(input: &PolicyIn, errors: &mut Errors) {
    if let Some(retry) = &input.retry {
        if let Some(v) = retry.max_attempts {
            errors.range("retry.max_attempts", u64::from(v), 1..=100);
        }
        if let Some(v) = retry.initial_backoff_s {
            errors.range("retry.initial_backoff_s", u64::from(v), 0..=86_400);
        }
        if let Some(v) = retry.max_backoff_s {
            errors.range("retry.max_backoff_s", u64::from(v), 1..=604_800);
        }
        let resolved = retry.resolve();
        if resolved.max_backoff_s < resolved.initial_backoff_s {
            errors.add(
                "retry.max_backoff_s",
                "must be at least retry.initial_backoff_s",
            );
        }
    }
    if let Some(v) = input.lease_s {
        errors.range("lease_s", u64::from(v), 1..=u64::from(MAX_LEASE_S));
    }
    if let Some(v) = input.max_concurrency {
        errors.range("max_concurrency", u64::from(v), 1..=100_000);
    }
}

/// An automation's queue policy with every default applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunPolicy {
    /// Retries.
    pub retry: Retry,
    /// Lease of a claim, in seconds.
    pub lease_s: u32,
    /// RUNNING runs at once (`None`: unlimited).
    pub max_concurrency: Option<u32>,
}

impl Default for RunPolicy {
    fn default() -> Self {
        RunPolicy {
            retry: Retry::default(),
            lease_s: DEFAULT_LEASE_S,
            max_concurrency: None,
        }
    }
}

impl RunPolicy {
    /// From the stored columns (NULL or unreadable: the default).
    pub fn from_columns(
        retry: Option<&serde_json::Value>,
        lease_s: Option<i32>,
        max_concurrency: Option<i32>,
    ) -> RunPolicy {
        let retry = retry
            .and_then(|v| serde_json::from_value::<RetryIn>(v.clone()).ok())
            .unwrap_or_default()
            .resolve();
        RunPolicy {
            retry,
            lease_s: lease_s
                .and_then(|v| u32::try_from(v).ok())
                .filter(|v| *v > 0)
                .unwrap_or(DEFAULT_LEASE_S),
            max_concurrency: max_concurrency
                .and_then(|v| u32::try_from(v).ok())
                .filter(|v| *v > 0),
        }
    }
}

/// The backoff ceiling after failed attempt number `attempt` (1-based):
/// `min(max_backoff_s, initial_backoff_s × 2^(attempt−1))`.
pub fn backoff_ceiling(retry: &Retry, attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(32);
    let ceiling = u64::from(retry.initial_backoff_s).saturating_mul(1u64 << exp);
    Duration::from_secs(ceiling.min(u64::from(retry.max_backoff_s)))
}

/// Full jitter: a delay drawn uniformly from `[0, ceiling]`, `unit` being a draw from `[0, 1)`.
pub fn backoff(retry: &Retry, attempt: u32, unit: f64) -> Duration {
    backoff_ceiling(retry, attempt).mul_f64(unit.clamp(0.0, 1.0))
}

/// What a failed attempt leads to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AfterFailure {
    /// Back to `PENDING`, claimable after `delay`.
    Retry {
        /// How long until it may be claimed again.
        delay: Duration,
    },
    /// `FAILED` for good.
    Fail,
}

/// How attempt `attempt` failing ends: retried while attempts are left (unless the worker said
/// `retry: false`), after `retry_after_s` when the worker gave one, else after the jittered
/// backoff; otherwise failed for good.
pub fn after_failure(
    policy: &RunPolicy,
    attempt: u32,
    retry_wanted: bool,
    retry_after_s: Option<u32>,
    unit: f64,
) -> AfterFailure {
    if !retry_wanted || attempt >= policy.retry.max_attempts {
        return AfterFailure::Fail;
    }
    let delay = match retry_after_s {
        Some(s) => Duration::from_secs(u64::from(s)),
        None => backoff(&policy.retry, attempt, unit),
    };
    AfterFailure::Retry { delay }
}

/// Why a heartbeat, complete or fail with a lease token was refused (409), or that it repeats
/// one already applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fenced {
    /// The same call with the same token already took effect (a retried `complete`): answer as
    /// if it succeeded, change nothing.
    AlreadyApplied,
    /// Refused; the reason code (`cancelled`, `lease_expired`, `lease_lost`, `finished`) and
    /// the explanation.
    Refused(&'static str, String),
}

/// The error an attempt ends with when its lease expires (the watchdog sets it).
pub use crate::db::queue::LEASE_EXPIRED_ERROR;

/// Which fenced call matched nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FencedCall {
    /// `heartbeat`.
    Heartbeat,
    /// `complete` (a repeat with the same token is harmless).
    Complete,
    /// `fail` (a repeat with the same token is harmless).
    Fail,
}

/// What a fenced call found: the run's `status`, the token it was last claimed with
/// (`stored_token`), and its `last_error` (which tells a lease that expired from an attempt its
/// worker failed: both leave the run PENDING with that token).
#[derive(Debug, Clone, Copy)]
pub struct FenceState<'a> {
    /// The run's status.
    pub status: RunStatus,
    /// The token of the run's last claim.
    pub stored_token: Option<&'a str>,
    /// The error of the run's last attempt.
    pub last_error: Option<&'a str>,
}

/// Explains why the fenced `call` with `given_token` matched nothing on a run in `found`.
pub fn explain_fence(found: FenceState<'_>, given_token: &str, call: FencedCall) -> Fenced {
    let same = found.stored_token == Some(given_token);
    let expired = found.last_error == Some(LEASE_EXPIRED_ERROR);
    match found.status {
        RunStatus::Cancelled => Fenced::Refused("cancelled", "the run was cancelled".to_owned()),
        RunStatus::Succeeded if same && call == FencedCall::Complete => Fenced::AlreadyApplied,
        // This token's attempt was failed (and the run re-queued, or failed for good).
        RunStatus::Pending | RunStatus::Failed if same && !expired && call == FencedCall::Fail => {
            Fenced::AlreadyApplied
        }
        RunStatus::Succeeded | RunStatus::Failed if !same => Fenced::Refused(
            "finished",
            format!("the run is already {}", found.status.as_str()),
        ),
        _ if !same => Fenced::Refused(
            "lease_lost",
            "the lease token is not the run's current one: the lease expired and the run was \
             claimed again or re-queued (or the token is wrong)"
                .to_owned(),
        ),
        RunStatus::Pending if expired => Fenced::Refused(
            "lease_expired",
            "the lease expired and the run was re-queued".to_owned(),
        ),
        RunStatus::Pending => Fenced::Refused(
            "finished",
            "this attempt was already failed; the run waits for its retry".to_owned(),
        ),
        RunStatus::Running => Fenced::Refused(
            "lease_lost",
            "the lease token does not match the current claim".to_owned(),
        ),
        RunStatus::Failed if expired => Fenced::Refused(
            "lease_expired",
            "the lease expired and the run has no attempts left (FAILED)".to_owned(),
        ),
        RunStatus::Succeeded | RunStatus::Failed => Fenced::Refused(
            "finished",
            format!("the run is already {}", found.status.as_str()),
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_full_jitter() {
        let r = Retry::default();
        assert_eq!(backoff_ceiling(&r, 1), Duration::from_secs(10));
        assert_eq!(backoff_ceiling(&r, 2), Duration::from_secs(20));
        assert_eq!(backoff_ceiling(&r, 6), Duration::from_secs(320));
        assert_eq!(backoff_ceiling(&r, 7), Duration::from_secs(600));
        assert_eq!(backoff_ceiling(&r, 1000), Duration::from_secs(600));
        assert_eq!(backoff(&r, 2, 0.0), Duration::ZERO);
        assert_eq!(backoff(&r, 2, 0.5), Duration::from_secs(10));
        assert!(backoff(&r, 2, 0.999) < Duration::from_secs(20));
    }

    #[test]
    fn failures_retry_until_attempts_run_out() {
        let p = RunPolicy::default();
        assert!(matches!(
            after_failure(&p, 1, true, None, 0.5),
            AfterFailure::Retry { delay } if delay == Duration::from_secs(5)
        ));
        assert_eq!(
            after_failure(&p, 2, true, Some(7), 0.5),
            AfterFailure::Retry {
                delay: Duration::from_secs(7)
            }
        );
        assert_eq!(after_failure(&p, 3, true, None, 0.5), AfterFailure::Fail);
        assert_eq!(after_failure(&p, 1, false, None, 0.5), AfterFailure::Fail);
    }

    #[test]
    fn policy_reads_columns_with_defaults() {
        let p = RunPolicy::from_columns(
            Some(&serde_json::json!({"max_attempts": 5})),
            Some(30),
            Some(2),
        );
        assert_eq!(p.retry.max_attempts, 5);
        assert_eq!(p.retry.initial_backoff_s, DEFAULT_INITIAL_BACKOFF_S);
        assert_eq!((p.lease_s, p.max_concurrency), (30, Some(2)));
        assert_eq!(
            RunPolicy::from_columns(None, None, None),
            RunPolicy::default()
        );
    }

    #[test]
    fn policy_checks_name_the_field() {
        let mut errors = Errors::default();
        check_policy(
            &PolicyIn {
                retry: Some(RetryIn {
                    max_attempts: Some(0),
                    initial_backoff_s: Some(100),
                    max_backoff_s: Some(50),
                }),
                lease_s: Some(0),
                max_concurrency: Some(0),
            },
            &mut errors,
        );
        let fields: Vec<_> = errors.0.iter().map(|e| e.field.clone()).collect();
        for f in [
            "retry.max_attempts",
            "retry.max_backoff_s",
            "lease_s",
            "max_concurrency",
        ] {
            assert!(fields.iter().any(|x| x == f), "{f} in {fields:?}");
        }
    }

    #[test]
    fn fences_explain_themselves() {
        use FencedCall::*;
        use RunStatus::*;
        let run = |status, stored: &'static str, last_error| FenceState {
            status,
            stored_token: Some(stored),
            last_error,
        };
        let expired = Some(LEASE_EXPIRED_ERROR);
        assert_eq!(
            explain_fence(run(Cancelled, "t", None), "t", Heartbeat),
            Fenced::Refused("cancelled", "the run was cancelled".into())
        );
        assert_eq!(
            explain_fence(run(Succeeded, "t", None), "t", Complete),
            Fenced::AlreadyApplied
        );
        let reason = |found, token, call| match explain_fence(found, token, call) {
            Fenced::Refused(reason, _) => reason,
            Fenced::AlreadyApplied => "applied",
        };
        assert_eq!(
            reason(run(Running, "new", None), "old", Complete),
            "lease_lost"
        );
        assert_eq!(
            reason(run(Pending, "t", expired), "t", Heartbeat),
            "lease_expired"
        );
        assert_eq!(
            reason(run(Failed, "t", expired), "t", Complete),
            "lease_expired"
        );
        assert_eq!(reason(run(Failed, "t", None), "t", Complete), "finished");
        // A worker's own fail: repeating it is harmless; anything else after it is refused as
        // finished, never as an expiry that did not happen.
        assert_eq!(
            reason(run(Pending, "t", Some("boom")), "t", Fail),
            "applied"
        );
        assert_eq!(reason(run(Failed, "t", Some("boom")), "t", Fail), "applied");
        assert_eq!(
            reason(run(Pending, "t", Some("boom")), "t", Heartbeat),
            "finished"
        );
        assert_eq!(
            reason(run(Pending, "t", expired), "t", Fail),
            "lease_expired"
        );
        assert_eq!(
            reason(run(Pending, "other", Some("boom")), "t", Fail),
            "lease_lost"
        );
        assert_eq!(
            reason(run(Failed, "other", Some("boom")), "t", Heartbeat),
            "finished"
        );
    }
}
