//! The one seam between the connection loop and the sans-IO protocol adapters: a [`Protocol`]
//! turns inbound data frames into [`Step`]s the loop carries out. The loop itself (pings, pong
//! deadline, idle watchdog, backpressure, ACKs after commit, bounded close) is the same for every
//! kind of source.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::reports::DownReason;
use crate::pipeline::expr::{Limits, Value};
use crate::sources::generic::{Action, Counter, GenericAdapter, GenericSession};
use crate::sources::slack::{
    HELLO_TIMEOUT, SlackAction, SlackAdapter, SlackCounter, SlackSession, no_hello_detail,
};
use crate::sources::status::Count;

/// Longest close reason shown (RFC 6455 allows 123 bytes; shown as sent, cut at this many
/// characters).
const MAX_CLOSE_REASON_CHARS: usize = 123;

/// What the loop does with an inbound message.
#[derive(Debug)]
pub enum Step {
    /// Run the message through the ingest pipeline; `ack` goes out once its event is committed
    /// (or found to be a duplicate, or filtered out).
    Ingest {
        /// The message as received.
        raw: serde_json::Value,
        /// `raw` as an expression value.
        value: Value,
        /// The event's meta (Slack: envelope type, retry attempt and reason).
        meta: serde_json::Value,
        /// The ACK frame to send after commit.
        ack: Option<String>,
        /// The evaluation limits for this message.
        limits: Limits,
    },
    /// A message or frame refused by the document limits (never stored): count it, log `reason`
    /// (which holds none of the content), and send `ack` (in order with the messages around it).
    Reject {
        /// The ACK frame, when one can be built.
        ack: Option<String>,
        /// Why.
        reason: String,
    },
    /// The connection is ready.
    Ready {
        /// Connections the peer counts for these credentials (Slack `hello`).
        num_connections: Option<u32>,
        /// Start a make-before-break replacement after this long (Slack proactive refresh).
        refresh_after: Option<Duration>,
    },
    /// The peer asked for a routine replacement of this connection (make-before-break; not a
    /// failure).
    Refresh {
        /// What the peer said.
        reason: String,
    },
    /// The connection is over.
    Down(DownReason),
    /// Something to count.
    Count(Count),
}

/// One connection's protocol state: the compiled adapter of the source revision plus a fresh
/// session.
pub enum Protocol {
    /// A generic WebSocket feed.
    Generic {
        /// The compiled revision.
        adapter: Arc<GenericAdapter>,
        /// This connection's state.
        session: GenericSession,
    },
    /// A Slack Socket Mode connection.
    Slack {
        /// The compiled revision.
        adapter: Arc<SlackAdapter>,
        /// This connection's state.
        session: SlackSession,
    },
}

impl Protocol {
    /// A generic connection's protocol.
    pub fn generic(adapter: Arc<GenericAdapter>) -> Protocol {
        let session = adapter.session();
        Protocol::Generic { adapter, session }
    }

    /// A Slack connection's protocol.
    pub fn slack(adapter: Arc<SlackAdapter>) -> Protocol {
        let session = adapter.session();
        Protocol::Slack { adapter, session }
    }

    /// Frames to send right after the upgrade.
    pub fn on_connect_messages(&self) -> Vec<String> {
        match self {
            Protocol::Generic { adapter, .. } => adapter.on_connect_messages().to_vec(),
            Protocol::Slack { .. } => Vec::new(),
        }
    }

    /// An application-level keepalive: every, and the text to send.
    pub fn app_ping(&self) -> Option<(Duration, String)> {
        match self {
            Protocol::Generic { adapter, .. } => adapter
                .app_ping()
                .map(|(every, text)| (every, text.to_owned())),
            Protocol::Slack { .. } => None,
        }
    }

    /// Whether the connection is ready.
    pub fn is_ready(&self) -> bool {
        match self {
            Protocol::Generic { session, .. } => session.is_ready(),
            Protocol::Slack { session, .. } => session.is_ready(),
        }
    }

    /// How long the connection may take to become ready.
    pub fn ready_timeout(&self) -> Duration {
        match self {
            Protocol::Generic { adapter, .. } => adapter.ready_timeout(),
            Protocol::Slack { .. } => HELLO_TIMEOUT,
        }
    }

    /// The detail when the connection did not become ready in time.
    pub fn ready_timeout_detail(&self) -> String {
        match self {
            Protocol::Generic { .. } => "no ready frame within ready_timeout_s".to_owned(),
            Protocol::Slack { .. } => no_hello_detail(),
        }
    }

    /// When a ready connection is replaced (make-before-break) however healthy it is.
    pub fn max_connection_age(&self) -> Option<Duration> {
        match self {
            Protocol::Generic { adapter, .. } => adapter.max_connection_age(),
            Protocol::Slack { .. } => None,
        }
    }

