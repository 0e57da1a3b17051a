//! Request and response shapes of `/v1/webhooks`, and how a stored row is shown (the secret only
//! as `has_secret`, except once when it was generated).

use chrono::{DateTime, Utc};
use entity::webhook;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api::state::AppState;
use crate::error::ApiError;
use crate::webhooks::verifier::Verifier;

fn yes() -> bool {
    true
}

/// Token-bucket rate limit of a webhook.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second (0.001..=1000000).
    #[schema(minimum = 0.001, maximum = 1000000)]
    pub per_second: f64,
    /// Requests allowed at once.
    pub burst: u32,
}

/// A webhook as created (and, after merging a PATCH, as replaced).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "GitHub", "source": "github", "verifier": {"preset": "github"}}))]
pub struct WebhookIn {
    /// Display name.
    pub name: String,
    /// Slug in the inbound URL and in `trigger.source` (unique per org with WebSocket sources).
    pub source: String,
    /// How requests are authenticated.
    pub verifier: Verifier,
    /// Signing secret; generated (and returned once) when omitted.
    #[serde(default)]
    pub secret: Option<String>,
    /// Accept unsigned requests. Every response says so.
    #[serde(default)]
    pub insecure: bool,
    /// JMESPath giving the event key (the preset has a default).
    #[serde(default)]
    pub event_key_expr: Option<String>,
    /// JMESPath giving the payload.
    #[serde(default)]
    pub payload_expr: Option<String>,
    /// JMESPath pre-filter.
    #[serde(default)]
    pub filter_expr: Option<String>,
    /// JMESPath giving the dedup key (the preset has a default).
    #[serde(default)]
    pub dedup_key_expr: Option<String>,
    /// Largest accepted body (default 1 MiB, at most 16 MiB).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 16777216)]
    pub max_body_bytes: Option<u64>,
    /// Per-webhook rate limit.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Whether requests are accepted (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// Body of `rotate-secret`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateIn {
    /// Seconds the previous secret keeps verifying (default 86400).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2592000)]
    pub grace_period_s: Option<u32>,
}

/// A webhook as shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookOut {
    /// Id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Slug.
    pub source: String,
    /// The URL to paste into the provider's settings.
    pub webhook_url: String,
    /// Verifier preset and settings.
    #[schema(value_type = Verifier)]
    pub verifier: Value,
    /// Whether a secret is stored.
    pub has_secret: bool,
    /// Only at creation (when generated) and rotation: the secret. Store it now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Unsigned requests are accepted.
    pub insecure: bool,
    /// Present when `insecure`: anyone who knows the URL can create events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// Event key expression.
    pub event_key_expr: Option<String>,
    /// Payload expression.
    pub payload_expr: Option<String>,
    /// Pre-filter expression.
    pub filter_expr: Option<String>,
    /// Dedup key expression.
    pub dedup_key_expr: Option<String>,
    /// Largest accepted body.
    pub max_body_bytes: i64,
    /// Rate limit.
    #[schema(value_type = Option<RateLimit>)]
    pub rate_limit: Option<Value>,
    /// Whether requests are accepted.
    pub enabled: bool,
    /// Last rotation.
    pub secret_rotated_at: Option<DateTime<Utc>>,
    /// Delivery outcomes counted by this process since it started.
    #[schema(value_type = Object)]
    pub counters: Value,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl WebhookOut {
    /// The response shape of a row.
    pub fn new(state: &AppState, m: webhook::Model) -> Self {
        let webhook_url = format!(
            "{}/v1/events/{}/{}",
            state.settings.public_base_url(),
            m.org_id,
            m.source
        );
        Self {
            id: m.id,
            name: m.name,
            source: m.source,
            webhook_url,
            verifier: m.verifier,
            has_secret: m.secrets.is_some(),
            secret: None,
            insecure: m.insecure,
            warning: m.insecure.then(|| {
                "INSECURE: this webhook accepts unsigned requests; anyone who knows its URL can create events".to_owned()
            }),
            event_key_expr: m.event_key_expr,
            payload_expr: m.payload_expr,
            filter_expr: m.filter_expr,
            dedup_key_expr: m.dedup_key_expr,
            max_body_bytes: m.max_body_bytes,
            rate_limit: m.rate_limit,
            enabled: m.enabled,
            counters: state.webhook_counters.of(m.id),
            secret_rotated_at: m.secret_rotated_at,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }

    /// The stored verifier.
    pub fn verifier_of(m: &webhook::Model) -> Result<Verifier, ApiError> {
        serde_json::from_value(m.verifier.clone()).map_err(|e| ApiError::Internal(e.into()))
    }
}
