//! Request and response shapes of `/v1/websocket-sources`, and how a stored row is shown
//! (secrets only as names and flags, URLs without credentials).

use chrono::{DateTime, Utc};
use entity::{source_status, websocket_source};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::redact::redact_url;
use crate::sources::config::StoredConfig;
use crate::sources::kind::SourceKind;
use crate::sources::status::{ConnectionCounts, StatusSnapshot};

fn yes() -> bool {
    true
}

/// A source as created (and, after merging a PATCH, as replaced).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Orders feed", "source": "orders", "kind": "generic",
    "event_key_expr": "type", "dedup_key_expr": "id",
    "config": {"url": "wss://feed.example.com/ws", "headers": {"Authorization": "Bearer s3cret"}}}))]
pub struct SourceIn {
    /// Display name.
    pub name: String,
    /// Slug that automations name in `trigger.source` (unique per org with webhooks).
    pub source: String,
    /// `generic` or `slack`.
    pub kind: String,
    /// Whether the source connects (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// JMESPath giving the event key (Slack has a default).
    #[serde(default)]
    pub event_key_expr: Option<String>,
    /// JMESPath giving the payload (default: the raw message).
    #[serde(default)]
    pub payload_expr: Option<String>,
    /// JMESPath pre-filter; messages it rejects are counted, not stored.
    #[serde(default)]
    pub filter_expr: Option<String>,
    /// JMESPath giving the dedup key (Slack has a default).
    #[serde(default)]
    pub dedup_key_expr: Option<String>,
    /// Kind-specific settings; `headers`, `secrets`, `app_token` and `tls.client_key` are
    /// write-only secrets.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub config: Map<String, Value>,
}

/// Runtime state of a source.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusOut {
    /// `disabled`, `connecting`, `connected`, `backoff`, `failing`, `paused` or `failed`.
    pub state: String,
    /// Reason of the last failure or pause.
    pub detail: Option<String>,
    /// When the current connection became ready.
    pub connected_at: Option<DateTime<Utc>>,
    /// When the last event was stored.
    pub last_event_at: Option<DateTime<Utc>>,
    /// When the next attempt is due (`backoff`, `failing`).
    pub next_retry_at: Option<DateTime<Utc>>,
    /// Failed attempts since the connection was last stable.
    pub consecutive_failures: i32,
    /// Frames, events stored, duplicates, filtered, non-JSON, reconnects.
    #[schema(value_type = Object)]
    pub counters: Value,
    /// Configured, ready and peer-reported connections (live status only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<ConnectionCounts>,
    /// With replicas: the replica that holds the source (runs its connections); absent on a
    /// single node and while no replica holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_by: Option<Uuid>,
}

impl From<source_status::Model> for StatusOut {
    fn from(m: source_status::Model) -> Self {
        Self {
            state: m.state,
            detail: m.detail,
            connected_at: m.connected_at,
            last_event_at: m.last_event_at,
            next_retry_at: m.next_retry_at,
            consecutive_failures: m.consecutive_failures,
            counters: m.counters,
            connections: None,
            held_by: None,
        }
    }
}

impl From<StatusSnapshot> for StatusOut {
    fn from(live: StatusSnapshot) -> Self {
        Self {
            state: live.state.as_str().to_owned(),
            detail: live.detail,
            connected_at: live.connected_at,
            last_event_at: live.last_event_at,
            next_retry_at: live.next_retry_at,
            consecutive_failures: i32::try_from(live.consecutive_failures).unwrap_or(i32::MAX),
            counters: live.counters,
            connections: live.connections,
            held_by: None,
        }
    }
}

/// A source as shown: secrets appear only as names and flags, URLs without credentials.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceOut {
    /// Id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Slug.
    pub source: String,
    /// What it connects to.
    pub kind: SourceKind,
    /// Whether it connects.
    pub enabled: bool,
    /// Event key expression.
    pub event_key_expr: Option<String>,
    /// Payload expression.
    pub payload_expr: Option<String>,
    /// Pre-filter expression.
    pub filter_expr: Option<String>,
    /// Dedup key expression.
    pub dedup_key_expr: Option<String>,
    /// Settings, with `header_names`, `secret_names`, `tls.has_client_key` (generic) or
    /// `has_app_token` (slack).
    #[schema(value_type = Object)]
    pub config: Value,
    /// Live state.
    pub status: StatusOut,
    /// Bumped by every change.
    pub revision: i64,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl SourceOut {
    /// A stored row as shown, with its stored status (or the status a new row starts in).
    pub fn new(m: websocket_source::Model, status: Option<source_status::Model>) -> Self {
        let kind = SourceKind::from_stored(&m.kind);
        let stored = StoredConfig::from_json(&m.config);
        let mut config = match stored.settings {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        if let Some(Value::String(url)) = config.get("url") {
            let redacted = redact_url(url);
            config.insert("url".into(), Value::String(redacted));
        }
        match kind {
            SourceKind::Slack => {
                config.insert("has_app_token".into(), json!(stored.has_app_token));
            }
            SourceKind::Generic => {
                config.insert("header_names".into(), json!(stored.header_names));
                config.insert("secret_names".into(), json!(stored.secret_names));
                if let Some(Value::Object(tls)) = config.get_mut("tls") {
                    tls.insert("has_client_key".into(), json!(stored.has_client_key));
                }
            }
        }
        let status = status.map(StatusOut::from).unwrap_or_else(|| StatusOut {
            state: if m.enabled { "connecting" } else { "disabled" }.to_owned(),
            detail: None,
            connected_at: None,
            last_event_at: None,
            next_retry_at: None,
            consecutive_failures: 0,
            counters: json!({}),
            connections: None,
            held_by: None,
        });
        Self {
            id: m.id,
            name: m.name,
            source: m.source,
            kind,
            enabled: m.enabled,
            event_key_expr: m.event_key_expr,
            payload_expr: m.payload_expr,
            filter_expr: m.filter_expr,
            dedup_key_expr: m.dedup_key_expr,
            config: Value::Object(config),
            status,
            revision: m.revision,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }

    /// Overlays the live status this process has (fresher than the coalesced stored one).
    pub(super) fn overlay(&mut self, live: StatusSnapshot) {
        let (stored_last_event, held_by) = (self.status.last_event_at, self.status.held_by);
        self.status = StatusOut::from(live);
        self.status.last_event_at = self.status.last_event_at.or(stored_last_event);
        self.status.held_by = held_by;
    }
}

/// Body of `send`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendIn {
    /// Text to send as one frame; a JSON value is sent as its JSON text.
    pub message: Value,
}
