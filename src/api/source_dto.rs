//! Request and response shapes of `/v1/websocket-sources`, and the conversion between them and
//! the stored row (splitting, sealing and merging secrets).

use chrono::{DateTime, Utc};
use entity::{source_status, websocket_source};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::body::parse_json;
use crate::actors::commands::GetStatus;
use crate::crypto::{Keyring, SecretSlot};
use crate::db;
use crate::error::ApiError;
use crate::netpolicy::NetworkPolicy;
use crate::sources::config::{SourceSecrets, SourceSettings, StoredConfig, slack_defaults};
use crate::sources::redact::{has_credentials, redact_url};
use crate::sources::status::StatusSnapshot;
use crate::sources::validate::{check_settings, split_secrets};
use crate::sources::validate_tls::reconcile_client_key;
use crate::state::AppState;
use crate::validation::Errors;

const SECRET_KEYS: [&str; 3] = ["headers", "secrets", "app_token"];

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
    pub connections: Option<crate::sources::status::ConnectionCounts>,
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
    /// `generic` or `slack`.
    pub kind: String,
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
    fn new(m: websocket_source::Model, status: Option<source_status::Model>) -> Self {
        let stored = StoredConfig::from_json(&m.config);
        let mut config = match stored.settings {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        if let Some(Value::String(url)) = config.get("url") {
            let redacted = redact_url(url);
            config.insert("url".into(), Value::String(redacted));
        }
        if m.kind == "slack" {
            config.insert("has_app_token".into(), json!(stored.has_app_token));
        } else {
            config.insert("header_names".into(), json!(stored.header_names));
            config.insert("secret_names".into(), json!(stored.secret_names));
            if let Some(Value::Object(tls)) = config.get_mut("tls") {
                tls.insert("has_client_key".into(), json!(stored.has_client_key));
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
        });
        Self {
            id: m.id,
            name: m.name,
            source: m.source,
            kind: m.kind,
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

    /// One source with its status.
    pub async fn load(state: &AppState, m: websocket_source::Model) -> Result<Self, ApiError> {
        let mut all = Self::load_many(state, vec![m]).await?;
        all.pop()
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("source vanished")))
    }

    /// Overlays the live status this process has (fresher than the coalesced stored one).
    fn overlay(&mut self, live: StatusSnapshot) {
        let stored_last_event = self.status.last_event_at;
        self.status = StatusOut::from(live);
        self.status.last_event_at = self.status.last_event_at.or(stored_last_event);
    }

    /// Several sources with their status rows (one query for all statuses).
    pub async fn load_many(
        state: &AppState,
        rows: Vec<websocket_source::Model>,
    ) -> Result<Vec<Self>, ApiError> {
        let ids = rows.iter().map(|m| m.id).collect();
        let mut statuses: std::collections::HashMap<Uuid, source_status::Model> =
            db::sources::find_statuses(&state.db, ids)
                .await?
                .into_iter()
                .map(|s| (s.source_id, s))
                .collect();
        let ids: Vec<Uuid> = rows.iter().map(|m| m.id).collect();
        let mut live: std::collections::HashMap<Uuid, StatusSnapshot> = state
            .supervisor
            .send(GetStatus { source_ids: ids })
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|s| (s.source_id, s))
            .collect();
        Ok(rows
            .into_iter()
            .map(|m| {
                let status = statuses.remove(&m.id);
                let id = m.id;
                let mut out = Self::new(m, status);
                if let Some(snapshot) = live.remove(&id) {
                    out.overlay(snapshot);
                }
                out
            })
            .collect())
    }
}

/// The slot sources' secrets are sealed in.
pub fn secret_slot(id: Uuid) -> SecretSlot<'static> {
    SecretSlot::new("websocket_sources", "secrets", id)
}

/// The stored source as a `SourceIn` document without secrets (the base a PATCH merges onto).
pub fn input_of(m: &websocket_source::Model) -> Value {
    json!({
        "name": m.name,
        "source": m.source,
        "kind": m.kind,
        "enabled": m.enabled,
        "event_key_expr": m.event_key_expr,
        "payload_expr": m.payload_expr,
        "filter_expr": m.filter_expr,
        "dedup_key_expr": m.dedup_key_expr,
        "config": StoredConfig::from_json(&m.config).settings,
    })
}

/// Merges a JSON merge patch (RFC 7396) onto `base` and reads the result as a `SourceIn`; a
/// `null` on a required field therefore reports that field as missing.
pub fn apply_patch(mut base: Value, patch: Map<String, Value>) -> Result<SourceIn, ApiError> {
    let secrets: Vec<(String, Value)> = match patch.get("config") {
        Some(Value::Object(config)) => SECRET_KEYS
            .iter()
            .filter_map(|k| config.get(*k).map(|v| ((*k).to_owned(), v.clone())))
            .collect(),
        _ => Vec::new(),
    };
    json_patch::merge(&mut base, &Value::Object(patch));
    if let Some(Value::Object(config)) = base.get_mut("config") {
        // Secrets replace (never merge into) what is stored; `null` keeps the stored value.
        for (key, value) in secrets {
            if !value.is_null() {
                config.insert(key, value);
            }
        }
    }
    let bytes = serde_json::to_vec(&base).map_err(|e| ApiError::Internal(e.into()))?;
    parse_json(&bytes)
}

