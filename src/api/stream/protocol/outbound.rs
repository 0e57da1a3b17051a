//! What the server sends: which org, topic and source a published message belongs to, the `data`
//! a client sees for it, and the text of every server frame.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use super::Topic;
use crate::actors::publisher::{Published, RunChange};
use crate::db::statuses::RunStatus;

/// The stream topic of a run change.
pub fn run_topic(kind: RunChange) -> Topic {
    match kind {
        RunChange::Claimed => Topic::RunClaimed,
        RunChange::Completed => Topic::RunCompleted,
        RunChange::Failed => Topic::RunFailed,
        RunChange::Retrying => Topic::RunRetrying,
        RunChange::Expired => Topic::RunExpired,
        RunChange::Cancelled => Topic::RunCancelled,
        RunChange::Retried => Topic::RunRetried,
    }
}

/// Who a published message is for: its topic, org and source slug.
pub fn route(message: &Published) -> (Topic, Uuid, &str) {
    match message {
        Published::SourceStatus { org_id, slug, .. } => (Topic::SourceStatus, *org_id, slug),
        Published::EventReceived { org_id, source, .. } => (Topic::EventReceived, *org_id, source),
        Published::EventDispatched { org_id, source, .. } => {
            (Topic::EventDispatched, *org_id, source)
        }
        Published::RunCreated {
            org_id,
            event_payload,
            ..
        } => (
            Topic::RunCreated,
            *org_id,
            event_payload
                .get("source")
                .and_then(Value::as_str)
                .unwrap_or(""),
        ),
        Published::RunChanged {
            kind,
            org_id,
            source,
            ..
        } => (run_topic(*kind), *org_id, source),
        // Only relayed with a topic that parses (checked on arrival).
        Published::Relayed {
            topic_name,
            org_id,
            source,
            ..
        } => (
            Topic::parse(topic_name).unwrap_or(Topic::SourceStatus),
            *org_id,
            source,
        ),
    }
}

/// The `data` object a client receives for a published message.
pub fn data(message: &Published) -> Value {
    match message {
        Published::SourceStatus {
            source_id,
            slug,
            status,
            ..
        } => json!({"source_id": source_id, "source": slug, "status": status}),
        Published::EventReceived {
            event_id,
            origin,
            source,
            event_key,
            status,
            duplicate,
            received_at,
            ..
        } => json!({
            "event_id": event_id, "origin": origin, "source": source, "event_key": event_key,
            "status": status, "dedup": if *duplicate { "duplicate" } else { "stored" },
            "received_at": received_at,
        }),
        Published::EventDispatched {
            event_id,
            source,
            event_key,
            outcome,
            ..
        } => {
            json!({"event_id": event_id, "source": source, "event_key": event_key, "outcome": outcome})
        }
        Published::RunCreated {
            run_id,
            automation_id,
            event_id,
            event_payload,
            ..
        } => json!({
            "run_id": run_id, "automation_id": automation_id, "event_id": event_id,
            "status": RunStatus::Pending, "event_payload": &**event_payload,
        }),
        Published::RunChanged {
            run_id,
            automation_id,
            source,
            attempt,
            status,
            error,
            ..
        } => json!({
            "run_id": run_id, "automation_id": automation_id, "source": source,
            "attempt": attempt, "status": status, "error": error,
        }),
        Published::Relayed { data, .. } => (**data).clone(),
    }
}

/// `{"type":<topic>,"subscription":<id>,"data":{…},"at":<RFC 3339>}`.
pub fn message_frame(topic: Topic, subscription: &str, data: &Value, at: DateTime<Utc>) -> String {
    json!({
        "type": topic.as_str(),
        "subscription": subscription,
        "data": data,
        "at": at.to_rfc3339_opts(SecondsFormat::Micros, true),
    })
    .to_string()
}

/// `{"type":"subscribed","id":…}`.
pub fn subscribed_frame(id: &str) -> String {
    json!({"type": "subscribed", "id": id}).to_string()
}

/// `{"type":"unsubscribed","id":…}`.
pub fn unsubscribed_frame(id: &str) -> String {
    json!({"type": "unsubscribed", "id": id}).to_string()
}

/// `{"type":"pong"}`.
pub fn pong_frame() -> String {
    json!({"type": "pong"}).to_string()
}

/// `{"type":"lagged","missed":n}`: `n` messages were dropped because the client fell behind.
pub fn lagged_frame(missed: u64) -> String {
    json!({"type": "lagged", "missed": missed}).to_string()
}
