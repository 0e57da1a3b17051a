//! `apps.connections.open`: the request, the classification of its answer, and the WebSocket URL
//! it hands out (single-use: its `ticket` query value is a credential and never shown).

use std::fmt;
use std::time::Duration;

use serde_json::Value as Json;

use crate::sources::failure::FailureClass;

/// Wait after a 429 without a usable `Retry-After` header.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Longest `Retry-After` honoured; longer (nonsensical) values are cut to it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// `apps.connections.open` errors retrying cannot fix: the source goes `failed`.
pub const TERMINAL_OPEN_ERRORS: &[&str] = &[
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "not_allowed_token_type",
];

/// Longest Slack error code quoted in a detail (longer ones are cut).
const MAX_ERROR_CODE_CHARS: usize = 64;

/// An HTTP request to send, as plain data. Its `Debug` shows header names only, never the
/// `Authorization` value.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequestSpec {
    /// The method (`POST`).
    pub method: &'static str,
    /// The full URL.
    pub url: String,
    /// Request headers, in order; `Authorization` holds the app token.
    pub headers: Vec<(String, String)>,
    /// The request body.
    pub body: String,
}

impl fmt::Debug for HttpRequestSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("HttpRequestSpec")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("header_names", &names)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// The `apps.connections.open` call: `POST {api_base}/apps.connections.open` with the app token
/// as Bearer and an empty form body. `debug_reconnects` does not change the call (Slack reads it
/// from the WebSocket URL, see [`connect_url`]); it is accepted so callers pass their settings
/// through one place.
pub fn open_request(api_base: &str, app_token: &str, debug_reconnects: bool) -> HttpRequestSpec {
    let _ = debug_reconnects;
    HttpRequestSpec {
        method: "POST",
        url: format!("{}/apps.connections.open", api_base.trim_end_matches('/')),
        headers: vec![
            ("Authorization".to_owned(), format!("Bearer {app_token}")),
            (
                "Content-Type".to_owned(),
                "application/x-www-form-urlencoded".to_owned(),
            ),
        ],
        body: String::new(),
    }
}

/// The single-use WebSocket URL from a successful `apps.connections.open`. Its `Debug` hides the
/// `ticket`.
#[derive(Clone, PartialEq, Eq)]
pub struct OpenedUrl {
    url: String,
}

impl OpenedUrl {
    /// The URL exactly as Slack sent it, ticket included: never log it.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// The URL to connect to, with `debug_reconnects=true` appended when asked.
    pub fn connect_url(&self, debug_reconnects: bool) -> String {
        connect_url(&self.url, debug_reconnects)
    }

    /// The URL with its `ticket` hidden, for logs and status details.
    pub fn redacted(&self) -> String {
        redact_ticket(&self.url)
    }
}

impl fmt::Debug for OpenedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("OpenedUrl").field(&self.redacted()).finish()
    }
}

/// Why `apps.connections.open` gave no URL: how the restart policy treats it, and a detail for the
/// source status that never holds the token or a ticket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct OpenFailure {
    /// Terminal for the auth errors of [`TERMINAL_OPEN_ERRORS`], rate-limited for 429, otherwise
    /// transient.
    pub class: FailureClass,
    /// What happened, for the source status.
    pub detail: String,
}

impl OpenFailure {
    fn transient(detail: String) -> OpenFailure {
        OpenFailure {
            class: FailureClass::Transient,
            detail,
        }
    }
}

/// Classifies the answer to `apps.connections.open`: its HTTP status, its `Retry-After` header
/// (seconds) and its body. 429 (or the error `ratelimited`) is rate-limited for `Retry-After`
/// (default [`DEFAULT_RETRY_AFTER`]); the errors of [`TERMINAL_OPEN_ERRORS`] are terminal whatever
/// the status; `{"ok": true, "url": "ws(s)://…"}` with a 2xx status is the URL; anything else
/// (5xx, other errors, unreadable bodies) is transient.
pub fn parse_open_response(
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
) -> Result<OpenedUrl, OpenFailure> {
    let json: Option<Json> = serde_json::from_slice(body).ok();
    let error = json.as_ref().and_then(error_code);
    if status == 429 || error.as_deref() == Some("ratelimited") {
        return Err(rate_limited(status, parse_retry_after(retry_after)));
    }
    if let Some(code) = error {
        return Err(refused(status, &code));
    }
    if (300..400).contains(&status) {
        return Err(OpenFailure::transient(format!(
            "apps.connections.open answered HTTP {status} (a redirect; redirects are not followed)"
        )));
    }
    if !(200..300).contains(&status) {
        return Err(OpenFailure::transient(format!(
            "apps.connections.open answered HTTP {status}"
        )));
    }
    match json {
        Some(json) => opened_url(&json),
        None => Err(OpenFailure::transient(format!(
            "apps.connections.open answered HTTP {status} with an unreadable body"
        ))),
    }
}

