//! The sans-IO adapter of `generic` WebSocket sources (DESIGN §5). Compiled once per source
//! revision, it says how to connect (URL, headers, subprotocols, messages to send after connecting)
//! and turns every inbound frame into [`Action`]s for the source actor, which does all the I/O and
//! keeps the clock (the time is passed in).

use std::fmt;
use std::time::Duration;

use super::config::{BinaryMode, Framing, GenericSettings, SourceSecrets};
use crate::pipeline::expr::{
    CompiledExpr, ExprError, Limits, RENDER_MAX_DEPTH, Value, to_json_within,
};

mod connect;
mod session;
#[cfg(test)]
mod tests;

use connect::HmacBearer;
pub use session::{Action, Counter, GenericSession};

/// Why a source revision cannot become an adapter. Messages name fields and secrets, never
/// secret values.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// An expression does not compile.
    #[error("{field}: {source}")]
    Expr {
        /// The settings field holding the expression (`config.ready_expr`, ...).
        field: &'static str,
        /// Why it was refused.
        #[source]
        source: ExprError,
    },
    /// A `{{secret:NAME}}` placeholder or `upgrade_auth` names a secret that does not exist.
    #[error("{field} refers to unknown secret `{name}`")]
    UnknownSecret {
        /// The settings field with the reference (`config.on_connect[0]`, ...).
        field: String,
        /// The secret's name.
        name: String,
    },
    /// The URL (from the secrets when they hold one) is not a WebSocket URL.
    #[error("config.url: {0}")]
    BadUrl(String),
    /// `upgrade_auth` cannot be used as configured.
    #[error("config.upgrade_auth: {0}")]
    BadUpgradeAuth(&'static str),
}

/// What the actor needs to open a connection.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// The full URL, credentials included: never log it, show [`ConnectRequest`]'s `Debug`.
    pub url: String,
    /// Upgrade request headers (values are secret), `Authorization` last when computed.
    pub headers: Vec<(String, String)>,
    /// Subprotocols to offer.
    pub subprotocols: Vec<String>,
}

impl fmt::Debug for ConnectRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectRequest")
            .field("url", &connect::shown_url(&self.url))
            .field("header_names", &header_names(&self.headers))
            .field("subprotocols", &self.subprotocols)
            .finish()
    }
}

/// A `generic` source revision, compiled: expressions parsed, secrets filled in, URL resolved.
/// Immutable, `Send + Sync`, cheap to share behind an `Arc`; one [`GenericSession`] per connection
/// holds what changes.
pub struct GenericAdapter {
    url: String,
    headers: Vec<(String, String)>,
    subprotocols: Vec<String>,
    upgrade_auth: Option<HmacBearer>,
    on_connect: Vec<String>,
    app_ping: Option<(Duration, String)>,
    ready: Option<CompiledExpr>,
    fail: Option<CompiledExpr>,
    ack: Option<CompiledExpr>,
    ready_timeout: Duration,
    framing: Framing,
    max_messages_per_frame: usize,
    binary: BinaryMode,
    max_connection_age: Option<Duration>,
}

const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<GenericAdapter>();
};