    /// How the peer's close with `code` and `reason` ends the connection: terminal when the code
    /// is one of `terminal_close_codes` or (generic) `fail_expr` matches the close; transient
    /// otherwise. The detail names the code and the reason.
    pub fn on_close(&self, code: u16, reason: &str, terminal_codes: &[u16]) -> DownReason {
        let shown = if reason.is_empty() {
            format!("closed by the peer with code {code}")
        } else {
            let reason: String = reason.chars().take(MAX_CLOSE_REASON_CHARS).collect();
            format!("closed by the peer with code {code}: {reason}")
        };
        if terminal_codes.contains(&code) {
            return DownReason::Terminal(shown);
        }
        if let Protocol::Generic { adapter, .. } = self
            && let Some(fail) = adapter.close_fails(code, reason)
        {
            return DownReason::Terminal(format!("{shown} ({fail})"));
        }
        DownReason::Transient(shown)
    }

    /// One complete inbound data message (continuations already reassembled). Every message of
    /// the frame is evaluated within the limits of an input of the frame's size.
    pub fn on_data(&mut self, text: bool, bytes: &[u8]) -> Vec<Step> {
        let limits = Limits::for_input(bytes.len());
        match self {
            Protocol::Generic { adapter, session } => {
                let actions = if text {
                    match std::str::from_utf8(bytes) {
                        Ok(s) => session.on_text(adapter, s),
                        Err(_) => vec![Action::Count(Counter::NonJson)],
                    }
                } else {
                    session.on_binary(adapter, bytes)
                };
                let mut steps = Vec::with_capacity(actions.len());
                for action in actions {
                    generic_steps(adapter, action, limits, &mut steps);
                }
                steps
            }
            Protocol::Slack { adapter, session } => {
                if !text {
                    return vec![Step::Count(Count::Binary)];
                }
                match std::str::from_utf8(bytes) {
                    Ok(s) => session
                        .on_text(s)
                        .into_iter()
                        .map(|action| slack_step(adapter, action, limits))
                        .collect(),
                    Err(_) => vec![Step::Count(Count::NonJson)],
                }
            }
        }
    }
}

fn generic_steps(adapter: &GenericAdapter, action: Action, limits: Limits, out: &mut Vec<Step>) {
    let step = match action {
        Action::Message { raw, value } => {
            let ack = ack_frame(adapter, &value, limits, out);
            Step::Ingest {
                raw,
                value,
                meta: json!({}),
                ack,
                limits,
            }
        }
        Action::Rejected { message, reason } => Step::Reject {
            ack: message.and_then(|value| ack_frame(adapter, &value, limits, out)),
            reason,
        },
        Action::Ready => Step::Ready {
            num_connections: None,
            refresh_after: None,
        },
        Action::Fail { reason } => Step::Down(DownReason::Terminal(reason)),
        Action::Count(counter) => Step::Count(match counter {
            Counter::NonJson => Count::NonJson,
            Counter::Binary => Count::Binary,
            Counter::Handshake => Count::Handshake,
            Counter::ExpressionError => Count::ExpressionErrors,
        }),
    };
    out.push(step);
}

/// The message's ACK frame, when `ack_expr` builds one (an evaluation error is counted).
fn ack_frame(
    adapter: &GenericAdapter,
    value: &Value,
    limits: Limits,
    out: &mut Vec<Step>,
) -> Option<String> {
    adapter.ack_frame(value, limits).unwrap_or_else(|err| {
        tracing::warn!(error = %err, "ack_expr failed; the message goes without an ACK");
        out.push(Step::Count(Count::ExpressionErrors));
        None
    })
}

fn slack_step(adapter: &SlackAdapter, action: SlackAction, limits: Limits) -> Step {
    match action {
        SlackAction::Ready {
            num_connections,
            approximate_connection_time,
            ..
        } => Step::Ready {
            num_connections,
            refresh_after: adapter.refresh_after(approximate_connection_time),
        },
        SlackAction::Envelope {
            raw,
            value,
            meta,
            ack,
            ..
        } => Step::Ingest {
            raw,
            value,
            meta,
            ack: Some(ack),
            limits,
        },
        SlackAction::Rejected { ack, reason } => Step::Reject {
            ack: Some(ack),
            reason,
        },
        SlackAction::Refresh { reason } => Step::Refresh { reason },
        SlackAction::Failed { class, detail } => Step::Down(DownReason::from_class(class, detail)),
        SlackAction::Count(counter) => Step::Count(match counter {
            SlackCounter::NonJson => Count::NonJson,
            SlackCounter::EarlyEnvelope => Count::Handshake,
            SlackCounter::NonObject
            | SlackCounter::Unknown
            | SlackCounter::InvalidEnvelopeId
            | SlackCounter::RepeatedHello => Count::Ignored,
        }),
    }
}
