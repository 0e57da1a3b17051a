//! Turns a webhook request into the row to store: checks every field and settles the secret set
//! (given, kept from the stored row, or generated), sealed. A PATCH is merged onto the stored
//! webhook first and then checked like a creation.

use entity::webhook;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::shapes::WebhookIn;
use crate::api::body::parse_json;
use crate::api::state::AppState;
use crate::db;
use crate::error::ApiError;
use crate::sealed;
use crate::validation::Errors;
use crate::webhooks::verifier::WebhookSecrets;

/// Default accepted body size.
pub const DEFAULT_MAX_BODY: i64 = 1024 * 1024;
/// Largest accepted body size a webhook may set.
const MAX_MAX_BODY: u64 = 16 * 1024 * 1024;

/// Seals a webhook's secret set.
pub fn seal_secrets(
    state: &AppState,
    id: Uuid,
    secrets: &WebhookSecrets,
) -> Result<Vec<u8>, ApiError> {
    sealed::seal_webhook_secrets(&state.keyring, id, secrets).map_err(ApiError::Internal)
}

/// Opens a webhook's secret set; failure is loud and names the webhook.
pub fn open_secrets(
    state: &AppState,
    m: &webhook::Model,
) -> Result<Option<WebhookSecrets>, ApiError> {
    sealed::open_webhook_secrets(&state.keyring, m).map_err(ApiError::Internal)
}

/// Merges a JSON merge patch onto the stored webhook (without its secret) and reads the result.
/// Turning a webhook with a secret insecure drops its secret for good, so it takes an explicit
/// `"secret": null` beside `"insecure": true` (a 422 otherwise, as on create).
pub fn apply_patch(m: &webhook::Model, patch: Map<String, Value>) -> Result<WebhookIn, ApiError> {
    let goes_insecure = !m.insecure && patch.get("insecure") == Some(&Value::Bool(true));
    if goes_insecure && !patch.get("secret").is_some_and(Value::is_null) {
        return Err(ApiError::field(
            "insecure",
            "this webhook has a secret; send `\"secret\": null` with `\"insecure\": true` to drop it",
        ));
    }
    let mut doc = json!({
        "name": m.name, "source": m.source, "verifier": m.verifier, "insecure": m.insecure,
        "event_key_expr": m.event_key_expr, "payload_expr": m.payload_expr,
        "filter_expr": m.filter_expr, "dedup_key_expr": m.dedup_key_expr,
        "max_body_bytes": m.max_body_bytes, "rate_limit": m.rate_limit, "enabled": m.enabled,
    });
    // Another preset has other settings: its verifier replaces the stored one whole (merged, the
    // old preset's settings would be unknown fields of the new one).
    let new_preset = patch
        .get("verifier")
        .and_then(|v| v.get("preset"))
        .is_some_and(|preset| Some(preset) != m.verifier.get("preset"));
    if new_preset {
        doc["verifier"] = Value::Null;
    }
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
        if !(limit.per_second.is_finite() && (0.001..=1_000_000.0).contains(&limit.per_second)) {
            errors.add(
                "rate_limit.per_second",
                "must be between 0.001 (one delivery per 1,000 s) and 1000000",
            );
        }
        errors.range("rate_limit.burst", limit.burst.into(), 1..=100_000);
    }
}

/// A fresh secret set holding only `current`.
fn only_current(current: String) -> WebhookSecrets {
    WebhookSecrets {
        current,
        previous: None,
        previous_expires_at: None,
    }
}

/// The secret set to store and the secret to show once (when one was generated): none for an
/// insecure webhook, the given one, else the stored one, else a new one.
fn settle_secrets(
    state: &AppState,
    input: &mut WebhookIn,
    previous: Option<&webhook::Model>,
) -> Result<(Option<WebhookSecrets>, Option<String>), ApiError> {
    let stored = match previous {
        Some(prev) => open_secrets(state, prev)?,
        None => None,
    };
    Ok(match (input.insecure, input.secret.take(), stored) {
        (true, _, _) => (None, None),
        (false, Some(secret), _) => (Some(only_current(secret)), None),
        (false, None, Some(kept)) => (Some(kept), None),
        (false, None, None) => {
            let secret = input.verifier.generate_secret();
            (Some(only_current(secret.clone())), Some(secret))
        }
    })
}

/// Validates an input and builds the row; returns the generated secret, if one was generated.
pub fn build_row(
    state: &AppState,
    org_id: Uuid,
    id: Uuid,
    mut input: WebhookIn,
    previous: Option<&webhook::Model>,
) -> Result<(webhook::Model, Option<String>), ApiError> {
    let mut errors = Errors::default();
    check(&input, &mut errors);
    errors.finish(()).map_err(ApiError::Validation)?;
    let (secrets, generated) = settle_secrets(state, &mut input, previous)?;
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