fn rate_limited(status: u16, retry_after: Duration) -> OpenFailure {
    OpenFailure {
        class: FailureClass::RateLimited { retry_after },
        detail: format!(
            "apps.connections.open rate limited (HTTP {status}); retrying after {} s",
            retry_after.as_secs_f64()
        ),
    }
}

/// An `"ok": false` answer: terminal for the auth errors, transient otherwise.
fn refused(status: u16, code: &str) -> OpenFailure {
    if TERMINAL_OPEN_ERRORS.contains(&code) {
        let reason = format!("Slack refused the app token: {code}");
        return OpenFailure {
            class: FailureClass::Terminal {
                reason: reason.clone(),
            },
            detail: reason,
        };
    }
    OpenFailure::transient(format!(
        "apps.connections.open failed (HTTP {status}): {code}"
    ))
}

/// `Retry-After` as whole (or fractional) seconds, at most [`MAX_RETRY_AFTER`]; missing or
/// unreadable gives the default.
fn parse_retry_after(header: Option<&str>) -> Duration {
    header
        .map(str::trim)
        .and_then(|text| text.parse::<f64>().ok())
        .filter(|secs| secs.is_finite() && *secs >= 0.0)
        .map(|secs| {
            Duration::try_from_secs_f64(secs).map_or(MAX_RETRY_AFTER, |d| d.min(MAX_RETRY_AFTER))
        })
        .unwrap_or(DEFAULT_RETRY_AFTER)
}

/// The `error` of an `"ok": false` body, cut to printable ASCII so a detail stays short and safe.
fn error_code(json: &Json) -> Option<String> {
    if json.get("ok").and_then(Json::as_bool) != Some(false) {
        return None;
    }
    let code: String = match json.get("error").and_then(Json::as_str) {
        Some(code) => code
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
            .take(MAX_ERROR_CODE_CHARS)
            .collect(),
        None => String::new(),
    };
    Some(if code.is_empty() {
        "unknown_error".to_owned()
    } else {
        code
    })
}

/// The URL of an `"ok": true` body; it must be a `ws://` or `wss://` URL.
fn opened_url(json: &Json) -> Result<OpenedUrl, OpenFailure> {
    let ok = json.get("ok").and_then(Json::as_bool) == Some(true);
    let url = json.get("url").and_then(Json::as_str).filter(|_| ok);
    match url {
        Some(url) if is_websocket_url(url) => Ok(OpenedUrl {
            url: url.to_owned(),
        }),
        Some(_) => Err(OpenFailure::transient(
            "apps.connections.open returned a URL that is not ws:// or wss://".to_owned(),
        )),
        None => Err(OpenFailure::transient(
            "apps.connections.open answered without `ok: true` and a URL".to_owned(),
        )),
    }
}

fn is_websocket_url(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|parsed| matches!(parsed.scheme(), "ws" | "wss"))
}

/// The URL to connect to: `url` itself, or with `debug_reconnects=true` appended to its query
/// (`?…` or `&…`, before any fragment) when `debug_reconnects` is set and the URL does not carry
/// the parameter already. The rest of the URL is kept byte for byte.
pub fn connect_url(url: &str, debug_reconnects: bool) -> String {
    if !debug_reconnects {
        return url.to_owned();
    }
    let (base, fragment) = match url.find('#') {
        Some(at) => url.split_at(at),
        None => (url, ""),
    };
    let query = base.split_once('?').map(|(_, query)| query);
    if query.is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.starts_with("debug_reconnects="))
    }) {
        return url.to_owned();
    }
    let separator = match query {
        None => "?",
        Some("") => "",
        Some(q) if q.ends_with('&') => "",
        Some(_) => "&",
    };
    format!("{base}{separator}debug_reconnects=true{fragment}")
}

/// `url` with the value of every `ticket` query parameter replaced by `***`; everything else is
/// kept as is, so the host and `app_id` stay visible.
pub fn redact_ticket(url: &str) -> String {
    let Some((base, rest)) = url.split_once('?') else {
        return url.to_owned();
    };
    let (query, fragment) = match rest.find('#') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_ticket_key(key) => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}{fragment}", pairs.join("&"))
}

/// Whether a raw query key decodes to `ticket` (any case, percent-encoding included).
fn is_ticket_key(raw: &str) -> bool {
    url::form_urlencoded::parse(raw.as_bytes())
        .next()
        .is_some_and(|(key, _)| key.eq_ignore_ascii_case("ticket"))
}
