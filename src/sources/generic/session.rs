//! One connection's view of inbound frames: framing, the ready and fail conditions, binary
//! frames. Each message is converted to the expression [`Value`] once and that value is reused
//! for every expression and handed on in [`Action::Message`].

use std::ops::ControlFlow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value as Json;

use super::GenericAdapter;
use crate::pipeline::expr::{CompiledExpr, Limits, Value, is_truthy, to_value};
use crate::pipeline::json;
use crate::sources::config::{BinaryMode, Framing};

/// Longest expression text quoted in a failure reason.
const REASON_EXPR_CHARS: usize = 120;

/// What the actor does with an inbound frame, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A message to ingest: its raw JSON, and the same converted once to the expression value
    /// (for the pipeline and for [`GenericAdapter::ack_frame`]).
    Message {
        /// The message as received.
        raw: Json,
        /// `raw` as an expression value.
        value: Value,
    },
    /// A message (or a whole frame) refused: nested too deeply or holding U+0000 (see
    /// [`json`]), or a frame splitting into more than `max_messages_per_frame` messages. Counted,
    /// never stored; a refused message is still ACKed when `ack_expr` can build its ACK, so the
    /// sender does not redeliver what can never be stored.
    Rejected {
        /// The refused message, for its ACK (none for a refused frame).
        message: Option<Value>,
        /// Why, without any of the message's content.
        reason: String,
    },
    /// The ready condition matched; that message was a handshake frame, not an event.
    Ready,
    /// `fail_expr` matched: a terminal failure. The rest of the frame was not processed.
    Fail {
        /// A short description naming the expression, never message content or secrets.
        reason: String,
    },
    /// Something to count, never fatal.
    Count(Counter),
}

/// What [`Action::Count`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    /// A text frame (or `ndjson` line) that is not JSON.
    NonJson,
    /// A binary frame dropped (`binary: "ignore"`).
    Binary,
    /// A message before ready that did not match `ready_expr` (not ingested).
    Handshake,
    /// `ready_expr` or `fail_expr` failed to evaluate; the message counts as not matching.
    ExpressionError,
}

/// Per-connection state: whether the ready condition has been met. Create one per connection
/// with [`GenericAdapter::session`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericSession {
    ready: bool,
}

impl GenericSession {
    pub(super) fn new(ready: bool) -> GenericSession {
        GenericSession { ready }
    }

    /// Whether the connection is ready (at once when there is no `ready_expr`).
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// One inbound text frame (already reassembled from continuations), split by the adapter's
    /// framing. Stops at the first [`Action::Fail`].
    pub fn on_text(&mut self, adapter: &GenericAdapter, text: &str) -> Vec<Action> {
        let mut actions = Vec::new();
        let max = adapter.max_messages_per_frame;
        let limits = Limits::for_input(text.len());
        match adapter.framing {
            Framing::Message => {
                let _ = self.on_document(adapter, text, limits, &mut actions);
            }
            Framing::Ndjson => {
                let lines = || text.split('\n').filter(|line| !line.trim().is_empty());
                if lines().count() > max {
                    return vec![too_many_messages(max)];
                }
                for line in lines() {
                    if self
                        .on_document(adapter, line, limits, &mut actions)
                        .is_break()
                    {
                        break;
                    }
                }
            }
            Framing::JsonArray => match serde_json::from_str(text) {
                Ok(Json::Array(items)) if items.len() > max => {
                    return vec![too_many_messages(max)];
                }
                Ok(Json::Array(items)) => {
                    for item in items {
                        if self
                            .on_message(adapter, item, limits, &mut actions)
                            .is_break()
                        {
                            break;
                        }
                    }
                }
                Ok(single) => {
                    let _ = self.on_message(adapter, single, limits, &mut actions);
                }
                Err(_) => actions.push(Action::Count(Counter::NonJson)),
            },
        }
        actions
    }

    /// One inbound binary frame: counted and dropped, or with `binary: "base64"` the message
    /// `{"binary": "<standard base64>"}`, gated like any other.
    pub fn on_binary(&mut self, adapter: &GenericAdapter, bytes: &[u8]) -> Vec<Action> {
        let mut actions = Vec::new();
        match adapter.binary {
            BinaryMode::Ignore => actions.push(Action::Count(Counter::Binary)),
            BinaryMode::Base64 => {
                let raw = serde_json::json!({ "binary": STANDARD.encode(bytes) });
                let limits = Limits::for_input(bytes.len() * 4 / 3);
                let _ = self.on_message(adapter, raw, limits, &mut actions);
            }
        }
        actions
    }

    fn on_document(
        &mut self,
        adapter: &GenericAdapter,
        text: &str,
        limits: Limits,
        actions: &mut Vec<Action>,
    ) -> ControlFlow<()> {
        match serde_json::from_str(text) {
            Ok(raw) => self.on_message(adapter, raw, limits, actions),
            Err(_) => {
                actions.push(Action::Count(Counter::NonJson));
                ControlFlow::Continue(())
            }
        }
    }

    /// The document limits first, then `fail_expr` (before and after ready), then the ready
    /// gate, then ingestion.
    fn on_message(
        &mut self,
        adapter: &GenericAdapter,
        raw: Json,
        limits: Limits,
        actions: &mut Vec<Action>,
    ) -> ControlFlow<()> {
        let refused = json::check(&raw).err();
        let value = to_value(&raw);
        if let Some(refusal) = refused {
            actions.push(Action::Rejected {
                message: Some(value),
                reason: format!("a message was refused: {refusal}"),
            });
            return ControlFlow::Continue(());
        }
        if let Some(fail) = &adapter.fail
            && matches(fail, &value, limits, actions)
        {
            actions.push(Action::Fail {
                reason: fail_reason(fail),
            });
            return ControlFlow::Break(());
        }
        if !self.ready {
            if let Some(ready) = &adapter.ready {
                if matches(ready, &value, limits, actions) {
                    self.ready = true;
                    actions.push(Action::Ready);
                } else {
                    actions.push(Action::Count(Counter::Handshake));
                }
                return ControlFlow::Continue(());
            }
            self.ready = true;
        }
        actions.push(Action::Message { raw, value });
        ControlFlow::Continue(())
    }
}

fn too_many_messages(max: usize) -> Action {
    Action::Rejected {
        message: None,
        reason: format!(
            "a frame was refused: it holds more than {max} messages (config.max_messages_per_frame)"
        ),
    }
}

/// Whether `expr` is truthy over `value`; an evaluation error is counted and does not match.
fn matches(expr: &CompiledExpr, value: &Value, limits: Limits, actions: &mut Vec<Action>) -> bool {
    match expr.search_within(value, limits) {
        Ok(result) => is_truthy(&result),
        Err(_) => {
            actions.push(Action::Count(Counter::ExpressionError));
            false
        }
    }
}

fn fail_reason(fail: &CompiledExpr) -> String {
    let source = fail.as_str();
    match source.char_indices().nth(REASON_EXPR_CHARS) {
        Some((cut, _)) => format!("fail_expr `{}…` matched", &source[..cut]),
        None => format!("fail_expr `{source}` matched"),
    }
}
