//! Request and response shapes of `/v1/webhooks`, and the conversion to the stored row.

use chrono::{DateTime, Utc};
use entity::webhook;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::body::parse_json;
use crate::crypto::SecretSlot;
use crate::db;
use crate::error::ApiError;
use crate::state::AppState;
use crate::validation::Errors;
use crate::webhooks::verifier::{Verifier, WebhookSecrets};

/// Default and largest accepted body sizes.
pub const DEFAULT_MAX_BODY: i64 = 1024 * 1024;
const MAX_MAX_BODY: u64 = 16 * 1024 * 1024;

fn yes() -> bool {
    true
}

/// Token-bucket rate limit of a webhook.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second.
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

/// The slot webhooks' secrets are sealed in.
pub fn secret_slot(id: Uuid) -> SecretSlot<'static> {
    SecretSlot::new("webhooks", "secrets", id)
}

/// Seals a webhook's secret set.
pub fn seal_secrets(
    state: &AppState,
    id: Uuid,
    secrets: &WebhookSecrets,
) -> Result<Vec<u8>, ApiError> {
    let plain = serde_json::to_vec(secrets).map_err(|e| ApiError::Internal(e.into()))?;
    state
        .keyring
        .seal(&plain, secret_slot(id))
        .map_err(|e| ApiError::Internal(e.into()))
}

/// Opens a webhook's secret set; failure is loud and names the key id.
pub fn open_secrets(
    state: &AppState,
    m: &webhook::Model,
) -> Result<Option<WebhookSecrets>, ApiError> {
    let Some(blob) = &m.secrets else {
        return Ok(None);
    };
    let plain = state.keyring.open(blob, secret_slot(m.id)).map_err(|e| {
        ApiError::Internal(
            anyhow::Error::new(e).context(format!("opening secrets of webhook {}", m.id)),
        )
    })?;
    serde_json::from_slice(&plain)
        .map(Some)
        .map_err(|e| ApiError::Internal(e.into()))
}

/// Merges a JSON merge patch onto the stored webhook (without its secret) and reads the result.
pub fn apply_patch(m: &webhook::Model, patch: Map<String, Value>) -> Result<WebhookIn, ApiError> {
    let mut doc = json!({
        "name": m.name, "source": m.source, "verifier": m.verifier, "insecure": m.insecure,
        "event_key_expr": m.event_key_expr, "payload_expr": m.payload_expr,
        "filter_expr": m.filter_expr, "dedup_key_expr": m.dedup_key_expr,
        "max_body_bytes": m.max_body_bytes, "rate_limit": m.rate_limit, "enabled": m.enabled,
    });
    json_patch::merge(&mut doc, &Value::Object(patch));
    let bytes = serde_json::to_vec(&doc).map_err(|e| ApiError::Internal(e.into()))?;
    parse_json(&bytes)
}

fn check(input: &WebhookIn, errors: &mut Errors) {
    errors.name("name", &input.name);
    errors.new_slug("source", &input.source);
    input.verifier.check(input.secret.as_deref(), errors);
    if input.insecure && input.secret.is_some() {
        errors.add(
            "secret",
            "an insecure webhook has no secret; drop `secret` or `insecure`",
        );
    }
    for (field, expr) in [
        ("event_key_expr", &input.event_key_expr),
        ("payload_expr", &input.payload_expr),
        ("filter_expr", &input.filter_expr),
        ("dedup_key_expr", &input.dedup_key_expr),
    ] {
        errors.expr(field, expr.as_deref());
    }
    if let Some(size) = input.max_body_bytes {
        errors.range("max_body_bytes", size, 1..=MAX_MAX_BODY);
    }
    if let Some(limit) = &input.rate_limit {
        if !(limit.per_second.is_finite() && limit.per_second > 0.0) {
            errors.add("rate_limit.per_second", "must be a positive number");
        }
        errors.range("rate_limit.burst", limit.burst.into(), 1..=100_000);
    }
}

/// Validates an input and builds the row; returns the generated secret, if one was generated.
pub fn build_row(
    state: &AppState,
    org_id: Uuid,
    id: Uuid,
    input: WebhookIn,
    previous: Option<&webhook::Model>,
) -> Result<(webhook::Model, Option<String>), ApiError> {
    let mut errors = Errors::default();
    check(&input, &mut errors);
    errors.finish(()).map_err(ApiError::Validation)?;
    let stored = match previous {
        Some(prev) => open_secrets(state, prev)?,
        None => None,
    };
    let (secrets, generated) = match (input.insecure, input.secret, stored) {
        (true, _, _) => (None, None),
        (false, Some(secret), _) => (
            Some(WebhookSecrets {
                current: secret,
                previous: None,
                previous_expires_at: None,
            }),
            None,
        ),
        (false, None, Some(kept)) => (Some(kept), None),
        (false, None, None) => {
            let secret = input.verifier.generate_secret();
            (
                Some(WebhookSecrets {
                    current: secret.clone(),
                    previous: None,
                    previous_expires_at: None,
                }),
                Some(secret),
            )
        }
    };
    let sealed = secrets.map(|s| seal_secrets(state, id, &s)).transpose()?;
    let now = db::now();
    let row = webhook::Model {
        id,
        org_id,
        name: input.name,
        source: input.source,
        verifier: serde_json::to_value(&input.verifier)
            .map_err(|e| ApiError::Internal(e.into()))?,
        secrets: sealed,
        insecure: input.insecure,
        event_key_expr: input.event_key_expr,
        payload_expr: input.payload_expr,
        filter_expr: input.filter_expr,
        dedup_key_expr: input.dedup_key_expr,
        max_body_bytes: input.max_body_bytes.map_or(DEFAULT_MAX_BODY, |n| {
            i64::try_from(n).unwrap_or(DEFAULT_MAX_BODY)
        }),
        rate_limit: input.rate_limit.map(|r| json!(r)),
        enabled: input.enabled,
        secret_rotated_at: previous.and_then(|p| p.secret_rotated_at),
        created_at: now,
        updated_at: now,
    };
    Ok((row, generated))
}
