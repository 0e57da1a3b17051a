//! The pure part of an inbound delivery: parsing the body by content type, the object expressions
//! evaluate over (`{"headers": …, "body": …}`), provider handshakes, the preset default
//! expressions, and a per-webhook token bucket.

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::verifier::Verifier;

/// Headers never copied into an event.
const PRIVATE_HEADERS: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

/// Parts of a header name (lower case, without `-` and `_`) that make it a credential's, never
/// copied into an event either (`X-Gitlab-Token`, `X-Api-Key`, `X-Webhook-Secret`, `Set-Cookie`,
/// …); so does a name ending in `key` (`X-Functions-Key`, `Ocp-Apim-Subscription-Key`).
const PRIVATE_HEADER_PARTS: [&str; 7] = [
    "token",
    "secret",
    "apikey",
    "password",
    "cookie",
    "authorization",
    "credential",
];

/// Whether a (lower-case) header name may carry a credential. Read for every header of every
/// delivery: compares in place, without building the name's plain form.
fn is_private_header(name: &str) -> bool {
    // The name from `at` on, without `-` and `_`.
    let plain = |at: usize| {
        name.as_bytes()[at..]
            .iter()
            .copied()
            .filter(|b| *b != b'-' && *b != b'_')
    };
    PRIVATE_HEADERS.contains(&name)
        || plain(0).rev().take(3).eq("yek".bytes())
        || PRIVATE_HEADER_PARTS
            .iter()
            .any(|part| (0..name.len()).any(|at| plain(at).take(part.len()).eq(part.bytes())))
}

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Not JSON nor a form (415).
    #[error(
        "unsupported content type `{0}`: send application/json or application/x-www-form-urlencoded"
    )]
    Unsupported(String),
    /// Malformed JSON (400).
    #[error("malformed JSON: {0}")]
    Malformed(String),
}

/// Parses a body: JSON (also without a content type), or a form whose fields become an object (a
/// `payload` field holding JSON, as Slack interactivity sends it, is parsed).
pub fn parse_body(content_type: Option<&str>, body: &[u8]) -> Result<Value, BodyError> {
    let mime = content_type
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    match mime.as_str() {
        "" | "application/json" => {
            serde_json::from_slice(body).map_err(|e| BodyError::Malformed(e.to_string()))
        }
        m if m.ends_with("+json") => {
            serde_json::from_slice(body).map_err(|e| BodyError::Malformed(e.to_string()))
        }
        "application/x-www-form-urlencoded" => Ok(form_object(body)),
        other => Err(BodyError::Unsupported(other.to_owned())),
    }
}

fn form_object(body: &[u8]) -> Value {
    let mut map = Map::new();
    for (key, value) in url::form_urlencoded::parse(body) {
        let value = if key == "payload" {
            serde_json::from_str(&value).unwrap_or(Value::String(value.into_owned()))
        } else {
            Value::String(value.into_owned())
        };
        map.insert(key.into_owned(), value);
    }
    Value::Object(map)
}

/// The message expressions see (and the event's `raw`): lower-case headers (without credentials)
/// and the parsed body.
pub fn message(headers: &[(String, String)], body: Value) -> Value {
    let headers: Map<String, Value> = headers
        .iter()
        .filter(|(name, _)| !is_private_header(name))
        .map(|(name, value)| (name.clone(), Value::String(value.clone())))
        .collect();
    json!({"headers": headers, "body": body})
}

/// A sample message of the shape [`message`] makes (a dry run's) with the same headers left out
/// as a delivery's event leaves out; names are lower-cased as a delivery's are.
pub fn without_private_headers(mut sample: Value) -> Value {
    if let Some(headers) = sample.get_mut("headers").and_then(Value::as_object_mut) {
        let kept: Map<String, Value> = std::mem::take(headers)
            .into_iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value))
            .filter(|(name, _)| !is_private_header(name))
            .collect();
        *headers = kept;
    }
    sample
}

