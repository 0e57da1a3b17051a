//! The live stream's protocol without sockets: parsing and checking client messages (here),
//! putting fragmented ones back together (`reassembly`), the subscriptions of one connection and
//! which of them a published message matches (`subscriptions`), and the text of every frame the
//! server sends (`outbound`).

mod outbound;
mod reassembly;
mod subscriptions;

use serde::Deserialize;
use serde_json::{Map, Value, json};

pub use self::outbound::{
    data, lagged_frame, message_frame, pong_frame, route, subscribed_frame, unsubscribed_frame,
};
pub use self::reassembly::Reassembly;
pub use self::subscriptions::{Matching, Subscriptions};
use crate::pipeline::expr::{CompiledExpr, ExprErrorKind, is_truthy};
use crate::validation::is_valid_slug;

/// Largest client message answered (bigger ones get an error frame).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Subscriptions one connection may hold.
pub const MAX_SUBSCRIPTIONS: usize = 50;
/// Longest subscription id.
const MAX_ID_CHARS: usize = 100;

/// What a subscription can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// Every state change of a source, with its status object.
    SourceStatus,
    /// Every committed event and every duplicate.
    EventReceived,
    /// Every event matched against the automations, with the outcome per automation.
    EventDispatched,
    /// Every run created.
    RunCreated,
    /// Every run claimed by a worker.
    RunClaimed,
    /// Every run completed (SUCCEEDED).
    RunCompleted,
    /// Every run that failed for good.
    RunFailed,
    /// Every failed attempt going back to PENDING for another.
    RunRetrying,
    /// Every lease that expired.
    RunExpired,
    /// Every run a person cancelled.
    RunCancelled,
    /// Every FAILED or CANCELLED run a person put back to PENDING.
    RunRetried,
}

impl Topic {
    /// Every topic, in the order the documentation lists them.
    pub const ALL: [Topic; 11] = [
        Topic::SourceStatus,
        Topic::EventReceived,
        Topic::EventDispatched,
        Topic::RunCreated,
        Topic::RunClaimed,
        Topic::RunCompleted,
        Topic::RunFailed,
        Topic::RunRetrying,
        Topic::RunExpired,
        Topic::RunCancelled,
        Topic::RunRetried,
    ];

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::SourceStatus => "source.status",
            Topic::EventReceived => "event.received",
            Topic::EventDispatched => "event.dispatched",
            Topic::RunCreated => "run.created",
            Topic::RunClaimed => "run.claimed",
            Topic::RunCompleted => "run.completed",
            Topic::RunFailed => "run.failed",
            Topic::RunRetrying => "run.retrying",
            Topic::RunExpired => "run.expired",
            Topic::RunCancelled => "run.cancelled",
            Topic::RunRetried => "run.retried",
        }
    }

    /// Parses a name on the wire.
    pub fn parse(name: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// A client message that was understood.
#[derive(Debug)]
pub enum ClientMessage {
    /// Start a subscription.
    Subscribe(Subscription),
    /// End the subscription with this id.
    Unsubscribe {
        /// The subscription.
        id: String,
    },
    /// Answered with `{"type":"pong"}`.
    Ping,
}

/// One subscription of a connection.
#[derive(Debug)]
pub struct Subscription {
    /// The client's id for it, echoed in every message it matches.
    pub id: String,
    /// What it asks for.
    pub topics: Vec<Topic>,
    /// JMESPath over each message's `data`; only truthy results are sent.
    pub filter: Option<CompiledExpr>,
    /// Only messages of this source slug.
    pub source: Option<String>,
}

impl Subscription {
    /// Whether it asks for `topic` from the source `source`.
    pub fn wants(&self, topic: Topic, source: &str) -> bool {
        self.topics.contains(&topic) && self.source.as_deref().is_none_or(|s| s == source)
    }

    /// Whether the filter accepts `data` (no filter accepts everything; an evaluation error
    /// accepts nothing). `Err` when the filter exceeded its evaluation limits: the subscription
    /// cannot work and is ended with an error frame naming the limit.
    pub fn accepts(&self, data: &crate::pipeline::expr::Value) -> Result<bool, String> {
        let Some(filter) = &self.filter else {
            return Ok(true);
        };
        match filter.search(data) {
            Ok(value) => Ok(is_truthy(&value)),
            Err(err) if err.kind == ExprErrorKind::LimitExceeded => Err(format!(
                "filter: {}: {err}; the subscription is ended",
                err.kind
            )),
            Err(_) => Ok(false),
        }
    }
}

/// A client message that was refused; the connection stays open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What was wrong, for the client.
    pub detail: String,
    /// The id the message carried, when it had one.
    pub id: Option<String>,
}

