//! Turns the `config` object of a source request into settings plus secrets, checking every field
//! (paths are reported as `config.<field>`). Pure: the network policy is passed in.

use serde_json::{Map, Value};

use super::config::{
    GenericSettings, Liveness, SlackSettings, SourceSecrets, SourceSettings, UpgradeAuth,
};
use super::kind::SourceKind;
pub use super::secrets_in::{MapChange, SecretsIn, split_secrets};
use crate::netpolicy::NetworkPolicy;
use crate::validation::{Errors, FieldError};

/// Request headers a source may not set: the WebSocket handshake owns them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "upgrade",
    "connection",
    "content-length",
    "transfer-encoding",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
    "sec-websocket-accept",
];

/// Parses and checks the non-secret settings of `kind`, together with the complete secrets that
/// will be stored.
pub fn check_settings(
    kind: SourceKind,
    config: Map<String, Value>,
    secrets: &SourceSecrets,
    policy: &NetworkPolicy,
) -> Result<SourceSettings, Vec<FieldError>> {
    let mut errors = Errors::default();
    let settings = match kind {
        SourceKind::Generic => parse::<GenericSettings>(config, &mut errors).map(|s| {
            check_generic(&s, secrets, policy, &mut errors);
            SourceSettings::Generic(Box::new(s))
        }),
        SourceKind::Slack => parse::<SlackSettings>(config, &mut errors).map(|s| {
            check_slack(&s, secrets, &mut errors);
            SourceSettings::Slack(s)
        }),
    };
    match settings {
        Some(settings) => errors.finish(settings),
        None => Err(errors.0),
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    config: Map<String, Value>,
    errors: &mut Errors,
) -> Option<T> {
    match serde_path_to_error::deserialize(Value::Object(config)) {
        Ok(value) => Some(value),
        Err(err) => {
            let path = err.path().to_string();
            let message = err.into_inner().to_string();
            let field = match crate::validation::field_of(&path, &message).as_str() {
                "body" => "config".to_owned(),
                inner => format!("config.{inner}"),
            };
            errors.add(field, message);
            None
        }
    }
}

fn check_generic(
    s: &GenericSettings,
    secrets: &SourceSecrets,
    policy: &NetworkPolicy,
    errors: &mut Errors,
) {
    check_url(&s.url, policy, errors);
    check_handshake(s, secrets, errors);
    errors.expr("config.ready_expr", s.ready_expr.as_deref());
    errors.expr("config.fail_expr", s.fail_expr.as_deref());
    errors.expr("config.ack_expr", s.ack_expr.as_deref());
    errors.range("config.ready_timeout_s", s.ready_timeout_s.into(), 1..=300);
    errors.range(
        "config.max_messages_per_frame",
        s.max_messages_per_frame.into(),
        1..=100_000,
    );
    if let Some(UpgradeAuth::HmacBearer { key_id, secret }) = &s.upgrade_auth {
        check_upgrade_auth(key_id, secret, secrets, errors);
    }
    if let Some(ping) = &s.app_ping {
        errors.range(
            "config.app_ping.interval_s",
            ping.interval_s.into(),
            1..=3600,
        );
    }
    if let Some(age) = s.max_connection_age_s {
        errors.range("config.max_connection_age_s", age.into(), 5..=604_800);
    }
    if let Some(n) = s.pause_after_failures {
        errors.range("config.pause_after_failures", n.into(), 1..=10_000);
    }
    check_liveness(&s.liveness, errors);
    super::validate_tls::check_tls(s, secrets, errors);
    for (name, value) in &secrets.headers {
        check_header("config.headers", name, value, errors);
    }
}

/// `config.url`: a URL the network policy allows (the DNS part is checked by the caller).
fn check_url(url: &str, policy: &NetworkPolicy, errors: &mut Errors) {
    match url::Url::parse(url) {
        Ok(url) => {
            if let Err(err) = policy.check_url(&url) {
                errors.add("config.url", err.to_string());
            }
        }
        Err(err) => errors.add("config.url", format!("is not a URL: {err}")),
    }
}

/// `config.subprotocols` are tokens; `config.on_connect` names only secrets that exist.
fn check_handshake(s: &GenericSettings, secrets: &SourceSecrets, errors: &mut Errors) {
    for (i, proto) in s.subprotocols.iter().enumerate() {
        if proto.is_empty() || !proto.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
            errors.add(
                format!("config.subprotocols[{i}]"),
                "must be a non-empty token",
            );
        }
    }
    for (i, message) in s.on_connect.iter().enumerate() {
        let text = match message {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        for name in placeholders(&text) {
            if !secrets.values.contains_key(name) {
                errors.add(
                    format!("config.on_connect[{i}]"),
                    format!("refers to unknown secret `{name}` (add it to config.secrets)"),
                );
            }
        }
    }
}

/// `config.upgrade_auth`: a usable key id and a secret that exists.
fn check_upgrade_auth(key_id: &str, secret: &str, secrets: &SourceSecrets, errors: &mut Errors) {
    if key_id.is_empty() || key_id.contains('.') {
        errors.add(
            "config.upgrade_auth.key_id",
            "must be non-empty and contain no '.'",
        );
    }
    if !secrets.values.contains_key(secret) {
        errors.add(
            "config.upgrade_auth.secret",
            format!("refers to unknown secret `{secret}` (add it to config.secrets)"),
        );
    }
}

fn check_header(field: &str, name: &str, value: &str, errors: &mut Errors) {
    if actix_http_free_header_name_ok(name) {
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            errors.add(
                format!("{field}.{name}"),
                "is set by the WebSocket handshake and cannot be overridden",
            );
        }
    } else {
        errors.add(format!("{field}.{name}"), "is not a valid HTTP header name");
    }
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        errors.add(
            format!("{field}.{name}"),
            "value contains control characters",
        );
    }
}