/// A delivery's body without the credential its provider puts in it: Slack sends its (deprecated)
/// verification token as `token` in every Events API body, slash command and interactivity
/// `payload`; it is never stored in an event.
pub fn without_provider_token(verifier: &Verifier, mut body: Value) -> Value {
    if let (Verifier::Slack { .. }, Some(fields)) = (verifier, body.as_object_mut()) {
        fields.remove("token");
        if let Some(payload) = fields.get_mut("payload").and_then(Value::as_object_mut) {
            payload.remove("token");
        }
    }
    body
}

/// The answer to a provider handshake that must not become an event (Slack `url_verification`).
pub fn handshake_answer(verifier: &Verifier, body: &Value) -> Option<Value> {
    match verifier {
        Verifier::Slack { .. }
            if body.get("type").and_then(Value::as_str) == Some("url_verification") =>
        {
            // Only a string is a challenge; anything else is stored as the event it claims to be.
            let challenge = body.get("challenge").and_then(Value::as_str)?;
            Some(json!({ "challenge": challenge }))
        }
        _ => None,
    }
}

/// Origin details kept in the event's meta.
pub fn meta(
    verifier: &Verifier,
    headers: &[(String, String)],
    verified_with: Option<&str>,
) -> Value {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let mut meta = json!({"preset": verifier.preset(), "verified_with": verified_with});
    if matches!(verifier, Verifier::Slack { .. }) {
        meta["retry_num"] = json!(header("x-slack-retry-num"));
        meta["retry_reason"] = json!(header("x-slack-retry-reason"));
    }
    meta
}

/// The preset's default (event key, payload, dedup key) expressions.
pub fn default_exprs(
    verifier: &Verifier,
) -> (
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
) {
    match verifier {
        Verifier::Github {} => (
            Some(
                "body.action && join('.', [headers.\"x-github-event\", body.action]) || headers.\"x-github-event\"",
            ),
            Some("body"),
            Some("headers.\"x-github-delivery\""),
        ),
        Verifier::Slack { .. } => (
            Some("body.event.type || body.payload.type || body.command || body.type"),
            Some("body.event || body.payload || body"),
            Some("body.event_id || body.payload.trigger_id"),
        ),
        Verifier::Stripe { .. } => (Some("body.type"), Some("body"), Some("body.id")),
        Verifier::Standard { .. } => (
            Some("body.type"),
            Some("body"),
            Some("headers.\"webhook-id\" || headers.\"svix-id\""),
        ),
        Verifier::Hmac { .. } => (Some("body.type"), Some("body"), None),
    }
}

/// Per-webhook counts of delivery outcomes since this process started (`accepted`,
/// `duplicate`, `filtered`, `handshake`, `bad_signature`, `stale`, `too_large`, `rate_limited`,
/// `bad_body`, `unavailable`, `failed`).
#[derive(Debug, Default)]
pub struct DeliveryCounters {
    counts: std::sync::Mutex<
        std::collections::HashMap<uuid::Uuid, std::collections::BTreeMap<&'static str, u64>>,
    >,
}

impl DeliveryCounters {
    /// Counts one delivery of `webhook` with `outcome`.
    pub fn record(&self, webhook: uuid::Uuid, outcome: &'static str) {
        if let Ok(mut counts) = self.counts.lock() {
            *counts
                .entry(webhook)
                .or_default()
                .entry(outcome)
                .or_insert(0) += 1;
        }
    }

    /// Every outcome's count summed over all webhooks.
    pub fn totals(&self) -> std::collections::BTreeMap<&'static str, u64> {
        let mut totals = std::collections::BTreeMap::new();
        if let Ok(counts) = self.counts.lock() {
            for per_hook in counts.values() {
                for (outcome, n) in per_hook {
                    *totals.entry(*outcome).or_insert(0) += n;
                }
            }
        }
        totals
    }

    /// The counts of `webhook` as a JSON object.
    pub fn of(&self, webhook: uuid::Uuid) -> Value {
        let counts = self
            .counts
            .lock()
            .ok()
            .and_then(|c| c.get(&webhook).cloned())
            .unwrap_or_default();
        json!(counts)
    }
}