/// Validates an input and builds the row to store, sealing the merged secrets. `previous` is the
/// stored row for a PATCH.
pub fn build_row(
    state: &AppState,
    org_id: Uuid,
    id: Uuid,
    input: SourceIn,
    previous: Option<&websocket_source::Model>,
) -> Result<websocket_source::Model, ApiError> {
    let mut errors = Errors::default();
    errors.name("name", &input.name);
    errors.new_slug("source", &input.source);
    if let Some(prev) = previous
        && prev.kind != input.kind
    {
        errors.add("kind", "cannot be changed; create a new source instead");
    }
    for (field, expr) in [
        ("event_key_expr", &input.event_key_expr),
        ("payload_expr", &input.payload_expr),
        ("filter_expr", &input.filter_expr),
        ("dedup_key_expr", &input.dedup_key_expr),
    ] {
        errors.expr(field, expr.as_deref());
    }
    let mut config = input.config;
    let given = split_secrets(&mut config, &mut errors);
    let key_given = given.client_key.is_some();
    let stored = match previous {
        Some(prev) => open_secrets(state, prev)?,
        None => SourceSecrets::default(),
    };
    let mut secrets = given.merge_into(stored);
    reconcile_client_key(&config, key_given, &mut secrets);
    restore_secret_url(&mut config, &mut secrets);
    let policy = NetworkPolicy {
        allow_private: state.settings.allow_private_networks,
    };
    let settings = check_settings(&input.kind, config, &secrets, &policy);
    let settings = match settings {
        Ok(s) => errors.finish(s).map_err(ApiError::Validation)?,
        Err(more) => {
            errors.0.extend(more);
            return Err(ApiError::Validation(errors.0));
        }
    };
    let settings = seal_url(settings, &mut secrets);
    let sealed = if secrets == SourceSecrets::default() {
        None
    } else {
        let plain = serde_json::to_vec(&secrets).map_err(|e| ApiError::Internal(e.into()))?;
        Some(
            state
                .keyring
                .seal(&plain, secret_slot(id))
                .map_err(|e| ApiError::Internal(e.into()))?,
        )
    };
    let slack = input.kind == "slack";
    let default_expr = |given: Option<String>, slack_default: &str| {
        given.or_else(|| slack.then(|| slack_default.to_owned()))
    };
    let now = db::now();
    Ok(websocket_source::Model {
        id,
        org_id,
        name: input.name,
        source: input.source,
        kind: input.kind,
        enabled: input.enabled,
        event_key_expr: default_expr(input.event_key_expr, slack_defaults::EVENT_KEY),
        payload_expr: default_expr(input.payload_expr, slack_defaults::PAYLOAD),
        filter_expr: input.filter_expr,
        dedup_key_expr: default_expr(input.dedup_key_expr, slack_defaults::DEDUP_KEY),
        config: serde_json::to_value(StoredConfig::new(&settings, &secrets)).unwrap_or(Value::Null),
        secrets: sealed,
        revision: 1,
        created_at: now,
        updated_at: now,
    })
}

/// A PATCH shows the redacted URL back; when it arrives unchanged, the sealed full URL stands.
fn restore_secret_url(config: &mut Map<String, Value>, secrets: &mut SourceSecrets) {
    let full = secrets.url.take();
    if let (Some(Value::String(given)), Some(full)) = (config.get("url"), full)
        && *given == redact_url(&full)
    {
        config.insert("url".into(), Value::String(full));
    }
}

/// Moves a URL with credentials into the sealed secrets, keeping its redacted form in the
/// settings, so no credential is stored in plaintext.
fn seal_url(settings: SourceSettings, secrets: &mut SourceSecrets) -> SourceSettings {
    match settings {
        SourceSettings::Generic(mut generic) => {
            if has_credentials(&generic.url) {
                let redacted = redact_url(&generic.url);
                secrets.url = Some(std::mem::replace(&mut generic.url, redacted));
            }
            SourceSettings::Generic(generic)
        }
        other => other,
    }
}

/// Opens a source's sealed secrets; a failure is loud and names the key id.
pub fn open_secrets(
    state: &AppState,
    m: &websocket_source::Model,
) -> Result<SourceSecrets, ApiError> {
    open_secrets_with(&state.keyring, m)
        .map_err(|e| ApiError::Internal(e.context(format!("opening secrets of source {}", m.id))))
}

/// Opens a source's sealed secrets with `keyring`.
pub fn open_secrets_with(
    keyring: &Keyring,
    m: &websocket_source::Model,
) -> anyhow::Result<SourceSecrets> {
    let Some(blob) = &m.secrets else {
        return Ok(SourceSecrets::default());
    };
    let plain = keyring.open(blob, secret_slot(m.id))?;
    Ok(serde_json::from_slice(&plain)?)
}
