//! The statuses of runs and events as types. Their names are spelled out only here, where they
//! meet SQL (stored values and partial-index predicates) and JSON.

use serde::{Deserialize, Serialize};

/// A run's status: `PENDING` → `RUNNING` (claimed under a lease) → `SUCCEEDED` | `FAILED` |
/// `CANCELLED`; a failed attempt with attempts left goes back to `PENDING`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    /// Waiting for a worker (from `available_at` on).
    Pending,
    /// Claimed by a worker under a lease.
    Running,
    /// Done.
    Succeeded,
    /// Failed for good (no attempts left, or the worker said not to retry).
    Failed,
    /// Cancelled by a person.
    Cancelled,
}

impl RunStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [RunStatus; 5] = [
        RunStatus::Pending,
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ];

    /// Statuses nothing happens to by itself any more.
    pub const TERMINAL: [RunStatus; 3] = [
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ];

    /// Statuses a person may cancel a run from.
    pub const CANCELLABLE: [RunStatus; 2] = [RunStatus::Pending, RunStatus::Running];

    /// Statuses a person may put a run back to `PENDING` from (`POST /v1/runs/{id}/retry`).
    pub const RETRYABLE_BY_HAND: [RunStatus; 2] = [RunStatus::Failed, RunStatus::Cancelled];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "PENDING",
            RunStatus::Running => "RUNNING",
            RunStatus::Succeeded => "SUCCEEDED",
            RunStatus::Failed => "FAILED",
            RunStatus::Cancelled => "CANCELLED",
        }
    }

    /// Parses a stored name.
    pub fn parse(value: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// The stored name as an SQL string literal (`'PENDING'`): partial-index predicates need the
    /// literal in the query text, not a bound value, for the planner to use the index.
    pub fn sql(self) -> String {
        format!("'{}'", self.as_str())
    }

    /// `('A', 'B', …)`: an SQL list of literals (see [`RunStatus::sql`]).
    pub fn sql_list(statuses: &[RunStatus]) -> String {
        let items: Vec<String> = statuses.iter().map(|s| s.sql()).collect();
        format!("({})", items.join(", "))
    }

    /// Whether nothing happens to the run any more by itself.
    pub fn is_terminal(self) -> bool {
        RunStatus::TERMINAL.contains(&self)
    }

    /// Whether a person may put the run back to `PENDING` (`POST /v1/runs/{id}/retry`).
    pub fn can_retry_by_hand(self) -> bool {
        RunStatus::RETRYABLE_BY_HAND.contains(&self)
    }

    /// Whether a person may cancel the run.
    pub fn can_cancel(self) -> bool {
        RunStatus::CANCELLABLE.contains(&self)
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an event is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// Stored, waiting for dispatch.
    Received,
    /// Matched against the automations; its runs (if any) are created.
    Dispatched,
    /// The key expression gave no usable key: stored, never matched.
    NoKey,
    /// The payload could not be built: stored with the message, never matched.
    Error,
}

impl EventStatus {
    /// Every status.
    pub const ALL: [EventStatus; 4] = [
        EventStatus::Received,
        EventStatus::Dispatched,
        EventStatus::NoKey,
        EventStatus::Error,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Received => "received",
            EventStatus::Dispatched => "dispatched",
            EventStatus::NoKey => "no_key",
            EventStatus::Error => "error",
        }
    }

    /// Parses a stored name.
    pub fn parse(value: &str) -> Option<EventStatus> {
        EventStatus::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// The stored name as an SQL string literal (`'received'`), as in [`RunStatus::sql`].
    pub fn sql(self) -> String {
        format!("'{}'", self.as_str())
    }

    /// Whether dispatch matches events of this status against the automations (or did).
    pub fn is_matchable(self) -> bool {
        matches!(self, EventStatus::Received | EventStatus::Dispatched)
    }
}

impl std::fmt::Display for EventStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_classify() {
        for s in RunStatus::ALL {
            assert_eq!(RunStatus::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_value(s).ok(),
                Some(serde_json::json!(s.as_str()))
            );
        }
        assert_eq!(RunStatus::parse("COMPLETED"), None);
        assert!(RunStatus::Succeeded.is_terminal() && !RunStatus::Running.is_terminal());
        assert!(RunStatus::Failed.can_retry_by_hand() && RunStatus::Cancelled.can_retry_by_hand());
        assert!(!RunStatus::Succeeded.can_retry_by_hand());
        assert!(RunStatus::Running.can_cancel() && !RunStatus::Failed.can_cancel());
        assert_eq!(
            RunStatus::sql_list(&RunStatus::TERMINAL),
            "('SUCCEEDED', 'FAILED', 'CANCELLED')"
        );
    }

    #[test]
    fn event_statuses_round_trip() {
        for s in EventStatus::ALL {
            assert_eq!(EventStatus::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_value(s).ok(),
                Some(serde_json::json!(s.as_str()))
            );
        }
        assert_eq!(EventStatus::parse("RECEIVED"), None);
        assert_eq!(EventStatus::NoKey.sql(), "'no_key'");
    }
}
