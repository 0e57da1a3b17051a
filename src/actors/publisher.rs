//! The internal publisher: one broadcast channel fed by the supervisor, ingest and dispatch, read
//! by the live stream (and benchmarks). Publishing never blocks: with no subscriber nothing is
//! built, and a subscriber that falls behind loses the oldest messages (it is told how many).

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::broadcast;
use uuid::Uuid;

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