/// A token bucket: `burst` requests at once, refilled at `per_second`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    per_second: f64,
    burst: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(per_second: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            tokens: burst,
            per_second: per_second.max(f64::MIN_POSITIVE),
            burst,
            updated: now,
        }
    }

    /// Takes a token, or says how long until one is available.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                ((1.0 - self.tokens) / self.per_second).min(86_400.0),
            ))
        }
    }

    /// Whether the settings differ from these.
    pub fn differs(&self, per_second: f64, burst: u32) -> bool {
        (self.per_second - per_second).abs() > f64::EPSILON
            || (self.burst - f64::from(burst.max(1))).abs() > f64::EPSILON
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn credential_headers_stay_out_of_events() {
        for name in [
            "authorization",
            "cookie",
            "x-gitlab-token",
            "x-api-key",
            "x_api_key",
            "x-functions-key",
            "ocp-apim-subscription-key",
            "x-webhook-secret",
            "x-access-key",
            "x-credential",
            "x-ke-y",
            "x-to_ken-id",
        ] {
            assert!(is_private_header(name), "{name}");
        }
        for name in [
            "x-github-event",
            "x-oauth-scopes",
            "x-authy-signature",
            "x-request-id",
            "content-type",
            "x-keyboard",
            "ke",
            "",
        ] {
            assert!(!is_private_header(name), "{name}");
        }
        let sample = json!({"headers": {"X-Api-Key": "k", "X-GitHub-Event": "push"}, "body": {}});
        let sample = without_private_headers(sample);
        assert_eq!(sample["headers"], json!({"x-github-event": "push"}));
    }

    #[test]
    fn parses_json_forms_and_refuses_the_rest() {
        assert_eq!(
            parse_body(Some("application/json; charset=utf-8"), br#"{"a":1}"#).unwrap(),
            json!({"a": 1})
        );
        assert_eq!(parse_body(None, b"[1]").unwrap(), json!([1]));
        let form = parse_body(
            Some("application/x-www-form-urlencoded"),
            b"payload=%7B%22type%22%3A%22block_actions%22%7D&x=1",
        )
        .unwrap();
        assert_eq!(
            form,
            json!({"payload": {"type": "block_actions"}, "x": "1"})
        );
        assert!(matches!(
            parse_body(Some("text/plain"), b"hi"),
            Err(BodyError::Unsupported(_))
        ));
        assert!(matches!(
            parse_body(Some("application/json"), b"{"),
            Err(BodyError::Malformed(_))
        ));
    }

    #[test]
    fn messages_drop_credentials_and_slack_handshakes_are_answered() {
        let headers = vec![
            ("authorization".to_owned(), "Bearer x".to_owned()),
            ("x-a".to_owned(), "1".to_owned()),
        ];
        assert_eq!(
            message(&headers, json!({})),
            json!({"headers": {"x-a": "1"}, "body": {}})
        );
        let slack = Verifier::Slack { tolerance_s: 300 };
        assert_eq!(
            handshake_answer(
                &slack,
                &json!({"type": "url_verification", "challenge": "c"})
            ),
            Some(json!({"challenge": "c"}))
        );
        assert_eq!(
            handshake_answer(&Verifier::Github {}, &json!({"type": "url_verification"})),
            None
        );
    }

    #[test]
    fn buckets_refill() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(1.0, 2, start);
        assert!(bucket.try_take(start).is_ok());
        assert!(bucket.try_take(start).is_ok());
        let wait = bucket.try_take(start).unwrap_err();
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
        assert!(bucket.try_take(start + Duration::from_secs(1)).is_ok());
    }
}