/// RFC 9110 token characters only.
fn actix_http_free_header_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn check_slack(s: &SlackSettings, secrets: &SourceSecrets, errors: &mut Errors) {
    match secrets.app_token.as_deref() {
        None => errors.add("config.app_token", "is required for Slack sources"),
        Some(token) if !token.starts_with("xapp-") => errors.add(
            "config.app_token",
            "must be an app-level token starting with `xapp-`",
        ),
        Some(_) => {}
    }
    errors.range("config.connections", s.connections.into(), 1..=10);
    if let Some(n) = s.pause_after_failures {
        errors.range("config.pause_after_failures", n.into(), 1..=10_000);
    }
    check_liveness(&s.liveness, errors);
}

fn check_liveness(l: &Liveness, errors: &mut Errors) {
    errors.range(
        "config.liveness.ping_interval_s",
        l.ping_interval_s.into(),
        1..=3600,
    );
    errors.range(
        "config.liveness.pong_timeout_s",
        l.pong_timeout_s.into(),
        1..=600,
    );
    errors.range(
        "config.liveness.idle_timeout_s",
        l.idle_timeout_s.into(),
        5..=3600,
    );
    errors.range(
        "config.liveness.close_timeout_ms",
        l.close_timeout_ms.into(),
        100..=30_000,
    );
    errors.range(
        "config.liveness.max_message_bytes",
        l.max_message_bytes.into(),
        1024..=64 * 1024 * 1024,
    );
    if l.terminal_close_codes.len() > 32 {
        errors.add("config.liveness.terminal_close_codes", "at most 32 codes");
    }
    for (i, code) in l.terminal_close_codes.iter().enumerate() {
        errors.range(
            &format!("config.liveness.terminal_close_codes[{i}]"),
            (*code).into(),
            1000..=4999,
        );
    }
}

/// The names used in `{{secret:NAME}}` placeholders of `text`.
pub fn placeholders(text: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{secret:") {
        let after = &rest[start + "{{secret:".len()..];
        match after.find("}}") {
            Some(end) => {
                names.push(after[..end].trim());
                rest = &after[end + 2..];
            }
            None => break,
        }
    }
    names
}