impl GenericAdapter {
    /// Compiles `ready_expr`, `fail_expr` and `ack_expr`, renders the `on_connect` and `app_ping`
    /// messages with their `{{secret:NAME}}` placeholders filled (inside JSON messages, as JSON
    /// string content, escaped), and resolves the URL (`secrets.url`, when set, replaces
    /// `settings.url`). With `upgrade_auth`, a configured `Authorization` header is dropped: the
    /// computed one replaces it. User info in the URL becomes `Authorization: Basic` unless an
    /// `Authorization` header or `upgrade_auth` is configured, and leaves the URL.
    pub fn new(
        settings: &GenericSettings,
        secrets: &SourceSecrets,
    ) -> Result<GenericAdapter, AdapterError> {
        let upgrade_auth = settings
            .upgrade_auth
            .as_ref()
            .map(|auth| HmacBearer::new(auth, &secrets.values))
            .transpose()?;
        let mut headers: Vec<(String, String)> = secrets
            .headers
            .iter()
            .filter(|(name, _)| {
                upgrade_auth.is_none() || !name.eq_ignore_ascii_case("authorization")
            })
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        let url = connect::resolve_url(&settings.url, secrets.url.as_deref())?;
        let (url, basic) = connect::take_user_info(&url);
        let has_authorization = upgrade_auth.is_some()
            || headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("authorization"));
        if let Some(basic) = basic.filter(|_| !has_authorization) {
            headers.push(("Authorization".to_owned(), basic));
        }
        Ok(GenericAdapter {
            url,
            headers,
            subprotocols: settings.subprotocols.clone(),
            upgrade_auth,
            on_connect: connect::on_connect_messages(&settings.on_connect, &secrets.values)?,
            app_ping: connect::app_ping(settings.app_ping.as_ref(), &secrets.values)?,
            ready: compile("config.ready_expr", settings.ready_expr.as_deref())?,
            fail: compile("config.fail_expr", settings.fail_expr.as_deref())?,
            ack: compile("config.ack_expr", settings.ack_expr.as_deref())?,
            ready_timeout: Duration::from_secs(settings.ready_timeout_s.into()),
            framing: settings.framing,
            max_messages_per_frame: usize::try_from(settings.max_messages_per_frame)
                .unwrap_or(usize::MAX),
            binary: settings.binary,
            max_connection_age: settings
                .max_connection_age_s
                .map(|s| Duration::from_secs(s.into())),
        })
    }

    /// The upgrade request for a connect attempt at `now_unix` (seconds since the epoch), which
    /// signs the `hmac_bearer` token when `upgrade_auth` is set.
    pub fn connect_request(&self, now_unix: u64) -> ConnectRequest {
        let mut headers = self.headers.clone();
        if let Some(auth) = &self.upgrade_auth {
            headers.push(("Authorization".to_owned(), auth.header_value(now_unix)));
        }
        ConnectRequest {
            url: self.url.clone(),
            headers,
            subprotocols: self.subprotocols.clone(),
        }
    }

    /// The text messages to send, in order, after every connect (secrets filled in).
    pub fn on_connect_messages(&self) -> &[String] {
        &self.on_connect
    }

    /// The application keep-alive: its interval (at least one second) and text.
    pub fn app_ping(&self) -> Option<(Duration, &str)> {
        self.app_ping
            .as_ref()
            .map(|(every, text)| (*every, text.as_str()))
    }

    /// Whether a connection is ready only after a frame matching `ready_expr`.
    pub fn needs_ready_frame(&self) -> bool {
        self.ready.is_some()
    }

    /// How long to wait for the ready frame after connecting.
    /// Age after which a ready connection is replaced (make-before-break), if configured.
    pub fn max_connection_age(&self) -> Option<Duration> {
        self.max_connection_age
    }

    pub fn ready_timeout(&self) -> Duration {
        self.ready_timeout
    }

    /// Fresh state for a new connection (ready at once when there is no `ready_expr`).
    pub fn session(&self) -> GenericSession {
        GenericSession::new(self.ready.is_none())
    }

    /// The ACK frame for a committed `message`, built by `ack_expr` within `limits`: none without
    /// `ack_expr` or when it gives null; a string is sent as is, any other value as its JSON text.
    /// `Err` holds the evaluation error's message.
    pub fn ack_frame(&self, message: &Value, limits: Limits) -> Result<Option<String>, String> {
        let Some(ack) = &self.ack else {
            return Ok(None);
        };
        let result = ack
            .search_within(message, limits)
            .map_err(|err| err.to_string())?;
        let rendered = to_json_within(&result, limits.result_bytes, RENDER_MAX_DEPTH)
            .map_err(|exceeded| exceeded.message())?;
        Ok(match rendered {
            serde_json::Value::Null => None,
            serde_json::Value::String(text) => Some(text),
            other => Some(other.to_string()),
        })
    }
}

impl GenericAdapter {
    /// Whether `fail_expr` matches the peer's close, which it sees as the message
    /// `{"close": {"code": <code>, "reason": "<reason>"}}`: the terminal reason when it does.
    pub fn close_fails(&self, code: u16, reason: &str) -> Option<String> {
        let fail = self.fail.as_ref()?;
        let message = serde_json::json!({"close": {"code": code, "reason": reason}});
        let matched = fail
            .search(&crate::pipeline::expr::to_value(&message))
            .is_ok_and(|v| crate::pipeline::expr::is_truthy(&v));
        matched.then(|| format!("fail_expr `{}` matched the close {code}", fail.as_str()))
    }
}

impl fmt::Debug for GenericAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenericAdapter")
            .field("url", &connect::shown_url(&self.url))
            .field("header_names", &header_names(&self.headers))
            .field("subprotocols", &self.subprotocols)
            .field("upgrade_auth", &self.upgrade_auth)
            .field("on_connect_messages", &self.on_connect.len())
            .field(
                "app_ping_every",
                &self.app_ping.as_ref().map(|(every, _)| every),
            )
            .field("ready_expr", &self.ready)
            .field("fail_expr", &self.fail)
            .field("ack_expr", &self.ack)
            .field("ready_timeout", &self.ready_timeout)
            .field("framing", &self.framing)
            .field("binary", &self.binary)
            .finish()
    }
}

fn compile(
    field: &'static str,
    source: Option<&str>,
) -> Result<Option<CompiledExpr>, AdapterError> {
    source
        .map(|source| {
            CompiledExpr::compile(source).map_err(|source| AdapterError::Expr { field, source })
        })
        .transpose()
}

fn header_names(headers: &[(String, String)]) -> Vec<&str> {
    headers.iter().map(|(name, _)| name.as_str()).collect()
}
