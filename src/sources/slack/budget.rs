//! The `apps.connections.open` budget of one source, shared by its connections: Slack rate-limits
//! the call per app, so the connections of a source draw from one bucket and one 429 holds them
//! all back.

use std::time::{Duration, Instant};

/// Pacing of `apps.connections.open` for one source (GCRA token bucket plus a rate-limit hold).
///
/// The actor calls [`OpenBudget::reserve`] before every call and waits what it returns; after that
/// wait it checks [`OpenBudget::held_for`] (a 429 may have come in meanwhile) and, when that is
/// not zero, reserves again. A 429 is reported with [`OpenBudget::on_rate_limited`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenBudget {
    /// Time between two calls at the steady rate.
    interval: Duration,
    /// How far ahead of the steady schedule a burst may run: `interval * (burst - 1)`.
    tolerance: Duration,
    /// Theoretical time of the next call at the steady rate.
    next: Option<Instant>,
    /// No call before this instant (the latest `Retry-After`).
    not_before: Option<Instant>,
}

impl Default for OpenBudget {
    /// At most one call a second per app, bursts of two.
    fn default() -> Self {
        OpenBudget::new(Duration::from_secs(1), 2)
    }
}

impl OpenBudget {
    /// A budget allowing `burst` (at least 1) immediate calls, then one per `interval`.
    pub fn new(interval: Duration, burst: u32) -> OpenBudget {
        OpenBudget {
            interval,
            tolerance: interval
                .checked_mul(burst.max(1) - 1)
                .unwrap_or(Duration::MAX),
            next: None,
            not_before: None,
        }
    }

    /// Books the next call at `now`: the caller waits the returned duration, then calls. Never
    /// sooner than a rate-limit hold allows.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        let next = self.next.map_or(now, |next| next.max(now));
        let mut at = now.max(next.checked_sub(self.tolerance).unwrap_or(now));
        if let Some(not_before) = self.not_before {
            at = at.max(not_before);
        }
        let booked = next.max(at);
        self.next = Some(later(booked, self.interval));
        at.saturating_duration_since(now)
    }

    /// A 429 at `now` asked for `retry_after`: no call before `now + retry_after` (a later hold
    /// already in place is kept), and the calls after it are spaced at the steady rate, without a
    /// burst.
    pub fn on_rate_limited(&mut self, now: Instant, retry_after: Duration) {
        let until = later(now, retry_after);
        let until = self.not_before.map_or(until, |held| held.max(until));
        self.not_before = Some(until);
        let resume = later(until, self.tolerance);
        self.next = Some(self.next.map_or(resume, |next| next.max(resume)));
    }

    /// How much longer a rate-limit hold lasts at `now` (zero when none).
    pub fn held_for(&self, now: Instant) -> Duration {
        self.not_before
            .map_or(Duration::ZERO, |until| until.saturating_duration_since(now))
    }
}

/// `at + by`, saturating at the latest instant the platform can represent.
fn later(at: Instant, by: Duration) -> Instant {
    let mut by = by;
    loop {
        if let Some(instant) = at.checked_add(by) {
            return instant;
        }
        by /= 2;
    }
}
