//! One Socket Mode connection's view of inbound text frames: `hello`, envelopes, `disconnect`,
//! and everything else counted. Envelopes are never dropped, whatever the connection's state.

use std::time::{Duration, Instant};

use serde_json::{Map, Value as Json, json};

use crate::pipeline::expr::{Value, to_value};
use crate::pipeline::json;
use crate::sources::failure::FailureClass;

/// How long after the upgrade Slack's `hello` may take before the attempt is abandoned.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Least wait after `too_many_websockets` (jitter comes on top, from the restart policy).
pub const TOO_MANY_WEBSOCKETS_DELAY: Duration = Duration::from_secs(30);

/// The status reason after `disconnect` `link_disabled`.
pub const LINK_DISABLED_REASON: &str = "Socket Mode disabled for the app";

/// Longest `disconnect` reason kept in [`SlackAction::Refresh`] (longer ones are cut).
const MAX_REASON_CHARS: usize = 64;

/// The failure detail when no `hello` came within [`HELLO_TIMEOUT`].
pub fn no_hello_detail() -> String {
    format!("Slack sent no hello within {} s", HELLO_TIMEOUT.as_secs())
}

/// What the actor does with an inbound frame.
#[derive(Debug, Clone, PartialEq)]
pub enum SlackAction {
    /// Slack's `hello`: the connection is ready. Every field is optional in the frame.
    Ready {
        /// Connections Slack counts for the app (see [`super::ghost_warning`]).
        num_connections: Option<u32>,
        /// How long Slack means to keep this connection (`debug_info.approximate_connection_time`).
        approximate_connection_time: Option<Duration>,
        /// The Slack host serving the connection (`debug_info.host`).
        host: Option<String>,
    },
    /// An envelope to store and, once committed (or found to be a duplicate), ACK with `ack`.
    Envelope {
        /// Its `envelope_id`.
        envelope_id: String,
        /// Its `type` (`events_api`, `slash_commands`, `interactive`, …; `unknown` when absent).
        envelope_type: String,
        /// The frame as received.
        raw: Json,
        /// `raw` as an expression value, for the source expressions.
        value: Value,
        /// The event's meta: `envelope_type`, `retry_attempt`, `retry_reason` and
        /// `accepts_response_payload` (null when absent).
        meta: Json,
        /// The ACK frame, exactly `{"envelope_id":"…"}`.
        ack: String,
    },
    /// An envelope refused by the limits every stored document is held to (nesting, U+0000; see
    /// `json`): counted, never stored, and ACKed (it can never be stored, so Slack should not
    /// redeliver it).
    Rejected {
        /// The ACK frame, exactly `{"envelope_id":"…"}`.
        ack: String,
        /// Why, without any of the envelope's content.
        reason: String,
    },
    /// `disconnect` with a routine reason (`warning`, `refresh_requested`, or one not known):
    /// open a replacement, wait for its `hello`, then close this connection, ACKing what still
    /// arrives on it meanwhile. Not a failure: the backoff does not grow.
    Refresh {
        /// The reason Slack gave (`unspecified` when none).
        reason: String,
    },
    /// `disconnect` that ends this connection as a failure: `link_disabled` (terminal) or
    /// `too_many_websockets` (throttled for at least 30 s).
    Failed {
        /// How the restart policy treats it.
        class: FailureClass,
        /// What happened, for the source status.
        detail: String,
    },
    /// Something to count, never fatal.
    Count(SlackCounter),
}

/// What [`SlackAction::Count`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlackCounter {
    /// A text frame that is not JSON.
    NonJson,
    /// JSON that is not an object.
    NonObject,
    /// An object without `envelope_id` that is neither `hello` nor `disconnect`.
    Unknown,
    /// An envelope before `hello` (still stored and ACKed: the envelope follows this count).
    EarlyEnvelope,
    /// An `envelope_id` that is not a non-empty string: it cannot be ACKed, so it is not stored.
    InvalidEnvelopeId,
    /// A `hello` after the first one on this connection (ignored).
    RepeatedHello,
}

/// Per-connection state: whether `hello` came and what it said. Create a fresh one for every
/// connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlackSession {
    ready: bool,
    num_connections: Option<u32>,
}

impl SlackSession {
    /// A session for a connection just upgraded (not ready until `hello`).
    pub fn new() -> SlackSession {
        SlackSession::default()
    }

    /// Whether `hello` came.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// The `num_connections` of the `hello`, when it said.
    pub fn num_connections(&self) -> Option<u32> {
        self.num_connections
    }

