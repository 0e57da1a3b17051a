//! Runtime status of a source: the state machine's states, live counters (atomics shared by the
//! actors of one source across reconnects) and the snapshot the API shows.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// The states of DESIGN §4.6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceState {
    /// Not enabled.
    Disabled,
    /// An attempt is under way.
    Connecting,
    /// Ready.
    Connected,
    /// Waiting before the next attempt.
    Backoff,
    /// Ten or more consecutive failures; still retrying at the cap.
    Failing,
    /// Paused by an operator or by `pause_after_failures`.
    Paused,
    /// A terminal failure; no retries until `reconnect`.
    Failed,
}

impl SourceState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Backoff => "backoff",
            Self::Failing => "failing",
            Self::Paused => "paused",
            Self::Failed => "failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<SourceState> {
        [
            Self::Disabled,
            Self::Connecting,
            Self::Connected,
            Self::Backoff,
            Self::Failing,
            Self::Paused,
            Self::Failed,
        ]
        .into_iter()
        .find(|state| state.as_str() == name)
    }
}

/// What is counted per source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Frames received.
    Frames,
    /// Events stored.
    EventsStored,
    /// Duplicates (not stored again).
    Duplicates,
    /// Rejected by the pre-filter.
    Filtered,
    /// Text frames that were not JSON.
    NonJson,
    /// Binary frames ignored.
    Binary,
    /// Frames before the ready condition.
    Handshake,
    /// Reconnects.
    Reconnects,
    /// ACK frames sent.
    Acks,
    /// Failed inbox writes (retried).
    StorageErrors,
    /// Messages over `max_message_bytes`.
    Oversized,
    /// Ready/fail/ack expression evaluation errors.
    ExpressionErrors,
    /// Frames that are neither events nor understood protocol frames (Slack: JSON that is not an
    /// object, unknown frame types, envelopes without a usable `envelope_id`, repeated `hello`).
    Ignored,
    /// Events stored without an event key.
    NoKey,
    /// Messages (or frames) refused by the document limits or by storage (never stored).
    Rejected,
}

const ALL: [(Count, &str); 15] = [
    (Count::Frames, "frames"),
    (Count::EventsStored, "events_stored"),
    (Count::Duplicates, "duplicates"),
    (Count::Filtered, "filtered"),
    (Count::NonJson, "non_json"),
    (Count::Binary, "binary"),
    (Count::Handshake, "handshake"),
    (Count::Reconnects, "reconnects"),
    (Count::Acks, "acks"),
    (Count::StorageErrors, "storage_errors"),
    (Count::Oversized, "oversized"),
    (Count::ExpressionErrors, "expression_errors"),
    (Count::Ignored, "ignored"),
    (Count::NoKey, "no_key"),
    (Count::Rejected, "rejected"),
];

/// Live counters of one source.
#[derive(Debug, Default)]
pub struct SourceCounters {
    values: [AtomicU64; 15],
    last_event_millis: AtomicI64,
    version: AtomicU64,
    /// The version last handed to storage.
    written: AtomicU64,
    /// Why the last message was rejected (never its content).
    last_rejection: Mutex<Option<String>>,
}

impl SourceCounters {
    /// Adds `n` to a counter.
    pub fn add(&self, what: Count, n: u64) {
        if n == 0 {
            return;
        }
        if let Some(i) = ALL.iter().position(|(c, _)| *c == what) {
            self.values[i].fetch_add(n, Ordering::Relaxed);
            self.version.fetch_add(1, Ordering::Release);
        }
    }

    /// One counter's value.
    pub fn get(&self, what: Count) -> u64 {
        ALL.iter()
            .position(|(c, _)| *c == what)
            .map_or(0, |i| self.values[i].load(Ordering::Relaxed))
    }

    /// Counts a rejected message and keeps `reason` as the last rejection (shown in the status
    /// counters as `last_rejection`).
    pub fn rejected(&self, reason: &str) {
        *self
            .last_rejection
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(reason.to_owned());
        self.add(Count::Rejected, 1);
    }

    /// Records that an event was stored now.
    pub fn event_stored_at(&self, at: DateTime<Utc>) {
        self.last_event_millis
            .store(at.timestamp_millis(), Ordering::Relaxed);
    }

    /// When the last event was stored.
    pub fn last_event_at(&self) -> Option<DateTime<Utc>> {
        match self.last_event_millis.load(Ordering::Relaxed) {
            0 => None,
            ms => DateTime::from_timestamp_millis(ms),
        }
    }

    /// Changes so far (to skip writes when nothing changed).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Whether there are changes storage has not been handed yet; marks them handed. Whoever
    /// flushes (a source actor, its successor after a restart) writes each change once.
    pub fn take_unwritten(&self) -> bool {
        let version = self.version();
        self.written.swap(version, Ordering::AcqRel) != version
    }

    /// All counters as a JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        let mut map: serde_json::Map<String, serde_json::Value> = ALL
            .iter()
            .enumerate()
            .map(|(i, (_, name))| {
                (
                    (*name).to_owned(),
                    self.values[i].load(Ordering::Relaxed).into(),
                )
            })
            .collect();
        let last = self
            .last_rejection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(reason) = last {
            map.insert("last_rejection".to_owned(), reason.into());
        }
        serde_json::Value::Object(map)
    }

    /// Starts from persisted counters (so they survive restarts).
    pub fn restore(&self, stored: &serde_json::Value) {
        for (i, (_, name)) in ALL.iter().enumerate() {
            if let Some(n) = stored.get(name).and_then(serde_json::Value::as_u64) {
                self.values[i].store(n, Ordering::Relaxed);
            }
        }
        if let Some(reason) = stored
            .get("last_rejection")
            .and_then(serde_json::Value::as_str)
        {
            *self
                .last_rejection
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(reason.to_owned());
        }
    }
}

/// How many connections a source keeps, how many are ready, and how many the peer counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ConnectionCounts {
    /// Connections the source keeps (Slack `connections`; one for generic sources).
    pub configured: u32,
    /// Connections ready right now.
    pub ready: u32,
    /// Connections the peer counts for these credentials (Slack `hello` `num_connections`, the
    /// latest one): more than `configured` means another process uses the same app token.
    pub reported: Option<u32>,
}

/// The live status of one source, as this process sees it.
#[derive(Debug, Clone, Serialize)]
pub struct StatusSnapshot {
    /// Source id.
    pub source_id: Uuid,
    /// Current state.
    pub state: SourceState,
    /// Reason of the last failure or pause.
    pub detail: Option<String>,
    /// When the connection became ready.
    pub connected_at: Option<DateTime<Utc>>,
    /// When the last event was stored.
    pub last_event_at: Option<DateTime<Utc>>,
    /// When the next attempt is due.
    pub next_retry_at: Option<DateTime<Utc>>,
    /// Consecutive failed attempts.
    pub consecutive_failures: u32,
    /// Counters.
    pub counters: serde_json::Value,
    /// The source's connections (absent in stored status).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<ConnectionCounts>,
}