impl Refusal {
    /// A refusal of the message with `id`.
    pub fn new(detail: impl Into<String>, id: Option<&str>) -> Refusal {
        Refusal {
            detail: detail.into(),
            id: id.map(str::to_owned),
        }
    }

    /// `{"type":"error","detail":…,"id":…}`.
    pub fn frame(&self) -> String {
        let mut frame = json!({"type": "error", "detail": self.detail});
        if let Some(id) = &self.id {
            frame["id"] = json!(id);
        }
        frame.to_string()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeIn {
    id: String,
    topics: Vec<String>,
    #[serde(default)]
    filter: Option<String>,
    #[serde(default)]
    source: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnsubscribeIn {
    id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PingIn {}

/// Parses and checks one client text message.
pub fn parse(text: &str) -> Result<ClientMessage, Refusal> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(Refusal::new(
            format!("message is larger than {MAX_MESSAGE_BYTES} bytes"),
            None,
        ));
    }
    let value: Value =
        serde_json::from_str(text).map_err(|e| Refusal::new(format!("invalid JSON: {e}"), None))?;
    let Value::Object(mut map) = value else {
        return Err(Refusal::new("a message must be a JSON object", None));
    };
    let id = map.get("id").and_then(Value::as_str).map(str::to_owned);
    let refuse = |detail: String| Refusal::new(detail, id.as_deref());
    let kind = match map.remove("type") {
        Some(Value::String(kind)) => kind,
        Some(_) => return Err(refuse("`type` must be a string".to_owned())),
        None => return Err(refuse("missing `type`".to_owned())),
    };
    match kind.as_str() {
        "subscribe" => {
            let input: SubscribeIn = shape(map, "subscribe").map_err(refuse)?;
            subscription(input).map(ClientMessage::Subscribe)
        }
        "unsubscribe" => {
            let input: UnsubscribeIn = shape(map, "unsubscribe").map_err(refuse)?;
            Ok(ClientMessage::Unsubscribe { id: input.id })
        }
        "ping" => {
            let _: PingIn = shape(map, "ping").map_err(refuse)?;
            Ok(ClientMessage::Ping)
        }
        other => Err(refuse(format!(
            "unknown type `{other}`; expected subscribe, unsubscribe or ping"
        ))),
    }
}

fn shape<T: serde::de::DeserializeOwned>(map: Map<String, Value>, kind: &str) -> Result<T, String> {
    serde_json::from_value(Value::Object(map)).map_err(|e| format!("{kind}: {e}"))
}

fn subscription(input: SubscribeIn) -> Result<Subscription, Refusal> {
    let refuse = |detail: String| Refusal::new(detail, Some(&input.id));
    let chars = input.id.chars().count();
    if chars == 0 || chars > MAX_ID_CHARS {
        return Err(refuse(format!("id: must be 1-{MAX_ID_CHARS} characters")));
    }
    if input.topics.is_empty() {
        return Err(refuse("topics: must name at least one topic".to_owned()));
    }
    let mut topics = Vec::new();
    for name in &input.topics {
        let topic = Topic::parse(name).ok_or_else(|| {
            let known: Vec<&str> = Topic::ALL.iter().map(|t| t.as_str()).collect();
            refuse(format!(
                "topics: unknown topic `{name}`; expected one of {}",
                known.join(", ")
            ))
        })?;
        if !topics.contains(&topic) {
            topics.push(topic);
        }
    }
    let filter = match input.filter.as_deref() {
        Some(source) => Some(
            CompiledExpr::compile(source)
                .map_err(|e| refuse(format!("filter: {}: {e}", e.kind)))?,
        ),
        None => None,
    };
    if let Some(slug) = &input.source
        && !is_valid_slug(slug)
    {
        return Err(refuse(
            "source: must be a source slug (lowercase letters, digits and '-')".to_owned(),
        ));
    }
    Ok(Subscription {
        id: input.id.clone(),
        topics,
        filter,
        source: input.source,
    })
}

#[cfg(test)]
mod tests;
