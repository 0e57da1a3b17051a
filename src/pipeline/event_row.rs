//! The stored row of a prepared message: where it came from, what the ingest step made of it, and
//! whether it is complete as stored.

use entity::event;
use uuid::Uuid;

use super::ingest::PreparedEvent;
use crate::db::statuses::EventStatus;

/// Where an event comes from.
#[derive(Debug, Clone, Copy)]
pub struct EventOrigin<'a> {
    /// Owning org.
    pub org_id: Uuid,
    /// `websocket` or `webhook`.
    pub origin: &'static str,
    /// Source slug.
    pub source: &'a str,
    /// The WebSocket source's or webhook's id.
    pub source_id: Uuid,
}

/// The row to insert for a prepared message. Without a payload of its own (no payload expression)
/// the row stores the message once, as `raw`. Events that can match nothing (`no_key`,
/// `error`) are complete as stored, so they are marked dispatched at once.
pub fn event_row(
    from: EventOrigin<'_>,
    event: PreparedEvent,
    meta: serde_json::Value,
    now: chrono::DateTime<chrono::Utc>,
) -> event::Model {
    let id = crate::db::new_id();
    let undispatchable = event.status != EventStatus::Received;
    event::Model {
        id,
        org_id: from.org_id,
        origin: from.origin.to_owned(),
        source: from.source.to_owned(),
        source_id: Some(from.source_id),
        dedup_key: event.dedup_key.unwrap_or_else(|| id.to_string()),
        event_key: event.event_key,
        raw: event.raw,
        payload: event.payload,
        meta,
        status: event.status.as_str().to_owned(),
        error: event.error,
        outcome: None,
        received_at: now,
        dispatched_at: undispatchable.then_some(now),
        replay_key: None,
    }
}