    /// The failure to report when no `hello` came within [`HELLO_TIMEOUT`] of `connected_at`
    /// (transient: the attempt is abandoned and retried); `None` while there is time or once ready.
    pub fn hello_timeout(&self, connected_at: Instant, now: Instant) -> Option<SlackAction> {
        let overdue = now.saturating_duration_since(connected_at) >= HELLO_TIMEOUT;
        (!self.ready && overdue).then(|| SlackAction::Failed {
            class: FailureClass::Transient,
            detail: no_hello_detail(),
        })
    }

    /// One inbound text frame (already reassembled from continuations).
    pub fn on_text(&mut self, text: &str) -> Vec<SlackAction> {
        let object = match serde_json::from_str::<Json>(text) {
            Ok(Json::Object(object)) => object,
            Ok(_) => return vec![SlackAction::Count(SlackCounter::NonObject)],
            Err(_) => return vec![SlackAction::Count(SlackCounter::NonJson)],
        };
        if object.contains_key("envelope_id") {
            return self.on_envelope(object);
        }
        match object.get("type").and_then(Json::as_str) {
            Some("hello") => vec![self.on_hello(&object)],
            Some("disconnect") => vec![on_disconnect(&object)],
            _ => vec![SlackAction::Count(SlackCounter::Unknown)],
        }
    }

    fn on_hello(&mut self, hello: &Map<String, Json>) -> SlackAction {
        if self.ready {
            return SlackAction::Count(SlackCounter::RepeatedHello);
        }
        let num_connections = hello
            .get("num_connections")
            .and_then(Json::as_u64)
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        let debug_info = hello.get("debug_info");
        let field = |name: &str| debug_info.and_then(|info| info.get(name));
        self.ready = true;
        self.num_connections = num_connections;
        SlackAction::Ready {
            num_connections,
            approximate_connection_time: field("approximate_connection_time")
                .and_then(Json::as_f64)
                .and_then(|secs| Duration::try_from_secs_f64(secs).ok()),
            host: field("host").and_then(Json::as_str).map(str::to_owned),
        }
    }

    fn on_envelope(&mut self, object: Map<String, Json>) -> Vec<SlackAction> {
        let envelope_id = match object.get("envelope_id") {
            Some(Json::String(id)) if !id.is_empty() => id.clone(),
            _ => return vec![SlackAction::Count(SlackCounter::InvalidEnvelopeId)],
        };
        let raw = Json::Object(object);
        if let Err(refusal) = json::check(&raw) {
            return vec![SlackAction::Rejected {
                ack: json!({ "envelope_id": envelope_id }).to_string(),
                reason: format!("an envelope was refused: {refusal}"),
            }];
        }
        let mut actions = Vec::with_capacity(2);
        if !self.ready {
            actions.push(SlackAction::Count(SlackCounter::EarlyEnvelope));
        }
        let envelope_type = raw
            .get("type")
            .and_then(Json::as_str)
            .unwrap_or("unknown")
            .to_owned();
        let field = |name: &str| raw.get(name).cloned().unwrap_or(Json::Null);
        let meta = json!({
            "envelope_type": envelope_type,
            "retry_attempt": field("retry_attempt"),
            "retry_reason": field("retry_reason"),
            "accepts_response_payload": field("accepts_response_payload"),
        });
        let ack = json!({ "envelope_id": envelope_id }).to_string();
        actions.push(SlackAction::Envelope {
            envelope_id,
            envelope_type,
            value: to_value(&raw),
            raw,
            meta,
            ack,
        });
        actions
    }
}

/// `disconnect`: `link_disabled` and `too_many_websockets` fail the connection, every other
/// reason is a routine refresh.
fn on_disconnect(frame: &Map<String, Json>) -> SlackAction {
    match frame.get("reason").and_then(Json::as_str) {
        Some("link_disabled") => SlackAction::Failed {
            class: FailureClass::Terminal {
                reason: LINK_DISABLED_REASON.to_owned(),
            },
            detail: LINK_DISABLED_REASON.to_owned(),
        },
        Some("too_many_websockets") => SlackAction::Failed {
            class: FailureClass::Throttled {
                min_delay: TOO_MANY_WEBSOCKETS_DELAY,
            },
            detail: "Slack refused the connection: too_many_websockets".to_owned(),
        },
        Some(reason) if !reason.is_empty() => SlackAction::Refresh {
            reason: reason.chars().take(MAX_REASON_CHARS).collect(),
        },
        _ => SlackAction::Refresh {
            reason: "unspecified".to_owned(),
        },
    }
}
