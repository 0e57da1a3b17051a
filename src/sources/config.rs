//! The kind-specific configuration of WebSocket sources, as stored (non-secret) and as accepted.
//! Secrets (`headers` values, named `secrets`, the Slack `app_token`, the TLS `client_key`) are
//! split off at the API edge and sealed; these structs never hold them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::kind::SourceKind;

/// How text frames are split into messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// One JSON document per frame.
    #[default]
    Message,
    /// Newline-delimited JSON documents per frame.
    Ndjson,
    /// A JSON array per frame, one message per element.
    JsonArray,
}

/// What happens to binary frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BinaryMode {
    /// Counted and dropped.
    #[default]
    Ignore,
    /// Turned into `{"binary": "<base64>"}` messages.
    Base64,
}

/// Authentication computed for every upgrade request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum UpgradeAuth {
    /// `Authorization: Bearer <key_id>.<unix_ts>.<hex HMAC-SHA256(secret, "<key_id>.<unix_ts>")>`.
    HmacBearer {
        /// The key id sent in clear.
        key_id: String,
        /// Name of the entry in `secrets` holding the HMAC secret.
        secret: String,
    },
}

/// An application-level keep-alive message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppPing {
    /// Seconds between messages.
    pub interval_s: u32,
    /// Text to send, or a JSON value sent as its text.
    #[schema(value_type = Object)]
    pub message: serde_json::Value,
}

/// Connection liveness settings shared by every kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Liveness {
    /// Seconds between WebSocket pings (default 20).
    pub ping_interval_s: u32,
    /// Seconds to wait for a pong (default 20).
    pub pong_timeout_s: u32,
    /// Seconds without any inbound frame before reconnecting (default 90).
    pub idle_timeout_s: u32,
    /// Milliseconds allowed for the close handshake (default 1000).
    pub close_timeout_ms: u32,
    /// Largest message after continuation reassembly (default 1 MiB).
    pub max_message_bytes: u32,
    /// Close codes from the peer that end the source as `failed` (no retries) instead of a
    /// transient failure: authentication and policy refusals (default 1008, 4401, 4403).
    pub terminal_close_codes: Vec<u16>,
}

impl Default for Liveness {
    fn default() -> Self {
        Self {
            ping_interval_s: 20,
            pong_timeout_s: 20,
            idle_timeout_s: 90,
            close_timeout_ms: 1000,
            max_message_bytes: 1024 * 1024,
            terminal_close_codes: vec![1008, 4401, 4403],
        }
    }
}

/// `config.tls` of a `generic` (`wss://`) source, on top of the process's trust settings. The
/// client certificate's key is given as `client_key` (PEM) next to these fields: it is a secret,
/// sealed and never returned; responses show `has_client_key` instead.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// Extra trusted roots for this source only (PEM), added to the process's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// The client certificate chain (PEM, leaf first) presented to the feed; needs `client_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<String>,
    /// The name presented (SNI) and verified instead of the URL's host, for feeds reached by
    /// address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

fn default_ready_timeout() -> u32 {
    10
}

/// Non-secret settings of a `generic` source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenericSettings {
    /// `wss://` URL (`ws://` only to hosts the network policy allows).
    pub url: String,
    /// Subprotocols offered on upgrade.
    #[serde(default)]
    pub subprotocols: Vec<String>,
    /// Messages sent after every connect, in order; `{{secret:NAME}}` is filled from `secrets`.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub on_connect: Vec<serde_json::Value>,
    /// The connection counts as ready only after a frame matching this expression.
    #[serde(default)]
    pub ready_expr: Option<String>,
    /// Seconds to wait for the ready frame (default 10).
    #[serde(default = "default_ready_timeout")]
    pub ready_timeout_s: u32,
    /// A frame matching this expression is a terminal failure (no retries).
    #[serde(default)]
    pub fail_expr: Option<String>,
    /// How frames split into messages.
    #[serde(default)]
    pub framing: Framing,
    /// Most messages one frame may split into (`ndjson`, `json_array`; 1..=100000, default 1000):
    /// a frame holding more is rejected whole (counted, never stored), so one frame can never
    /// queue an unbounded backlog.
    #[serde(default = "default_max_messages_per_frame")]
    pub max_messages_per_frame: u32,
    /// Builds the ACK frame from a message, sent after the event is committed.
    #[serde(default)]
    pub ack_expr: Option<String>,
    /// Authentication computed for every upgrade.
    #[serde(default)]
    pub upgrade_auth: Option<UpgradeAuth>,
    /// Application-level keep-alive.
    #[serde(default)]
    pub app_ping: Option<AppPing>,
    /// Liveness settings.
    #[serde(default)]
    pub liveness: Liveness,
    /// Rotate connections older than this (make-before-break), in seconds.
    #[serde(default)]
    pub max_connection_age_s: Option<u32>,
    /// What to do with binary frames.
    #[serde(default)]
    pub binary: BinaryMode,
    /// Pause instead of retrying after this many consecutive failures.
    #[serde(default)]
    pub pause_after_failures: Option<u32>,
    /// Extra roots, a client certificate and a server name for this source's TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSettings>,
}

