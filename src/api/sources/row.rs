//! Turns a source request into the row to store: checks every field, merges the given secrets
//! over the stored ones, applies the network policy and seals the secrets. A PATCH is merged onto
//! the stored source first and then checked like a creation.

use entity::websocket_source;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::shapes::SourceIn;
use crate::api::body::parse_json;
use crate::api::state::AppState;
use crate::db;
use crate::error::ApiError;
use crate::netpolicy::NetworkPolicy;
use crate::redact::{has_credentials, redact_url};
use crate::sealed;
use crate::sources::config::{SourceSecrets, SourceSettings, StoredConfig, slack_defaults};
use crate::sources::kind::SourceKind;
use crate::sources::validate::{check_settings, split_secrets};
use crate::sources::validate_tls::reconcile_client_key;
use crate::validation::Errors;

/// The `config` keys that are secrets: a PATCH passes them on as given, to be merged into the
/// stored secrets ([`split_secrets`]).
const SECRET_KEYS: [&str; 3] = ["headers", "secrets", "app_token"];

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
    let client_key = match patch.get("config").and_then(|c| c.get("tls")) {
        Some(Value::Object(tls)) => tls.get("client_key").cloned(),
        _ => None,
    };
    json_patch::merge(&mut base, &Value::Object(patch));
    if let (Some(key), Some(Value::Object(tls))) = (
        client_key,
        base.get_mut("config").and_then(|c| c.get_mut("tls")),
    ) {
        // Passed on as given (a `null` removes the stored key), as the other secrets are.
        tls.insert("client_key".into(), key);
    }
    if let Some(Value::Object(config)) = base.get_mut("config") {
        // Secrets are merged into what is stored later, where it is known (`null`s included:
        // they remove); the base holds none.
        for (key, value) in secrets {
            config.insert(key, value);
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
    mut input: SourceIn,
    previous: Option<&websocket_source::Model>,
) -> Result<websocket_source::Model, ApiError> {
    let mut errors = Errors::default();
    check_fields(&input, previous, &mut errors);
    let config = std::mem::take(&mut input.config);
    let (settings, secrets) = check_config(state, &input.kind, config, previous, errors)?;
    let sealed =
        sealed::seal_source_secrets(&state.keyring, id, &secrets).map_err(ApiError::Internal)?;
    let kind = settings.kind();
    let default_expr = |given: Option<String>, slack_default: &str| {
        given.or_else(|| (kind == SourceKind::Slack).then(|| slack_default.to_owned()))
    };
    let now = db::now();
    Ok(websocket_source::Model {
        id,
        org_id,
        name: input.name,
        source: input.source,
        kind: kind.as_str().to_owned(),
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

/// The fields outside `config`: name, slug, an unchanged kind, the four expressions.
fn check_fields(input: &SourceIn, previous: Option<&websocket_source::Model>, errors: &mut Errors) {
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
}

/// Reads `config` for `kind`: splits off the given secrets and merges them over the stored ones,
/// checks the settings under the network policy and moves a URL's credentials into the secrets.
/// Every problem found so far (`errors`) and here is answered in one 422.
fn check_config(
    state: &AppState,
    kind: &str,
    mut config: Map<String, Value>,
    previous: Option<&websocket_source::Model>,
    mut errors: Errors,
) -> Result<(SourceSettings, SourceSecrets), ApiError> {
    let given = split_secrets(&mut config, &mut errors, previous.is_some());
    let key_given = given.client_key.is_some();
    let stored = match previous {
        Some(prev) => open_secrets(state, prev)?,
        None => SourceSecrets::default(),
    };
    let mut secrets = given.merge_into(stored);
    reconcile_client_key(&config, key_given, &mut secrets);
    let stored_url = previous.and_then(|prev| {
        let stored = StoredConfig::from_json(&prev.config).settings;
        stored.get("url").and_then(Value::as_str).map(str::to_owned)
    });
    restore_secret_url(&mut config, &mut secrets, stored_url);
    let Some(kind) = SourceKind::parse(kind) else {
        errors.add("kind", "must be `generic` or `slack`");
        return Err(ApiError::Validation(errors.0));
    };
    let policy = NetworkPolicy {
        allow_private: state.settings.allow_private_networks,
    };
    let settings = match check_settings(kind, config, &secrets, &policy) {
        Ok(s) => errors.finish(s).map_err(ApiError::Validation)?,
        Err(more) => {
            errors.0.extend(more);
            return Err(ApiError::Validation(errors.0));
        }
    };
    let settings = seal_url(settings, &mut secrets);
    Ok((settings, secrets))
}

/// A PATCH shows the redacted URL back; when it arrives unchanged, the full URL stands: the sealed
/// one, or the stored settings' own (a URL stored before its credentials were recognised as such:
/// it is sealed now).
fn restore_secret_url(
    config: &mut Map<String, Value>,
    secrets: &mut SourceSecrets,
    stored_url: Option<String>,
) {
    let full = secrets.url.take().or(stored_url);
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

/// Opens a source's sealed secrets; a failure is loud and names the source.
fn open_secrets(state: &AppState, m: &websocket_source::Model) -> Result<SourceSecrets, ApiError> {
    sealed::open_source_secrets(&state.keyring, m)
        .map_err(|e| ApiError::Internal(e.context(format!("opening secrets of source {}", m.id))))
}
