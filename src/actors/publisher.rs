//! The internal publisher: one broadcast channel fed by the supervisor, ingest and dispatch, read
//! by the live stream (and benchmarks). Publishing never blocks: with no subscriber nothing is
//! built, and a subscriber that falls behind loses the oldest messages (it is told how many).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::db::statuses::RunStatus;
use crate::sources::status::StatusSnapshot;

/// How many messages a slow subscriber may fall behind before it starts losing them.
const CAPACITY: usize = 4096;

/// Something that happened, for live observers.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "topic")]
pub enum Published {
    /// A run was created.
    #[serde(rename = "run.created")]
    RunCreated {
        /// Org.
        org_id: Uuid,
        /// Run id.
        run_id: Uuid,
        /// The automation.
        automation_id: Uuid,
        /// The event.
        event_id: Uuid,
        /// The run's payload (`event_id`, `source`, `event_key`, `received_at`, `payload`).
        event_payload: Arc<serde_json::Value>,
    },
    /// A source changed state (every transition of DESIGN §4.6).
    #[serde(rename = "source.status")]
    SourceStatus {
        /// Org.
        org_id: Uuid,
        /// The source.
        source_id: Uuid,
        /// Its slug.
        slug: String,
        /// The status object as `GET /v1/websocket-sources/{id}` shows it (see [`status_json`]).
        status: serde_json::Value,
    },
    /// A message was committed as an event, or recognised as a duplicate of one.
    #[serde(rename = "event.received")]
    EventReceived {
        /// Org.
        org_id: Uuid,
        /// The stored event; for a duplicate the earlier event when known, else `None`.
        event_id: Option<Uuid>,
        /// `websocket` or `webhook`.
        origin: &'static str,
        /// Source slug.
        source: String,
        /// Event key.
        event_key: Option<String>,
        /// Event status (`received`, `no_key`, `error`).
        status: String,
        /// Whether it was a duplicate (not stored again).
        duplicate: bool,
        /// When it was received.
        received_at: DateTime<Utc>,
    },
    /// An event was matched against the automations and its runs and outcome committed.
    #[serde(rename = "event.dispatched")]
    EventDispatched {
        /// Org.
        org_id: Uuid,
        /// The event.
        event_id: Uuid,
        /// Source slug.
        source: String,
        /// Event key.
        event_key: Option<String>,
        /// Outcome per automation, as `GET /v1/events/{id}` shows it.
        outcome: serde_json::Value,
    },
    /// A run changed hands or status in the queue (`run.claimed`, `run.completed`, `run.failed`,
    /// `run.retrying`, `run.expired`), or a person cancelled or retried it (`run.cancelled`,
    /// `run.retried`).
    #[serde(rename = "run.changed")]
    RunChanged {
        /// What happened.
        kind: RunChange,
        /// Org.
        org_id: Uuid,
        /// Run id.
        run_id: Uuid,
        /// The automation.
        automation_id: Uuid,
        /// The event's source slug.
        source: String,
        /// The attempt concerned.
        attempt: i32,
        /// The run's status afterwards.
        status: RunStatus,
        /// The worker's error, or why (`lease expired`).
        error: Option<String>,
    },
    /// A message published on another replica, relayed through PostgreSQL: already routed and
    /// shaped there (never relayed again).
    #[serde(rename = "relayed")]
    Relayed {
        /// The stream topic's name (one the stream protocol knows: checked on arrival).
        topic_name: String,
        /// Org.
        org_id: Uuid,
        /// Source slug.
        source: String,
        /// The `data` a client receives.
        data: Arc<serde_json::Value>,
    },
}

/// What happened to a run, for the `run.*` stream topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunChange {
    /// A worker claimed it.
    Claimed,
    /// It succeeded.
    Completed,
    /// It failed for good.
    Failed,
    /// An attempt failed and it goes back to PENDING.
    Retrying,
    /// Its lease expired (it is retried or failed; `status` tells).
    Expired,
    /// A person cancelled it (`POST /v1/runs/{id}/cancel`).
    Cancelled,
    /// A person put it back to PENDING (`POST /v1/runs/{id}/retry`).
    Retried,
}

/// The status object of a source as the REST API shows it (`StatusOut`): the snapshot without
/// its `source_id`.
pub fn status_json(snapshot: &StatusSnapshot) -> serde_json::Value {
    let mut value = serde_json::to_value(snapshot).unwrap_or(serde_json::Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.remove("source_id");
    }
    value
}

impl Published {
    /// A `run.*` message: `kind` happened to `row` (as it was before the change, so that
    /// `attempt` is the attempt concerned), which is now `status`; `error` is the worker's error
    /// or why.
    pub fn run_changed(
        kind: RunChange,
        row: &entity::automation_run::Model,
        status: RunStatus,
        error: Option<String>,
    ) -> Published {
        Published::RunChanged {
            kind,
            org_id: row.org_id,
            run_id: row.id,
            automation_id: row.automation_id,
            source: row.source.clone(),
            attempt: row.attempts,
            status,
            error,
        }
    }

    /// A `source.status` message for a snapshot of the source `slug` of `org_id`.
    pub fn source_status(org_id: Uuid, slug: &str, snapshot: &StatusSnapshot) -> Published {
        Published::SourceStatus {
            org_id,
            source_id: snapshot.source_id,
            slug: slug.to_owned(),
            status: status_json(snapshot),
        }
    }
}

/// Cheap-to-clone handle of the publisher.
#[derive(Clone)]
pub struct Publisher {
    tx: broadcast::Sender<Published>,
}

impl Default for Publisher {
    fn default() -> Self {
        Self::new()
    }
}

impl Publisher {
    /// A publisher with no subscriber yet.
    pub fn new() -> Publisher {
        let (tx, _) = broadcast::channel(CAPACITY);
        Publisher { tx }
    }

    /// How many subscriptions are open.
    pub fn receiver_count(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Whether anyone listens (so callers can skip building messages).
    pub fn has_subscribers(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Publishes without waiting.
    pub fn publish(&self, message: Published) {
        let _ = self.tx.send(message);
    }

    /// A new subscription.
    pub fn subscribe(&self) -> broadcast::Receiver<Published> {
        self.tx.subscribe()
    }
}