fn default_max_messages_per_frame() -> u32 {
    1000
}

fn default_connections() -> u8 {
    2
}

/// Non-secret settings of a `slack` (Socket Mode) source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlackSettings {
    /// Connections kept open (1..=10, default 2).
    #[serde(default = "default_connections")]
    pub connections: u8,
    /// Ask Slack for short-lived connections (testing reconnects).
    #[serde(default)]
    pub debug_reconnects: bool,
    /// Refresh connections before Slack's announced connection time runs out.
    #[serde(default)]
    pub proactive_refresh: bool,
    /// Liveness settings.
    #[serde(default)]
    pub liveness: Liveness,
    /// Pause instead of retrying after this many consecutive failures.
    #[serde(default)]
    pub pause_after_failures: Option<u32>,
}

/// Every secret of a source, sealed together as one blob.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSecrets {
    /// Upgrade request headers (generic).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Named secrets for `{{secret:NAME}}` placeholders and `upgrade_auth` (generic).
    #[serde(default)]
    pub values: BTreeMap<String, String>,
    /// The `xapp-` app-level token (slack).
    #[serde(default)]
    pub app_token: Option<String>,
    /// The full URL when it carries credentials (a password or a credential-looking query
    /// parameter); the stored settings then hold the redacted form.
    #[serde(default)]
    pub url: Option<String>,
    /// The private key of `config.tls.client_cert` (PEM, generic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
}

/// The settings of a source by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceSettings {
    /// A generic WebSocket feed.
    Generic(Box<GenericSettings>),
    /// Slack Socket Mode.
    Slack(SlackSettings),
}

impl SourceSettings {
    /// The kind these settings belong to.
    pub fn kind(&self) -> SourceKind {
        match self {
            Self::Generic(_) => SourceKind::Generic,
            Self::Slack(_) => SourceKind::Slack,
        }
    }

    /// The stored (non-secret) JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let value = match self {
            Self::Generic(s) => serde_json::to_value(s),
            Self::Slack(s) => serde_json::to_value(s),
        };
        value.unwrap_or(serde_json::Value::Null)
    }

    /// The liveness settings.
    pub fn liveness(&self) -> &Liveness {
        match self {
            Self::Generic(s) => &s.liveness,
            Self::Slack(s) => &s.liveness,
        }
    }
}

/// Slack's defaults for the source expressions (DESIGN §5).
pub mod slack_defaults {
    /// Event key.
    pub const EVENT_KEY: &str = "payload.event.type || payload.command || payload.type";
    /// Payload.
    pub const PAYLOAD: &str = "payload.event || payload";
    /// Dedup key.
    pub const DEDUP_KEY: &str = "payload.event_id || envelope_id";
}

/// The `config` column: non-secret settings plus the names of the sealed secrets, so listings
/// never need to open the blob.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredConfig {
    /// The kind's settings as JSON.
    pub settings: serde_json::Value,
    /// Names of the sealed upgrade headers.
    #[serde(default)]
    pub header_names: Vec<String>,
    /// Names of the sealed named secrets.
    #[serde(default)]
    pub secret_names: Vec<String>,
    /// Whether a Slack app token is sealed.
    #[serde(default)]
    pub has_app_token: bool,
    /// Whether the key of a TLS client certificate is sealed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub has_client_key: bool,
}

impl StoredConfig {
    /// Builds the column value from settings and the secrets they go with.
    pub fn new(settings: &SourceSettings, secrets: &SourceSecrets) -> Self {
        Self {
            settings: settings.to_json(),
            header_names: secrets.headers.keys().cloned().collect(),
            secret_names: secrets.values.keys().cloned().collect(),
            has_app_token: secrets.app_token.is_some(),
            has_client_key: secrets.client_key.is_some(),
        }
    }

    /// Reads the column value (an unreadable value reads as empty settings).
    pub fn from_json(value: &serde_json::Value) -> Self {
        serde_json::from_value(value.clone()).unwrap_or_default()
    }

    /// Parses the settings for the stored `kind` (see [`SourceKind::from_stored`]).
    pub fn parse_settings(&self, kind: &str) -> Result<SourceSettings, serde_json::Error> {
        match SourceKind::from_stored(kind) {
            SourceKind::Slack => {
                serde_json::from_value(self.settings.clone()).map(SourceSettings::Slack)
            }
            SourceKind::Generic => serde_json::from_value(self.settings.clone())
                .map(|g| SourceSettings::Generic(Box::new(g))),
        }
    }
}
