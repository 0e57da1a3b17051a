//! A scriptable Slack Socket Mode peer on 127.0.0.1 for the integration tests: it plays both the
//! Web API (`POST /api/apps.connections.open`, a hand-written HTTP/1.1 server) and the Socket Mode
//! WebSocket endpoint (`/link/?ticket=…`), each on its own random port.
//!
//! Like [`crate::peer`], the peer runs on its own thread with its own current-thread tokio
//! runtime, independent of the actix `System` of the test that uses it. Dropping the last
//! [`SlackPeer`] handle stops the runtime (closing every socket) and joins the thread.
//!
//! **Web API.** Every call is recorded ([`SlackPeer::open_calls`]). A call without
//! `Authorization: Bearer <token>` (the token given in [`SlackPeerConfig::new`]) gets
//! `200 {"ok":false,"error":"invalid_auth"}`. Otherwise the answer is the next queued
//! [`OpenAnswer`] ([`SlackPeer::push_open_answer`]), else the sticky one
//! ([`SlackPeer::set_sticky_open_answer`]), else [`OpenAnswer::Url`]: a fresh single-use ticket
//! URL `ws://127.0.0.1:{ws_port}/link/?ticket=…&app_id=A1`.
//!
//! **WebSocket.** An upgrade with an unknown ticket is refused with 401, with an already used one
//! with 403, on another path with 404. An upgrade over [`SlackPeerConfig::max_connections`] is
//! accepted, sent `{"type":"disconnect","reason":"too_many_websockets"}` and closed. Every other
//! upgrade is a *connection* (ids 0, 1, 2, … in upgrade order); connection `i` follows
//! `scripts[min(i, len - 1)]` (default: [`SlackStep::Hello`] then [`SlackStep::KeepOpen`]).
//! While the script runs, the peer keeps reading (recording frames, answering pings unless
//! [`SlackStep::NoPongs`]) and carries out commands from the handle (envelope deliveries,
//! disconnects, closes).
//!
//! **Envelopes and ACKs.** A connection is *ready* once its hello is sent, until it starts
//! closing, is closed by the client, goes away or stalls (a socket that was sent a `disconnect`
//! stays ready until it closes: Slack keeps serving it meanwhile). [`SlackPeer::send_envelopes`]
//! queues envelopes; a dispatcher hands them round-robin to ready connections, preferring those
//! not sent a `disconnect`, and holds them while none is ready. Every inbound text frame that is
//! a JSON object with a string `envelope_id` and no other key than `payload` is an ACK. With
//! [`SlackPeerConfig::ack_deadline`], an envelope not ACKed in time is redelivered with a new
//! `envelope_id`, the same payload, `retry_attempt + 1` and `retry_reason: "timeout"`, up to
//! [`SlackPeerConfig::max_redeliveries`] times; an ACK for any of its ids settles the event.
//!
//! **Timing.** What the peer sends (hellos, envelopes, disconnects) is recorded just before the
//! write, so a client never sees a frame the records lack. What a client sends is recorded once
//! the peer has read it: poll with [`SlackPeer::wait_until`]. A close started by the peer waits up
//! to 1 s for the client's close frame (a client that stops reading delays the socket's end).

#![allow(dead_code)] // Not every test binary uses every helper.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::AbortHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{
    Callback, ErrorResponse, Request, Response,
};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::{Bytes, Message};

use crate::peer_support::{
    self, CLOSE_WAIT, ClientClose, Control, HANDSHAKE_TIMEOUT, ReceivedFrame, WritePolicy, WsSink,
    send, send_fragmented,
};

/// The `app_id` of the simulated app (in ticket URLs, hellos and envelopes).
pub const APP_ID: &str = "A1";
/// `debug_info.approximate_connection_time` of a hello unless configured (Slack's usual value).
pub const DEFAULT_APPROXIMATE_CONNECTION_TIME_S: u64 = 18_060;
/// Redeliveries of an unACKed envelope unless configured.
pub const DEFAULT_MAX_REDELIVERIES: u32 = 3;

/// Names the peer in panics.
const WHO: &str = "slack peer";
/// How long an HTTP client may take to send its request.
const HTTP_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest HTTP request head read.
const MAX_HTTP_HEAD: usize = 64 * 1024;
/// Largest HTTP request body read.
const MAX_HTTP_BODY: usize = 1024 * 1024;
/// How often the dispatcher looks for due redeliveries (it is also woken on every change).
const DISPATCH_TICK: Duration = Duration::from_millis(10);
/// Above this many buffered outgoing bytes, the pong filter applies backpressure.
const FILTER_BUFFER: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// Configuration and scripts
// ---------------------------------------------------------------------------------------------

/// How the peer answers one `apps.connections.open` call (with a valid token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenAnswer {
    /// `200 {"ok":true,"url":"ws://127.0.0.1:{ws_port}/link/?ticket=<fresh>&app_id=A1"}`.
    Url,
    /// `200 {"ok":true,"url":<this>}`, e.g. an already used URL from [`SlackPeer::issued_urls`].
    UrlWith(String),
    /// `200 {"ok":false,"error":<code>}`.
    Error(String),
    /// `429` with `Retry-After: <retry_after_s>` and `{"ok":false,"error":"ratelimited"}`.
    RateLimited { retry_after_s: u64 },
    /// This status (e.g. 500, 503) with a plain-text body.
    ServerError(u16),
    /// Exactly this status, extra headers and JSON body.
    Raw {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Wait, then answer as the inner answer says.
    Delay(Duration, Box<OpenAnswer>),
    /// Read the request and never answer (the connection stays open until the peer is dropped).
    Hang,
}

impl OpenAnswer {
    /// `OpenAnswer::Delay(delay, Box::new(answer))`.
    pub fn delayed(delay: Duration, answer: OpenAnswer) -> OpenAnswer {
        OpenAnswer::Delay(delay, Box::new(answer))
    }

    /// `OpenAnswer::Error(code.to_owned())`.
    pub fn error(code: &str) -> OpenAnswer {
        OpenAnswer::Error(code.to_owned())
    }
}

/// One step of a [`SlackScript`].
#[derive(Clone, Debug)]
pub enum SlackStep {
    /// Send `{"type":"hello","num_connections":<live sockets incl. this one>,"debug_info":{…},
    /// "connection_info":{"app_id":"A1"}}` (see [`hello_json`]); the connection becomes ready.
    Hello,
    /// Send this text as the hello; the connection becomes ready all the same.
    HelloRaw(String),
    /// Sleep (while still reading, answering pings and carrying out commands).
    Sleep(Duration),
    /// Send a text frame.
    Send(String),
    /// Send the text as exactly N frames (N clamped to at least 1), split by bytes.
    SendFragmented(String, usize),
    /// Send this envelope on this connection, tracked for ACKs and redelivery like
    /// [`SlackPeer::send_envelopes`] (an `envelope_id` is added when missing).
    Envelope(Value),
    /// Send `{"type":"disconnect","reason":<reason>,…}` and keep the socket open.
    Disconnect(String),
    /// Send a disconnect with this reason, wait (still serving), then close with 1000.
    DisconnectAndCloseAfter(String, Duration),
    /// Send a close frame with this code, wait up to 1 s for the client's, then drop the socket.
    /// Later steps are ignored.
    Close(u16),
    /// Drop the TCP connection abruptly, without a close frame. Later steps are ignored.
    Drop,
    /// Half-open: keep the TCP socket open but never read or write again (pings get no pong,
    /// commands are ignored) until the peer is dropped. The connection stops being ready;
    /// envelopes queued for it go back to the dispatcher. Later steps are ignored.
    Stall,
    /// From now on, never answer the client's pings (frames are still read and recorded).
    NoPongs,
    /// Send a ping with this payload (at most 125 bytes).
    Ping(Vec<u8>),
    /// End the script: keep reading until the client leaves (the default after the last step).
    KeepOpen,
}

/// What one connection does.
#[derive(Clone, Debug)]
pub struct SlackScript {
    /// The steps, in order.
    pub steps: Vec<SlackStep>,
}

impl SlackScript {
    /// Run these steps.
    pub fn new(steps: Vec<SlackStep>) -> SlackScript {
        SlackScript { steps }
    }

    /// [`SlackStep::Hello`], then these steps.
    pub fn hello_then(steps: Vec<SlackStep>) -> SlackScript {
        let mut all = vec![SlackStep::Hello];
        all.extend(steps);
        SlackScript { steps: all }
    }
}

impl Default for SlackScript {
    /// Hello, then keep the connection open.
    fn default() -> SlackScript {
        SlackScript::new(vec![SlackStep::Hello, SlackStep::KeepOpen])
    }
}

impl From<Vec<SlackStep>> for SlackScript {
    fn from(steps: Vec<SlackStep>) -> SlackScript {
        SlackScript::new(steps)
    }
}

/// Settings of a [`SlackPeer`]; build with [`SlackPeerConfig::new`] and the chained setters.
#[derive(Clone, Debug)]
pub struct SlackPeerConfig {
    /// The app token `apps.connections.open` expects as Bearer.
    pub token: String,
    /// Connection `i` follows `scripts[min(i, len - 1)]`; empty means [`SlackScript::default`].
    pub scripts: Vec<SlackScript>,
    /// Most live sockets; an upgrade beyond gets `too_many_websockets`.
    pub max_connections: Option<usize>,
    /// Redeliver envelopes not ACKed within this time (none: never redeliver).
    pub ack_deadline: Option<Duration>,
    /// Redeliveries per envelope at most.
    pub max_redeliveries: u32,
    /// `debug_info.approximate_connection_time` of hellos, in seconds.
    pub approximate_connection_time_s: u64,
}

impl SlackPeerConfig {
    /// Defaults: the default script, no connection limit, no redelivery, 3 redeliveries when a
    /// deadline is set, an approximate connection time of 18060 s.
    pub fn new(token: &str) -> SlackPeerConfig {
        SlackPeerConfig {
            token: token.to_owned(),
            scripts: Vec::new(),
            max_connections: None,
            ack_deadline: None,
            max_redeliveries: DEFAULT_MAX_REDELIVERIES,
            approximate_connection_time_s: DEFAULT_APPROXIMATE_CONNECTION_TIME_S,
        }
    }

    /// Set the per-connection scripts.
    pub fn scripts(mut self, scripts: Vec<SlackScript>) -> SlackPeerConfig {
        self.scripts = scripts;
        self
    }

    /// Set the most live sockets.
    pub fn max_connections(mut self, max: usize) -> SlackPeerConfig {
        self.max_connections = Some(max);
        self
    }

    /// Redeliver envelopes not ACKed within `deadline`.
    pub fn ack_deadline(mut self, deadline: Duration) -> SlackPeerConfig {
        self.ack_deadline = Some(deadline);
        self
    }

    /// Set the most redeliveries per envelope.
    pub fn max_redeliveries(mut self, max: u32) -> SlackPeerConfig {
        self.max_redeliveries = max;
        self
    }

    /// Set the `approximate_connection_time` (seconds) announced in hellos.
    pub fn approximate_connection_time_s(mut self, seconds: u64) -> SlackPeerConfig {
        self.approximate_connection_time_s = seconds;
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------

/// One call to the Web API.
#[derive(Clone, Debug)]
pub struct OpenCall {
    /// When its request was fully read.
    pub at: Instant,
    /// The request method (`POST`).
    pub method: String,
    /// Request target (path and query), e.g. `/api/apps.connections.open`.
    pub path: String,
    /// The `Authorization` header value, if any.
    pub authorization: Option<String>,
    /// The raw request body.
    pub body: String,
    /// What the peer chose to answer (before resolving delays and tickets).
    pub answer: OpenAnswer,
}

/// How the peer treated a WebSocket upgrade request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpgradeOutcome {
    /// Accepted as connection `conn`.
    Accepted(usize),
    /// Accepted, then sent `too_many_websockets` and closed.
    TooMany,
    /// Refused with 401: no ticket or one never issued.
    UnknownTicket,
    /// Refused with 403: a ticket already used.
    UsedTicket,
    /// Refused with 404: not `/link…`.
    NotFound,
}

/// One WebSocket upgrade request.
#[derive(Clone, Debug)]
pub struct UpgradeRecord {
    /// When the upgrade request was read.
    pub at: Instant,
    /// Request target (path and query).
    pub uri: String,
    /// The `ticket` query value, if any.
    pub ticket: Option<String>,
    /// How the peer treated it.
    pub outcome: UpgradeOutcome,
}

/// The life of one connection (an accepted, scripted upgrade).
#[derive(Clone, Debug)]
pub struct ConnectionRecord {
    /// Its id (0, 1, 2, … in upgrade order; picks its script).
    pub conn: usize,
    /// When its upgrade was accepted.
    pub opened_at: Instant,
    /// Request target of its upgrade (path and query).
    pub uri: String,
    /// When its hello was sent.
    pub hello_at: Option<Instant>,
    /// When `disconnect` frames were sent, with their reasons.
    pub disconnects: Vec<(Instant, String)>,
    /// When the socket went away (closed, dropped or client gone).
    pub closed_at: Option<Instant>,
}

/// One envelope written to a socket.
#[derive(Clone, Debug)]
pub struct SentEnvelope {
    /// The `envelope_id` it carried.
    pub envelope_id: String,
    /// The `envelope_id` of the first delivery of the same event.
    pub original_id: String,
    /// `payload.event_id`, when the envelope has one.
    pub event_id: Option<String>,
    /// Its `retry_attempt` (0 for a first delivery).
    pub retry_attempt: u64,
    /// The connection it was written to.
    pub conn: usize,
    /// When the frame was handed to the socket (just before the write).
    pub at: Instant,
}

/// One ACK frame received.
#[derive(Clone, Debug)]
pub struct AckRecord {
    /// The acknowledged `envelope_id`.
    pub envelope_id: String,
    /// The first `envelope_id` of the event it settles; `None` for an id the peer never sent.
    pub original_id: Option<String>,
    /// The connection it arrived on.
    pub conn: usize,
    /// When it was read.
    pub at: Instant,
    /// The ACK's `payload`, if any.
    pub payload: Option<Value>,
}

// ---------------------------------------------------------------------------------------------
// Shared state
// ---------------------------------------------------------------------------------------------

/// Commands to one connection's task.
enum Cmd {
    Text(String),
    Envelope(Outgoing),
    Disconnect {
        reason: String,
        close_after: Option<Duration>,
    },
    Close(u16),
}

/// An envelope waiting to be written.
struct Outgoing {
    delivery: usize,
    envelope_id: String,
    retry_attempt: u64,
    text: String,
}

/// One event, across its redeliveries.
struct Delivery {
    original_id: String,
    event_id: Option<String>,
    /// The latest envelope sent for it.
    envelope: Value,
    ids: Vec<String>,
    retry_attempt: u64,
    redeliveries: u32,
    /// In the outbox or a connection's queue, not written yet.
    queued: bool,
    last_sent: Option<Instant>,
    settled: Option<Instant>,
    gave_up: bool,
}

struct ConnInfo {
    tx: mpsc::UnboundedSender<Cmd>,
    opened_at: Instant,
    hello: bool,
    draining: bool,
    closing: bool,
    stalled: bool,
}

impl ConnInfo {
    fn ready(&self) -> bool {
        self.hello && !self.closing && !self.stalled
    }
}

struct State {
    open_calls: Vec<OpenCall>,
    open_queue: VecDeque<OpenAnswer>,
    sticky: Option<OpenAnswer>,
    /// Ticket → already used.
    tickets: HashMap<String, bool>,
    issued_urls: Vec<String>,

    upgrades: Vec<UpgradeRecord>,
    /// Upgrades admitted whose handshake has not finished (they count against the limit).
    reserved: usize,
    conns: BTreeMap<usize, ConnInfo>,
    records: Vec<ConnectionRecord>,
    max_live: usize,
    too_many: usize,
    timeline: Vec<(Instant, usize)>,
    received: Vec<ReceivedFrame>,
    closes: Vec<ClientClose>,
    pings_received: usize,
    pongs_received: usize,

    outbox: VecDeque<Outgoing>,
    deliveries: Vec<Delivery>,
    by_id: HashMap<String, usize>,
    sent: Vec<SentEnvelope>,
    acks: Vec<AckRecord>,
    round_robin: usize,
    background: Vec<AbortHandle>,
}

impl State {
    fn new(now: Instant) -> State {
        State {
            open_calls: Vec::new(),
            open_queue: VecDeque::new(),
            sticky: None,
            tickets: HashMap::new(),
            issued_urls: Vec::new(),
            upgrades: Vec::new(),
            reserved: 0,
            conns: BTreeMap::new(),
            records: Vec::new(),
            max_live: 0,
            too_many: 0,
            timeline: vec![(now, 0)],
            received: Vec::new(),
            closes: Vec::new(),
            pings_received: 0,
            pongs_received: 0,
            outbox: VecDeque::new(),
            deliveries: Vec::new(),
            by_id: HashMap::new(),
            sent: Vec::new(),
            acks: Vec::new(),
            round_robin: 0,
            background: Vec::new(),
        }
    }

    fn ready_count(&self) -> usize {
        self.conns.values().filter(|c| c.ready()).count()
    }

    /// Appends to the ready timeline when the ready count changed.
    fn note_ready(&mut self) {
        let n = self.ready_count();
        if self.timeline.last().map(|&(_, m)| m) != Some(n) {
            self.timeline.push((Instant::now(), n));
        }
    }

    /// Registers a new event (or a script's envelope) and returns what to write.
    fn register_delivery(&mut self, mut envelope: Value) -> Outgoing {
        let Some(object) = envelope.as_object_mut() else {
            panic!("slack peer: an envelope must be a JSON object: {envelope}");
        };
        let envelope_id = match object.get("envelope_id").and_then(Value::as_str) {
            Some(id) => id.to_owned(),
            None => {
                let id = new_envelope_id();
                object.insert("envelope_id".to_owned(), json!(id));
                id
            }
        };
        let retry_attempt = object
            .get("retry_attempt")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let event_id = envelope
            .pointer("/payload/event_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let delivery = self.deliveries.len();
        let text = envelope.to_string();
        self.deliveries.push(Delivery {
            original_id: envelope_id.clone(),
            event_id,
            envelope,
            ids: vec![envelope_id.clone()],
            retry_attempt,
            redeliveries: 0,
            queued: true,
            last_sent: None,
            settled: None,
            gave_up: false,
        });
        self.by_id.insert(envelope_id.clone(), delivery);
        Outgoing {
            delivery,
            envelope_id,
            retry_attempt,
            text,
        }
    }

    fn record_sent(&mut self, conn: usize, out: &Outgoing, at: Instant) {
        let delivery = &mut self.deliveries[out.delivery];
        delivery.queued = false;
        delivery.last_sent = Some(at);
        self.sent.push(SentEnvelope {
            envelope_id: out.envelope_id.clone(),
            original_id: delivery.original_id.clone(),
            event_id: delivery.event_id.clone(),
            retry_attempt: out.retry_attempt,
            conn,
            at,
        });
    }

    fn record_ack(
        &mut self,
        conn: usize,
        at: Instant,
        envelope_id: String,
        payload: Option<Value>,
    ) {
        let delivery = self.by_id.get(&envelope_id).copied();
        let original_id = delivery.map(|i| {
            let d = &mut self.deliveries[i];
            if d.settled.is_none() {
                d.settled = Some(at);
            }
            d.original_id.clone()
        });
        self.acks.push(AckRecord {
            envelope_id,
            original_id,
            conn,
            at,
            payload,
        });
    }

    /// Queues redeliveries of envelopes whose ACK deadline passed.
    fn redeliver_due(&mut self, deadline: Duration, max: u32, now: Instant) {
        for i in 0..self.deliveries.len() {
            let d = &mut self.deliveries[i];
            if d.settled.is_some() || d.queued || d.gave_up {
                continue;
            }
            let Some(last) = d.last_sent else { continue };
            if now.duration_since(last) < deadline {
                continue;
            }
            if d.redeliveries >= max {
                d.gave_up = true;
                continue;
            }
            d.redeliveries += 1;
            d.retry_attempt += 1;
            let envelope_id = new_envelope_id();
            if let Some(object) = d.envelope.as_object_mut() {
                object.insert("envelope_id".to_owned(), json!(envelope_id));
                object.insert("retry_attempt".to_owned(), json!(d.retry_attempt));
                object.insert("retry_reason".to_owned(), json!("timeout"));
            }
            d.ids.push(envelope_id.clone());
            d.queued = true;
            let out = Outgoing {
                delivery: i,
                envelope_id: envelope_id.clone(),
                retry_attempt: d.retry_attempt,
                text: d.envelope.to_string(),
            };
            self.by_id.insert(envelope_id, i);
            self.outbox.push_back(out);
        }
    }

    /// A ready connection for the next envelope, round-robin; those not sent a `disconnect`
    /// first.
    fn pick_connection(&mut self) -> Option<usize> {
        let fresh: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.ready() && !c.draining)
            .map(|(id, _)| *id)
            .collect();
        let candidates = if fresh.is_empty() {
            self.conns
                .iter()
                .filter(|(_, c)| c.ready())
                .map(|(id, _)| *id)
                .collect()
        } else {
            fresh
        };
        if candidates.is_empty() {
            return None;
        }
        let conn = candidates[self.round_robin % candidates.len()];
        self.round_robin = self.round_robin.wrapping_add(1);
        Some(conn)
    }

    /// Hands queued envelopes to ready connections.
    fn dispatch(&mut self) {
        while !self.outbox.is_empty() {
            let Some(conn) = self.pick_connection() else {
                return;
            };
            let Some(out) = self.outbox.pop_front() else {
                return;
            };
            let Some(info) = self.conns.get(&conn) else {
                self.outbox.push_front(out);
                return;
            };
            if let Err(mpsc::error::SendError(Cmd::Envelope(out))) =
                info.tx.send(Cmd::Envelope(out))
            {
                self.outbox.push_front(out);
                return;
            }
        }
    }
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the dispatcher.
    notify: Notify,
    config: SlackPeerConfig,
    ws_port: u16,
    api_port: u16,
    /// Replaces `ws://127.0.0.1:{ws_port}` in issued URLs (e.g. a TLS front's `wss://` address).
    socket_base: Mutex<Option<String>>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn script(&self, conn: usize) -> Vec<SlackStep> {
        let scripts = &self.config.scripts;
        if scripts.is_empty() {
            SlackScript::default().steps
        } else {
            scripts[conn.min(scripts.len() - 1)].steps.clone()
        }
    }

    /// Issues a fresh single-use ticket and returns its URL.
    fn issue_url(&self) -> String {
        let ticket = uuid::Uuid::new_v4().to_string();
        let base = self
            .socket_base
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| format!("ws://127.0.0.1:{}", self.ws_port));
        let url = format!("{base}/link/?ticket={ticket}&app_id={APP_ID}");
        let mut state = self.state();
        state.tickets.insert(ticket, false);
        state.issued_urls.push(url.clone());
        url
    }
}

// ---------------------------------------------------------------------------------------------
// The handle
// ---------------------------------------------------------------------------------------------

/// Handle to a running Slack peer. Clones share the server; dropping the last one shuts it down.
#[derive(Clone)]
pub struct SlackPeer {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    _control: Arc<Control>,
}

impl fmt::Debug for SlackPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackPeer")
            .field("api_port", &self.shared.api_port)
            .field("ws_port", &self.shared.ws_port)
            .finish_non_exhaustive()
    }
}

impl SlackPeer {
    /// Start a peer with these settings on two random ports of 127.0.0.1.
    pub fn start(config: SlackPeerConfig) -> SlackPeer {
        let (ws_listener, ws_port) = peer_support::bind_local(WHO);
        let (api_listener, api_port) = peer_support::bind_local(WHO);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(Instant::now())),
            notify: Notify::new(),
            config,
            ws_port,
            api_port,
            socket_base: Mutex::new(None),
        });
        let thread_shared = Arc::clone(&shared);
        let (control, handle) = peer_support::spawn_runtime_thread(
            WHO,
            format!("slack-peer-{ws_port}"),
            move || async move {
                let (ws, api) = match (
                    TcpListener::from_std(ws_listener),
                    TcpListener::from_std(api_listener),
                ) {
                    (Ok(ws), Ok(api)) => (ws, api),
                    (Err(e), _) | (_, Err(e)) => panic!("slack peer: listener: {e}"),
                };
                tokio::spawn(dispatcher(Arc::clone(&thread_shared)));
                tokio::select! {
                    () = ws_accept_loop(ws, Arc::clone(&thread_shared)) => {}
                    () = http_accept_loop(api, thread_shared) => {}
                }
            },
        );
        SlackPeer {
            shared,
            runtime: handle,
            _control: Arc::new(control),
        }
    }

    /// Start a peer expecting this app token, with every other setting at its default.
    pub fn with_token(token: &str) -> SlackPeer {
        SlackPeer::start(SlackPeerConfig::new(token))
    }

    /// The settings the peer was started with.
    pub fn config(&self) -> &SlackPeerConfig {
        &self.shared.config
    }

    // --- Web API ------------------------------------------------------------------------------

    /// `http://127.0.0.1:{api_port}/api`: the service's `slack_api_base`.
    pub fn api_base(&self) -> String {
        format!("http://127.0.0.1:{}/api", self.shared.api_port)
    }

    /// Port of the Web API listener.
    pub fn api_port(&self) -> u16 {
        self.shared.api_port
    }

    /// Port of the WebSocket listener.
    pub fn ws_port(&self) -> u16 {
        self.shared.ws_port
    }

    /// Answer the next call with a valid token this way (queued after earlier pushes).
    pub fn push_open_answer(&self, answer: OpenAnswer) {
        self.shared.state().open_queue.push_back(answer);
    }

    /// Queue several answers, in order.
    pub fn push_open_answers(&self, answers: Vec<OpenAnswer>) {
        self.shared.state().open_queue.extend(answers);
    }

    /// Answer every call this way once the queue is empty (instead of [`OpenAnswer::Url`]), e.g.
    /// `invalid_auth` from now on for a revoked token.
    pub fn set_sticky_open_answer(&self, answer: OpenAnswer) {
        self.shared.state().sticky = Some(answer);
    }

    /// Forget queued and sticky answers: issue ticket URLs again.
    pub fn reset_open_answers(&self) {
        let mut state = self.shared.state();
        state.open_queue.clear();
        state.sticky = None;
    }

    /// Every Web API call, in order (wrong paths and tokens included).
    pub fn open_calls(&self) -> Vec<OpenCall> {
        self.shared.state().open_calls.clone()
    }

    /// How many Web API calls were made (cheap, for polling).
    pub fn open_call_count(&self) -> usize {
        self.shared.state().open_calls.len()
    }

    /// Hand out socket URLs under `base` (e.g. `wss://localhost:{front}` of a TLS front that
    /// forwards to [`SlackPeer::ws_port`]) instead of `ws://127.0.0.1:{ws_port}`.
    pub fn set_socket_base(&self, base: &str) {
        *self
            .shared
            .socket_base
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(base.to_owned());
    }

    /// Issue a fresh single-use ticket URL without an API call.
    pub fn issue_url(&self) -> String {
        self.shared.issue_url()
    }

    /// Every ticket URL handed out, in order.
    pub fn issued_urls(&self) -> Vec<String> {
        self.shared.state().issued_urls.clone()
    }

    // --- WebSocket observability --------------------------------------------------------------

    /// Every upgrade request, in order, with how it was treated.
    pub fn upgrades(&self) -> Vec<UpgradeRecord> {
        self.shared.state().upgrades.clone()
    }

    /// Accepted upgrades: connections plus `too_many_websockets` refusals.
    pub fn attempts(&self) -> usize {
        self.shared
            .state()
            .upgrades
            .iter()
            .filter(|u| {
                matches!(
                    u.outcome,
                    UpgradeOutcome::Accepted(_) | UpgradeOutcome::TooMany
                )
            })
            .count()
    }

    /// Upgrades refused for an unknown or used ticket.
    pub fn ticket_refusals(&self) -> usize {
        self.shared
            .state()
            .upgrades
            .iter()
            .filter(|u| {
                matches!(
                    u.outcome,
                    UpgradeOutcome::UnknownTicket | UpgradeOutcome::UsedTicket
                )
            })
            .count()
    }

    /// Upgrades answered with `too_many_websockets`.
    pub fn too_many_refusals(&self) -> usize {
        self.shared.state().too_many
    }

    /// Every connection so far (index = connection id).
    pub fn connections(&self) -> Vec<ConnectionRecord> {
        self.shared.state().records.clone()
    }

    /// Connections currently open (stalled ones included).
    pub fn live_sockets(&self) -> usize {
        self.shared.state().conns.len()
    }

    /// Most connections open at once.
    pub fn max_live_sockets_seen(&self) -> usize {
        self.shared.state().max_live
    }

    /// Connections currently ready (hello sent; not closing, closed or stalled).
    pub fn ready_sockets(&self) -> usize {
        self.shared.state().ready_count()
    }

    /// Ids of the ready connections.
    pub fn ready_connections(&self) -> Vec<usize> {
        self.shared
            .state()
            .conns
            .iter()
            .filter(|(_, c)| c.ready())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Every change of the ready count, starting with `(start, 0)`.
    pub fn ready_timeline(&self) -> Vec<(Instant, usize)> {
        self.shared.state().timeline.clone()
    }

    /// Periods with no ready connection, after the first moment at or after `after` with one:
    /// `(start, length)`; a gap still going on is measured up to now.
    pub fn gaps_without_ready(&self, after: Instant) -> Vec<(Instant, Duration)> {
        gaps(&self.shared.state().timeline, after, Instant::now())
    }

    /// Every text and binary frame received from clients, in order (ACKs included).
    pub fn all_received_frames(&self) -> Vec<ReceivedFrame> {
        self.shared.state().received.clone()
    }

    /// Text frames received on connection `conn`, in order.
    pub fn texts_of(&self, conn: usize) -> Vec<String> {
        peer_support::texts(&self.shared.state().received, Some(conn))
    }

    /// Close frames received from clients.
    pub fn client_closes(&self) -> Vec<ClientClose> {
        self.shared.state().closes.clone()
    }

    /// Pings received from clients.
    pub fn pings_received(&self) -> usize {
        self.shared.state().pings_received
    }

    /// Pongs received from clients.
    pub fn pongs_received(&self) -> usize {
        self.shared.state().pongs_received
    }

    // --- Envelopes ------------------------------------------------------------------------------

    /// Queue envelopes for delivery round-robin over ready connections (held while none is);
    /// returns their `envelope_id`s (generated for envelopes without one).
    pub fn send_envelopes(&self, envelopes: Vec<Value>) -> Vec<String> {
        let ids = {
            let mut state = self.shared.state();
            envelopes
                .into_iter()
                .map(|envelope| {
                    let out = state.register_delivery(envelope);
                    let id = out.envelope_id.clone();
                    state.outbox.push_back(out);
                    id
                })
                .collect()
        };
        self.shared.notify.notify_one();
        ids
    }

    /// Queue envelopes in the background at `per_second` (envelope `i` at `i / per_second` from
    /// now); returns their `envelope_id`s (generated for envelopes without one).
    pub fn send_envelopes_paced(&self, envelopes: Vec<Value>, per_second: f64) -> Vec<String> {
        let envelopes: Vec<Value> = envelopes.into_iter().map(with_envelope_id).collect();
        let ids = envelopes
            .iter()
            .filter_map(|e| e["envelope_id"].as_str().map(str::to_owned))
            .collect();
        let period = Duration::from_secs_f64(1.0 / per_second.max(1e-3));
        let shared = Arc::clone(&self.shared);
        self.spawn_background(async move {
            let start = tokio::time::Instant::now();
            for (i, envelope) in envelopes.into_iter().enumerate() {
                tokio::time::sleep_until(start + period.mul_f64(i as f64)).await;
                {
                    let mut state = shared.state();
                    let out = state.register_delivery(envelope);
                    state.outbox.push_back(out);
                }
                shared.notify.notify_one();
            }
        });
        ids
    }

    /// Like [`SlackPeer::send_envelopes_paced`], but every envelope goes to connection `conn`,
    /// draining or not (what Slack does with the envelopes already routed to a socket it asked
    /// to refresh); envelopes for a connection that is gone are dropped, never redelivered here.
    pub fn send_envelopes_paced_to(
        &self,
        conn: usize,
        envelopes: Vec<Value>,
        per_second: f64,
    ) -> Vec<String> {
        let envelopes: Vec<Value> = envelopes.into_iter().map(with_envelope_id).collect();
        let ids = envelopes
            .iter()
            .filter_map(|e| e["envelope_id"].as_str().map(str::to_owned))
            .collect();
        let period = Duration::from_secs_f64(1.0 / per_second.max(1e-3));
        let shared = Arc::clone(&self.shared);
        self.spawn_background(async move {
            let start = tokio::time::Instant::now();
            for (i, envelope) in envelopes.into_iter().enumerate() {
                tokio::time::sleep_until(start + period.mul_f64(i as f64)).await;
                let mut state = shared.state();
                let out = state.register_delivery(envelope);
                if let Some(info) = state.conns.get(&conn) {
                    let _ = info.tx.send(Cmd::Envelope(out));
                }
            }
        });
        ids
    }

    /// Every envelope written to a socket (redeliveries included), in order.
    pub fn sent_envelopes(&self) -> Vec<SentEnvelope> {
        self.shared.state().sent.clone()
    }

    /// Envelopes waiting for a ready connection.
    pub fn queued_envelopes(&self) -> usize {
        self.shared.state().outbox.len()
    }

    /// Every ACK received, in order (duplicates and unknown ids included).
    pub fn acks(&self) -> Vec<AckRecord> {
        self.shared.state().acks.clone()
    }

    /// First `envelope_id`s of the events not ACKed yet (queued ones included).
    pub fn unacked(&self) -> Vec<String> {
        self.shared
            .state()
            .deliveries
            .iter()
            .filter(|d| d.settled.is_none())
            .map(|d| d.original_id.clone())
            .collect()
    }

    /// Whether the event first sent as `original_id` was ACKed (under any of its ids).
    pub fn is_settled(&self, original_id: &str) -> bool {
        let state = self.shared.state();
        state
            .by_id
            .get(original_id)
            .is_some_and(|&i| state.deliveries[i].settled.is_some())
    }

    /// For the first ACK of each envelope id the peer wrote: ACK instant minus write instant, in
    /// ACK order.
    pub fn ack_latencies(&self) -> Vec<Duration> {
        let state = self.shared.state();
        let mut first_sent: HashMap<&str, Instant> = HashMap::new();
        for sent in &state.sent {
            first_sent
                .entry(sent.envelope_id.as_str())
                .or_insert(sent.at);
        }
        let mut seen = std::collections::HashSet::new();
        state
            .acks
            .iter()
            .filter(|ack| seen.insert(ack.envelope_id.as_str()))
            .filter_map(|ack| {
                first_sent
                    .get(ack.envelope_id.as_str())
                    .map(|sent| ack.at.saturating_duration_since(*sent))
            })
            .collect()
    }

    /// Redelivered events: first `envelope_id` → the new ids, in order.
    pub fn redeliveries(&self) -> HashMap<String, Vec<String>> {
        self.shared
            .state()
            .deliveries
            .iter()
            .filter(|d| d.ids.len() > 1)
            .map(|d| (d.original_id.clone(), d.ids[1..].to_vec()))
            .collect()
    }

    /// First `envelope_id`s of events that used all their redeliveries without an ACK.
    pub fn given_up(&self) -> Vec<String> {
        self.shared
            .state()
            .deliveries
            .iter()
            .filter(|d| d.gave_up && d.settled.is_none())
            .map(|d| d.original_id.clone())
            .collect()
    }

    // --- Pushes to live connections -------------------------------------------------------------

    /// Send a raw text frame to every ready connection.
    pub fn broadcast(&self, text: &str) {
        let state = self.shared.state();
        for info in state.conns.values().filter(|c| c.ready()) {
            let _ = info.tx.send(Cmd::Text(text.to_owned()));
        }
    }

    /// Send a `disconnect` with this reason to every live (not stalled) connection; with
    /// `close_after`, close each (1000) that long after its frame was sent.
    pub fn disconnect_all_with(&self, reason: &str, close_after: Option<Duration>) {
        let mut state = self.shared.state();
        for info in state.conns.values_mut().filter(|c| !c.stalled) {
            info.draining = true;
            let _ = info.tx.send(Cmd::Disconnect {
                reason: reason.to_owned(),
                close_after,
            });
        }
    }

    /// Send a `disconnect` with this reason to connection `conn` (see
    /// [`SlackPeer::disconnect_all_with`]); false when it is not live.
    pub fn disconnect(&self, conn: usize, reason: &str, close_after: Option<Duration>) -> bool {
        let mut state = self.shared.state();
        match state.conns.get_mut(&conn) {
            Some(info) => {
                info.draining = true;
                info.tx
                    .send(Cmd::Disconnect {
                        reason: reason.to_owned(),
                        close_after,
                    })
                    .is_ok()
            }
            None => false,
        }
    }

    /// Close every live (not stalled) connection with this code.
    pub fn close_all(&self, code: u16) {
        let state = self.shared.state();
        for info in state.conns.values().filter(|c| !c.stalled) {
            let _ = info.tx.send(Cmd::Close(code));
        }
    }

    /// In the background, every `interval`: send `refresh_requested` to the oldest ready
    /// connection not already sent a `disconnect`, and close it `close_after` later.
    pub fn refresh_every(&self, interval: Duration, close_after: Duration) {
        let shared = Arc::clone(&self.shared);
        self.spawn_background(async move {
            loop {
                tokio::time::sleep(interval).await;
                let mut state = shared.state();
                let oldest = state
                    .conns
                    .iter_mut()
                    .filter(|(_, c)| c.ready() && !c.draining)
                    .min_by_key(|(id, c)| (c.opened_at, **id));
                if let Some((_, info)) = oldest {
                    info.draining = true;
                    let _ = info.tx.send(Cmd::Disconnect {
                        reason: "refresh_requested".to_owned(),
                        close_after: Some(close_after),
                    });
                }
            }
        });
    }

    /// Stop every background job ([`SlackPeer::send_envelopes_paced`],
    /// [`SlackPeer::refresh_every`]).
    pub fn stop_background(&self) {
        for job in self.shared.state().background.drain(..) {
            job.abort();
        }
    }

    fn spawn_background(&self, job: impl Future<Output = ()> + Send + 'static) {
        let handle = self.runtime.spawn(job);
        self.shared.state().background.push(handle.abort_handle());
    }

    /// Poll `cond` every 10 ms until it holds (true) or `timeout` passes (false, after a last
    /// check). Works under actix-rt (tokio time).
    pub async fn wait_until(&self, timeout: Duration, cond: impl Fn(&SlackPeer) -> bool) -> bool {
        peer_support::wait_until(self, timeout, cond).await
    }
}

fn gaps(timeline: &[(Instant, usize)], after: Instant, now: Instant) -> Vec<(Instant, Duration)> {
    let mut seen_ready = timeline
        .iter()
        .rev()
        .find(|(t, _)| *t <= after)
        .is_some_and(|&(_, n)| n > 0);
    let mut gap_start = None;
    let mut found = Vec::new();
    for &(t, n) in timeline.iter().filter(|(t, _)| *t > after) {
        if n == 0 {
            if seen_ready && gap_start.is_none() {
                gap_start = Some(t);
            }
        } else {
            seen_ready = true;
            if let Some(start) = gap_start.take() {
                found.push((start, t.duration_since(start)));
            }
        }
    }
    if let Some(start) = gap_start {
        found.push((start, now.saturating_duration_since(start)));
    }
    found
}

// ---------------------------------------------------------------------------------------------
// JSON helpers
// ---------------------------------------------------------------------------------------------

/// A fresh random `envelope_id` (UUID-shaped, like Slack's).
pub fn new_envelope_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The envelope with an `envelope_id` (generated when missing).
fn with_envelope_id(mut envelope: Value) -> Value {
    if let Some(object) = envelope.as_object_mut()
        && !object.get("envelope_id").is_some_and(Value::is_string)
    {
        object.insert("envelope_id".to_owned(), json!(new_envelope_id()));
    }
    envelope
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// A Slack message `ts` for now, e.g. `1700000000.000100`.
pub fn slack_ts() -> String {
    let now = unix_now();
    format!("{}.{:06}", now.as_secs(), now.subsec_micros())
}

/// The hello frame: `{"type":"hello","num_connections":…,"debug_info":{"host":"applink-test",
/// "approximate_connection_time":…},"connection_info":{"app_id":"A1"}}`.
pub fn hello_json(num_connections: usize, approximate_connection_time_s: u64) -> String {
    json!({
        "type": "hello",
        "num_connections": num_connections,
        "debug_info": {
            "host": "applink-test",
            "approximate_connection_time": approximate_connection_time_s,
        },
        "connection_info": {"app_id": APP_ID},
    })
    .to_string()
}

/// A disconnect frame: `{"type":"disconnect","reason":…,"debug_info":{"host":"applink-test"}}`.
pub fn disconnect_json(reason: &str) -> String {
    json!({"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-test"}})
        .to_string()
}

/// An `events_api` envelope carrying a `message` event in C1 by U1. `event_extra` (an object)
/// is merged into `payload.event` (e.g. `{"text": "hi"}`; default text `hello`);
/// `retry_reason` is `""` for attempt 0, else `"timeout"`.
pub fn events_api_envelope(
    envelope_id: &str,
    event_id: &str,
    retry_attempt: u64,
    event_extra: Value,
) -> Value {
    let now = unix_now();
    let mut event = json!({
        "type": "message",
        "text": "hello",
        "user": "U1",
        "channel": "C1",
        "channel_type": "channel",
        "ts": slack_ts(),
        "event_ts": slack_ts(),
    });
    if let (Some(event), Value::Object(extra)) = (event.as_object_mut(), event_extra) {
        event.extend(extra);
    }
    json!({
        "envelope_id": envelope_id,
        "type": "events_api",
        "accepts_response_payload": false,
        "retry_attempt": retry_attempt,
        "retry_reason": if retry_attempt == 0 { "" } else { "timeout" },
        "payload": {
            "token": "x",
            "team_id": "T1",
            "api_app_id": APP_ID,
            "type": "event_callback",
            "event_id": event_id,
            "event_time": now.as_secs(),
            "event": event,
            "authorizations": [{"team_id": "T1", "user_id": "U0", "is_bot": true}],
            "is_ext_shared_channel": false,
            "event_context": format!("4-{event_id}"),
        },
    })
}

/// A `slash_commands` envelope for `command` (e.g. `/deploy`) with this text, by U1 in C1.
pub fn slash_command_envelope(envelope_id: &str, command: &str, text: &str) -> Value {
    json!({
        "envelope_id": envelope_id,
        "type": "slash_commands",
        "accepts_response_payload": true,
        "payload": {
            "token": "x",
            "team_id": "T1",
            "team_domain": "test",
            "channel_id": "C1",
            "channel_name": "general",
            "user_id": "U1",
            "user_name": "tester",
            "command": command,
            "text": text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": "https://hooks.slack.com/commands/T1/1/x",
            "trigger_id": "1.1.x",
        },
    })
}

/// An `interactive` envelope: a `block_actions` payload with one button click `action_id`.
pub fn interactive_envelope(envelope_id: &str, action_id: &str) -> Value {
    json!({
        "envelope_id": envelope_id,
        "type": "interactive",
        "accepts_response_payload": false,
        "payload": {
            "type": "block_actions",
            "token": "x",
            "api_app_id": APP_ID,
            "team": {"id": "T1", "domain": "test"},
            "user": {"id": "U1", "username": "tester", "team_id": "T1"},
            "channel": {"id": "C1", "name": "general"},
            "trigger_id": "1.1.x",
            "response_url": "https://hooks.slack.com/actions/T1/1/x",
            "actions": [{
                "type": "button",
                "action_id": action_id,
                "block_id": "b1",
                "value": "v",
                "action_ts": slack_ts(),
            }],
        },
    })
}

/// An [`events_api_envelope`] whose text is padded with `x` so the serialized envelope is exactly
/// `size` bytes (or its minimum size, when `size` is smaller).
pub fn padded_envelope(envelope_id: &str, event_id: &str, size: usize) -> Value {
    let mut envelope = events_api_envelope(envelope_id, event_id, 0, json!({"text": ""}));
    let base = envelope.to_string().len();
    if size > base {
        envelope["payload"]["event"]["text"] = json!("x".repeat(size - base));
    }
    envelope
}

/// The `envelope_id` and `payload` of an ACK frame: a JSON object with a string `envelope_id` and
/// no other key than `payload`.
pub fn parse_ack(text: &str) -> Option<(String, Option<Value>)> {
    let Ok(Value::Object(object)) = serde_json::from_str::<Value>(text) else {
        return None;
    };
    let id = object.get("envelope_id")?.as_str()?.to_owned();
    if object.keys().any(|k| k != "envelope_id" && k != "payload") {
        return None;
    }
    Some((id, object.get("payload").cloned()))
}

// ---------------------------------------------------------------------------------------------
// The dispatcher
// ---------------------------------------------------------------------------------------------

async fn dispatcher(shared: Arc<Shared>) {
    loop {
        tokio::select! {
            () = shared.notify.notified() => {}
            () = tokio::time::sleep(DISPATCH_TICK) => {}
        }
        let mut state = shared.state();
        if let Some(deadline) = shared.config.ack_deadline {
            state.redeliver_due(deadline, shared.config.max_redeliveries, Instant::now());
        }
        state.dispatch();
    }
}

// ---------------------------------------------------------------------------------------------
// The Web API
// ---------------------------------------------------------------------------------------------

async fn http_accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    peer_support::accept_loop(listener, |stream| handle_http(stream, Arc::clone(&shared))).await;
}

struct HttpRequest {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn read_request(stream: &mut TcpStream) -> Option<HttpRequest> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HTTP_HEAD {
            return None;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let target = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut request = HttpRequest {
        method,
        target,
        headers,
        body: buf[head_end + 4..].to_vec(),
    };
    let chunked = request
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let length = request
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_HTTP_BODY);
    loop {
        // A chunked body is kept raw: only its end matters here.
        let complete = if chunked {
            request.body.ends_with(b"0\r\n\r\n")
        } else {
            request.body.len() >= length
        };
        if complete || request.body.len() > MAX_HTTP_BODY {
            break;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        request.body.extend_from_slice(&chunk[..n]);
    }
    if !chunked {
        request.body.truncate(length);
    }
    Some(request)
}

async fn handle_http(mut stream: TcpStream, shared: Arc<Shared>) {
    let Ok(Some(request)) =
        tokio::time::timeout(HTTP_READ_TIMEOUT, read_request(&mut stream)).await
    else {
        return;
    };
    let authorization = request.header("authorization").map(str::to_owned);
    let path = request.target.split('?').next().unwrap_or_default();
    let expected = format!("Bearer {}", shared.config.token);
    let answer = if !path.ends_with("/apps.connections.open") {
        OpenAnswer::Raw {
            status: 404,
            headers: Vec::new(),
            body: json!({"ok": false, "error": "unknown_method"}).to_string(),
        }
    } else if authorization.as_deref() != Some(expected.as_str()) {
        OpenAnswer::error("invalid_auth")
    } else {
        let mut state = shared.state();
        match state.open_queue.pop_front() {
            Some(answer) => answer,
            None => state.sticky.clone().unwrap_or(OpenAnswer::Url),
        }
    };
    shared.state().open_calls.push(OpenCall {
        at: Instant::now(),
        method: request.method.clone(),
        path: request.target.clone(),
        authorization,
        body: String::from_utf8_lossy(&request.body).into_owned(),
        answer: answer.clone(),
    });
    let mut answer = answer;
    let (status, headers, content_type, body) = loop {
        match answer {
            OpenAnswer::Delay(delay, inner) => {
                tokio::time::sleep(delay).await;
                answer = *inner;
            }
            OpenAnswer::Hang => std::future::pending::<()>().await,
            OpenAnswer::Url => {
                let url = shared.issue_url();
                break (200, Vec::new(), "application/json", ok_url(&url));
            }
            OpenAnswer::UrlWith(url) => break (200, Vec::new(), "application/json", ok_url(&url)),
            OpenAnswer::Error(code) => {
                let body = json!({"ok": false, "error": code}).to_string();
                break (200, Vec::new(), "application/json", body);
            }
            OpenAnswer::RateLimited { retry_after_s } => {
                let body = json!({"ok": false, "error": "ratelimited"}).to_string();
                let headers = vec![("Retry-After".to_owned(), retry_after_s.to_string())];
                break (429, headers, "application/json", body);
            }
            OpenAnswer::ServerError(status) => {
                let body = format!("test peer: server error {status}");
                break (status, Vec::new(), "text/plain", body);
            }
            OpenAnswer::Raw {
                status,
                headers,
                body,
            } => break (status, headers, "application/json", body),
        }
    };
    let response = http_response(status, &headers, content_type, &body);
    if stream.write_all(&response).await.is_ok() {
        let _ = stream.flush().await;
        let _ = stream.shutdown().await;
    }
}

fn ok_url(url: &str) -> String {
    json!({"ok": true, "url": url}).to_string()
}

fn http_response(
    status: u16,
    headers: &[(String, String)],
    content_type: &str,
    body: &str,
) -> Vec<u8> {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Status");
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut response = head.into_bytes();
    response.extend_from_slice(body.as_bytes());
    response
}

// ---------------------------------------------------------------------------------------------
// The WebSocket endpoint
// ---------------------------------------------------------------------------------------------

type PeerStream = peer_support::PeerStream<PongFilter>;
type Ws = WebSocketStream<PeerStream>;
type Sink = WsSink<PeerStream>;

/// What the upgrade callback decided for an accepted upgrade.
enum Admission {
    Scripted(usize),
    TooMany,
}

type Admitted = Mutex<Option<Admission>>;

async fn ws_accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    peer_support::accept_loop(listener, |stream| handle_ws(stream, Arc::clone(&shared))).await;
}

async fn handle_ws(stream: TcpStream, shared: Arc<Shared>) {
    let framed = Arc::new(AtomicBool::new(false));
    let drop_pongs = Arc::new(AtomicBool::new(false));
    let stream = PeerStream {
        inner: stream,
        write: PongFilter {
            framed: Arc::clone(&framed),
            drop_pongs: Arc::clone(&drop_pongs),
            filter: FrameFilter::default(),
            out: Vec::new(),
        },
    };
    let admitted: Arc<Admitted> = Arc::default();
    let callback = UpgradeCallback {
        shared: Arc::clone(&shared),
        admitted: Arc::clone(&admitted),
    };
    let handshake = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        tokio_tungstenite::accept_hdr_async(stream, callback),
    )
    .await;
    let admission = admitted
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    let ws = match handshake {
        Ok(Ok(ws)) => ws,
        _ => {
            if let Some(Admission::Scripted(conn)) = admission {
                let mut state = shared.state();
                state.reserved = state.reserved.saturating_sub(1);
                state.records[conn].closed_at = Some(Instant::now());
            }
            return;
        }
    };
    framed.store(true, Ordering::SeqCst);
    match admission {
        Some(Admission::Scripted(conn)) => serve(ws, conn, &shared, &drop_pongs).await,
        Some(Admission::TooMany) => too_many(ws).await,
        None => {}
    }
}

/// Validates the path and ticket and applies the connection limit.
struct UpgradeCallback {
    shared: Arc<Shared>,
    admitted: Arc<Admitted>,
}

impl Callback for UpgradeCallback {
    fn on_request(self, request: &Request, response: Response) -> Result<Response, ErrorResponse> {
        let UpgradeCallback { shared, admitted } = self;
        let at = Instant::now();
        let uri = request.uri().to_string();
        let ticket = request.uri().query().and_then(|query| {
            query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(name, _)| *name == "ticket")
                .map(|(_, value)| value.to_owned())
        });
        let mut state = shared.state();
        let refused = if !request.uri().path().starts_with("/link") {
            Some((UpgradeOutcome::NotFound, 404))
        } else {
            match ticket.as_ref().and_then(|t| state.tickets.get_mut(t)) {
                Some(used) if !*used => {
                    *used = true;
                    None
                }
                Some(_) => Some((UpgradeOutcome::UsedTicket, 403)),
                None => Some((UpgradeOutcome::UnknownTicket, 401)),
            }
        };
        if let Some((outcome, status)) = refused {
            state.upgrades.push(UpgradeRecord {
                at,
                uri,
                ticket,
                outcome,
            });
            return Err(refusal(status));
        }
        let live = state.conns.len() + state.reserved;
        let (outcome, admission) = if shared.config.max_connections.is_some_and(|m| live >= m) {
            state.too_many += 1;
            (UpgradeOutcome::TooMany, Admission::TooMany)
        } else {
            let conn = state.records.len();
            state.records.push(ConnectionRecord {
                conn,
                opened_at: at,
                uri: uri.clone(),
                hello_at: None,
                disconnects: Vec::new(),
                closed_at: None,
            });
            state.reserved += 1;
            (UpgradeOutcome::Accepted(conn), Admission::Scripted(conn))
        };
        state.upgrades.push(UpgradeRecord {
            at,
            uri,
            ticket,
            outcome,
        });
        *admitted.lock().unwrap_or_else(PoisonError::into_inner) = Some(admission);
        Ok(response)
    }
}

fn refusal(status: u16) -> ErrorResponse {
    peer_support::refusal("slack test peer", status, &[])
}

/// Slack's answer to one socket too many: a `disconnect` frame, then close.
async fn too_many(mut ws: Ws) {
    if ws
        .send(Message::text(disconnect_json("too_many_websockets")))
        .await
        .is_err()
    {
        return;
    }
    let _ = ws.close(None).await;
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// How a script or a command ended the connection.
enum End {
    /// Keep reading until the client leaves.
    KeepOpen,
    /// Drop the socket now.
    Drop,
    /// Never touch the socket again.
    Stall,
}

#[derive(Default)]
struct ConnState {
    client_closed: bool,
}

/// What a connection's script and command loop share.
struct Conn<'a> {
    shared: &'a Shared,
    conn: usize,
    sink: &'a Sink,
    state: &'a watch::Sender<ConnState>,
    tx: &'a mpsc::UnboundedSender<Cmd>,
    drop_pongs: &'a AtomicBool,
}

/// Unregisters the connection when dropped (also when the runtime shuts down).
struct ConnGuard<'a> {
    shared: &'a Shared,
    conn: usize,
}

impl Drop for ConnGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.shared.state();
        if state.conns.remove(&self.conn).is_some() {
            state.records[self.conn].closed_at = Some(Instant::now());
            state.note_ready();
        }
    }
}

async fn serve(ws: Ws, conn: usize, shared: &Shared, drop_pongs: &AtomicBool) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    {
        let mut state = shared.state();
        state.reserved = state.reserved.saturating_sub(1);
        let opened_at = state.records[conn].opened_at;
        state.conns.insert(
            conn,
            ConnInfo {
                tx: tx.clone(),
                opened_at,
                hello: false,
                draining: false,
                closing: false,
                stalled: false,
            },
        );
        state.max_live = state.max_live.max(state.conns.len());
    }
    let guard = ConnGuard { shared, conn };

    let (sink, mut stream) = ws.split();
    let sink: Sink = tokio::sync::Mutex::new(sink);
    let (conn_state, _) = watch::channel(ConnState::default());
    let ctx = Conn {
        shared,
        conn,
        sink: &sink,
        state: &conn_state,
        tx: &tx,
        drop_pongs,
    };

    let end = {
        let mut reader = Box::pin(read_loop(shared, conn, &mut stream, &conn_state));
        let mut script = Box::pin(run_script(&ctx, shared.script(conn)));
        let mut commands = Box::pin(command_loop(&ctx, &mut rx));
        let end = tokio::select! {
            () = &mut reader => End::Drop,
            end = &mut script => end,
            end = &mut commands => end,
        };
        match end {
            End::KeepOpen => tokio::select! {
                () = &mut reader => End::Drop,
                end = &mut commands => end,
            },
            other => other,
        }
    };

    if let End::Stall = end {
        {
            let mut state = shared.state();
            if let Some(info) = state.conns.get_mut(&conn) {
                info.stalled = true;
            }
            state.note_ready();
        }
        requeue(shared, &mut rx);
        // Never poll the socket again; the runtime's shutdown drops it.
        std::future::pending::<()>().await;
    }
    drop(guard);
    rx.close();
    requeue(shared, &mut rx);
}

/// Gives envelopes still queued for a connection back to the dispatcher.
fn requeue(shared: &Shared, rx: &mut mpsc::UnboundedReceiver<Cmd>) {
    let mut state = shared.state();
    while let Ok(cmd) = rx.try_recv() {
        if let Cmd::Envelope(out) = cmd {
            state.outbox.push_back(out);
        }
    }
    drop(state);
    shared.notify.notify_one();
}

/// Reads until the client goes away, recording frames and ACKs; tungstenite queues pongs for
/// client pings and writes them on the next read.
async fn read_loop(
    shared: &Shared,
    conn: usize,
    stream: &mut SplitStream<Ws>,
    conn_state: &watch::Sender<ConnState>,
) {
    while let Some(Ok(message)) = stream.next().await {
        let at = Instant::now();
        let mut state = shared.state();
        if let Some(frame) = ReceivedFrame::of(conn, at, &message) {
            if let Some((envelope_id, payload)) = frame.text.as_deref().and_then(parse_ack) {
                state.record_ack(conn, at, envelope_id, payload);
            }
            state.received.push(frame);
        }
        match message {
            Message::Text(_) | Message::Binary(_) | Message::Frame(_) => {}
            Message::Ping(_) => state.pings_received += 1,
            Message::Pong(_) => state.pongs_received += 1,
            Message::Close(frame) => {
                state.closes.push(ClientClose::of(conn, at, frame.as_ref()));
                if let Some(info) = state.conns.get_mut(&conn) {
                    info.closing = true;
                }
                state.note_ready();
                conn_state.send_modify(|s| s.client_closed = true);
            }
        }
    }
}

async fn run_script(ctx: &Conn<'_>, steps: Vec<SlackStep>) -> End {
    for step in steps {
        let ok = match step {
            SlackStep::Hello => {
                let text = hello_json(
                    ctx.shared.state().conns.len(),
                    ctx.shared.config.approximate_connection_time_s,
                );
                send_hello(ctx, text).await
            }
            SlackStep::HelloRaw(text) => send_hello(ctx, text).await,
            SlackStep::Sleep(d) => {
                tokio::time::sleep(d).await;
                true
            }
            SlackStep::Send(text) => send(ctx.sink, Message::text(text)).await,
            SlackStep::SendFragmented(text, n) => send_fragmented(ctx.sink, text, n).await,
            SlackStep::Envelope(envelope) => {
                let out = ctx.shared.state().register_delivery(envelope);
                send_envelope(ctx, out).await
            }
            SlackStep::Disconnect(reason) => send_disconnect(ctx, &reason).await,
            SlackStep::DisconnectAndCloseAfter(reason, d) => {
                if !send_disconnect(ctx, &reason).await {
                    return End::Drop;
                }
                tokio::time::sleep(d).await;
                return close(ctx, 1000).await;
            }
            SlackStep::Close(code) => return close(ctx, code).await,
            SlackStep::Drop => return End::Drop,
            SlackStep::Stall => return End::Stall,
            SlackStep::NoPongs => {
                ctx.drop_pongs.store(true, Ordering::SeqCst);
                true
            }
            SlackStep::Ping(data) => send(ctx.sink, Message::Ping(Bytes::from(data))).await,
            SlackStep::KeepOpen => return End::KeepOpen,
        };
        if !ok {
            return End::Drop;
        }
    }
    End::KeepOpen
}

/// Carries out commands from the handle; returns only to end the connection.
async fn command_loop(ctx: &Conn<'_>, rx: &mut mpsc::UnboundedReceiver<Cmd>) -> End {
    while let Some(cmd) = rx.recv().await {
        let ok = match cmd {
            Cmd::Text(text) => send(ctx.sink, Message::text(text)).await,
            Cmd::Envelope(out) => send_envelope(ctx, out).await,
            Cmd::Disconnect {
                reason,
                close_after,
            } => {
                let ok = send_disconnect(ctx, &reason).await;
                if let (true, Some(delay)) = (ok, close_after) {
                    let tx = ctx.tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let _ = tx.send(Cmd::Close(1000));
                    });
                }
                ok
            }
            Cmd::Close(code) => return close(ctx, code).await,
        };
        if !ok {
            return End::Drop;
        }
    }
    std::future::pending().await
}

/// Takes the sink, applies `note` to the state, then writes: what a client sees is recorded
/// before it can see it.
async fn send_noting(ctx: &Conn<'_>, message: Message, note: impl FnOnce(&mut State)) -> bool {
    let mut sink = ctx.sink.lock().await;
    note(&mut ctx.shared.state());
    sink.send(message).await.is_ok()
}

async fn send_hello(ctx: &Conn<'_>, text: String) -> bool {
    let ok = send_noting(ctx, Message::text(text), |state| {
        state.records[ctx.conn].hello_at = Some(Instant::now());
        if let Some(info) = state.conns.get_mut(&ctx.conn) {
            info.hello = true;
        }
        state.note_ready();
    })
    .await;
    ctx.shared.notify.notify_one();
    ok
}

async fn send_disconnect(ctx: &Conn<'_>, reason: &str) -> bool {
    send_noting(ctx, Message::text(disconnect_json(reason)), |state| {
        state.records[ctx.conn]
            .disconnects
            .push((Instant::now(), reason.to_owned()));
        if let Some(info) = state.conns.get_mut(&ctx.conn) {
            info.draining = true;
        }
    })
    .await
}

/// Writes a tracked envelope (recorded as sent just before the write); on failure the record is
/// undone and the envelope goes back to the dispatcher.
async fn send_envelope(ctx: &Conn<'_>, out: Outgoing) -> bool {
    let mut undo = None;
    let ok = send_noting(ctx, Message::text(out.text.clone()), |state| {
        let previous = state.deliveries[out.delivery].last_sent;
        state.record_sent(ctx.conn, &out, Instant::now());
        undo = Some((state.sent.len() - 1, previous));
    })
    .await;
    if !ok {
        let mut state = ctx.shared.state();
        if let Some((index, previous)) = undo {
            // `sent` only grows elsewhere, so the index still points at this record.
            state.sent.remove(index);
            let delivery = &mut state.deliveries[out.delivery];
            delivery.last_sent = previous;
            delivery.queued = true;
        }
        state.outbox.push_front(out);
        drop(state);
        ctx.shared.notify.notify_one();
    }
    ok
}

/// Sends a close frame, waits up to [`CLOSE_WAIT`] for the client's, then ends the connection.
async fn close(ctx: &Conn<'_>, code: u16) -> End {
    {
        let mut state = ctx.shared.state();
        if let Some(info) = state.conns.get_mut(&ctx.conn) {
            info.closing = true;
        }
        state.note_ready();
    }
    let frame = CloseFrame {
        code: code.into(),
        reason: "".into(),
    };
    if send(ctx.sink, Message::Close(Some(frame))).await {
        let mut rx = ctx.state.subscribe();
        let _ = tokio::time::timeout(CLOSE_WAIT, rx.wait_for(|s| s.client_closed)).await;
    }
    End::Drop
}

// ---------------------------------------------------------------------------------------------
// The TCP stream, with pongs dropped on demand
// ---------------------------------------------------------------------------------------------

/// Tracks WebSocket frame boundaries in the outgoing byte stream (server frames) so pong frames
/// can be dropped whole.
#[derive(Default)]
struct FrameFilter {
    header: Vec<u8>,
    remaining: u64,
    dropping: bool,
}

impl FrameFilter {
    /// Appends `input` to `out`, minus pong frames when `drop_pongs`.
    fn feed(&mut self, mut input: &[u8], drop_pongs: bool, out: &mut Vec<u8>) {
        while !input.is_empty() {
            if self.remaining > 0 {
                let n = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                if !self.dropping {
                    out.extend_from_slice(&input[..n]);
                }
                self.remaining -= n as u64;
                input = &input[n..];
                continue;
            }
            self.header.push(input[0]);
            input = &input[1..];
            if let Some(payload_len) = frame_payload_len(&self.header) {
                self.dropping = drop_pongs && self.header[0] & 0x0F == 0xA;
                if !self.dropping {
                    out.extend_from_slice(&self.header);
                }
                self.header.clear();
                self.remaining = payload_len;
            }
        }
    }
}

/// The payload length once `header` holds a complete frame header.
fn frame_payload_len(header: &[u8]) -> Option<u64> {
    if header.len() < 2 {
        return None;
    }
    let masked = header[1] & 0x80 != 0;
    let len7 = header[1] & 0x7F;
    let extended = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let need = 2 + extended + if masked { 4 } else { 0 };
    if header.len() < need {
        return None;
    }
    Some(match len7 {
        126 => u64::from(u16::from_be_bytes([header[2], header[3]])),
        127 => {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&header[2..10]);
            u64::from_be_bytes(bytes)
        }
        n => u64::from(n),
    })
}

/// Writes to the TCP stream; once `framed` (after the handshake) they go through a
/// [`FrameFilter`] that drops pong frames while `drop_pongs` is set.
struct PongFilter {
    framed: Arc<AtomicBool>,
    drop_pongs: Arc<AtomicBool>,
    filter: FrameFilter,
    /// Filtered bytes not yet written to the stream.
    out: Vec<u8>,
}

impl PongFilter {
    /// Writes buffered bytes; Ready(Ok) once the buffer is empty.
    fn poll_drain(&mut self, inner: &mut TcpStream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            match Pin::new(&mut *inner).poll_write(cx, &self.out) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.out.drain(..n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl WritePolicy for PongFilter {
    fn poll_write(
        &mut self,
        inner: &mut TcpStream,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if !self.framed.load(Ordering::SeqCst) {
            return Pin::new(inner).poll_write(cx, buf);
        }
        match self.poll_drain(inner, cx) {
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending if self.out.len() >= FILTER_BUFFER => return Poll::Pending,
            _ => {}
        }
        let drop_pongs = self.drop_pongs.load(Ordering::SeqCst);
        self.filter.feed(buf, drop_pongs, &mut self.out);
        // Start writing now; what does not fit is written on the next call or flush.
        if let Poll::Ready(Err(e)) = self.poll_drain(inner, cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(&mut self, inner: &mut TcpStream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.poll_drain(inner, cx) {
            Poll::Ready(Ok(())) => Pin::new(inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(
        &mut self,
        inner: &mut TcpStream,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        match self.poll_drain(inner, cx) {
            Poll::Ready(Ok(())) => Pin::new(inner).poll_shutdown(cx),
            other => other,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Self-tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    use tokio_tungstenite::tungstenite::Error as WsError;

    const TOKEN: &str = "xapp-1-test";
    const WAIT: Duration = Duration::from_secs(5);

    type Client = WebSocketStream<TcpStream>;

    /// A raw HTTP/1.1 POST; returns status, headers (names lower-cased) and body.
    async fn post(
        peer: &SlackPeer,
        authorization: Option<&str>,
    ) -> (u16, Vec<(String, String)>, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", peer.api_port()))
            .await
            .unwrap();
        let auth = authorization
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "POST /api/apps.connections.open HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\n{auth}\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
            .await
            .unwrap()
            .unwrap();
        let response = String::from_utf8(response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        (status, headers, body.to_owned())
    }

    async fn open_url(peer: &SlackPeer) -> String {
        let (status, _, body) = post(peer, Some(&format!("Bearer {TOKEN}"))).await;
        assert_eq!(status, 200, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["ok"], true, "{body}");
        body["url"].as_str().unwrap().to_owned()
    }

    async fn connect(url: &str) -> Result<Client, WsError> {
        let host = url.trim_start_matches("ws://").split('/').next().unwrap();
        let tcp = TcpStream::connect(host).await.unwrap();
        tokio_tungstenite::client_async(url, tcp)
            .await
            .map(|(ws, _)| ws)
    }

    fn refusal_status(result: Result<Client, WsError>) -> u16 {
        match result {
            Err(WsError::Http(response)) => response.status().as_u16(),
            Err(e) => panic!("expected an HTTP refusal, got {e}"),
            Ok(_) => panic!("expected an HTTP refusal, the upgrade was accepted"),
        }
    }

    /// The next text frame as JSON (pings are answered by reading).
    async fn next_json(ws: &mut Client) -> Value {
        let next = tokio::time::timeout(WAIT, async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).unwrap(),
                    Some(Ok(_)) => continue,
                    other => panic!("connection ended: {other:?}"),
                }
            }
        })
        .await;
        next.expect("a text frame in time")
    }

    #[tokio::test]
    async fn slack_peer_open_returns_single_use_ticket_url() {
        let peer = SlackPeer::with_token(TOKEN);
        assert_eq!(
            peer.api_base(),
            format!("http://127.0.0.1:{}/api", peer.api_port())
        );
        let url = open_url(&peer).await;
        let prefix = format!("ws://127.0.0.1:{}/link/?ticket=", peer.ws_port());
        assert!(
            url.starts_with(&prefix) && url.ends_with("&app_id=A1"),
            "{url}"
        );
        let calls = peer.open_calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].path, "/api/apps.connections.open");
        assert_eq!(
            calls[0].authorization.as_deref(),
            Some("Bearer xapp-1-test")
        );

        let mut ws = connect(&url).await.unwrap();
        let hello = next_json(&mut ws).await;
        assert_eq!(hello["type"], "hello");
        assert_eq!(hello["num_connections"], 1);
        assert_eq!(
            hello["debug_info"]["approximate_connection_time"],
            DEFAULT_APPROXIMATE_CONNECTION_TIME_S
        );
        assert_eq!(hello["connection_info"]["app_id"], "A1");

        // The same ticket again: refused; a made-up one too.
        assert_eq!(refusal_status(connect(&url).await), 403);
        let forged = format!("{prefix}not-issued&app_id=A1");
        assert_eq!(refusal_status(connect(&forged).await), 401);
        assert_eq!(peer.attempts(), 1);
        assert_eq!(peer.ticket_refusals(), 2);
        // A second open call hands out a different ticket, which works.
        let second = open_url(&peer).await;
        assert_ne!(second, url);
        let _ws2 = connect(&second).await.unwrap();
        assert!(peer.wait_until(WAIT, |p| p.ready_sockets() == 2).await);
        assert_eq!(peer.issued_urls(), vec![url, second]);
    }

    #[tokio::test]
    async fn slack_peer_wrong_bearer_gets_invalid_auth_and_answers_are_scriptable() {
        let peer = SlackPeer::with_token(TOKEN);
        for auth in [None, Some("Bearer xapp-wrong"), Some(TOKEN)] {
            let (status, _, body) = post(&peer, auth).await;
            assert_eq!(status, 200);
            assert_eq!(
                serde_json::from_str::<Value>(&body).unwrap(),
                json!({"ok": false, "error": "invalid_auth"})
            );
        }
        assert_eq!(peer.open_calls()[0].authorization, None);
        assert!(peer.issued_urls().is_empty());

        let bearer = format!("Bearer {TOKEN}");
        peer.push_open_answer(OpenAnswer::error("internal_error"));
        let (_, _, body) = post(&peer, Some(&bearer)).await;
        assert!(body.contains("\"internal_error\""), "{body}");
        // The queue is used up: back to tickets.
        assert!(open_url(&peer).await.contains("ticket="));
        peer.set_sticky_open_answer(OpenAnswer::error("invalid_auth"));
        for _ in 0..2 {
            let (_, _, body) = post(&peer, Some(&bearer)).await;
            assert!(body.contains("\"invalid_auth\""), "{body}");
        }
        peer.reset_open_answers();
        assert!(open_url(&peer).await.contains("ticket="));
    }

    #[tokio::test]
    async fn slack_peer_rate_limit_has_retry_after_and_delays_delay() {
        let peer = SlackPeer::with_token(TOKEN);
        let bearer = format!("Bearer {TOKEN}");
        peer.push_open_answers(vec![
            OpenAnswer::RateLimited { retry_after_s: 7 },
            OpenAnswer::ServerError(503),
            OpenAnswer::delayed(Duration::from_millis(300), OpenAnswer::Url),
        ]);
        let (status, headers, body) = post(&peer, Some(&bearer)).await;
        assert_eq!(status, 429);
        assert!(
            headers.contains(&("retry-after".to_owned(), "7".to_owned())),
            "{headers:?}"
        );
        assert!(
            headers.contains(&("connection".to_owned(), "close".to_owned())),
            "{headers:?}"
        );
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            json!({"ok": false, "error": "ratelimited"})
        );
        let (status, _, _) = post(&peer, Some(&bearer)).await;
        assert_eq!(status, 503);
        let started = Instant::now();
        let url = open_url(&peer).await;
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );
        assert!(connect(&url).await.is_ok());
    }

    #[tokio::test]
    async fn slack_peer_hello_counts_live_connections() {
        let peer = SlackPeer::start(SlackPeerConfig::new(TOKEN).approximate_connection_time_s(42));
        let mut first = connect(&peer.issue_url()).await.unwrap();
        assert_eq!(next_json(&mut first).await["num_connections"], 1);
        let mut second = connect(&peer.issue_url()).await.unwrap();
        let hello = next_json(&mut second).await;
        assert_eq!(hello["num_connections"], 2);
        assert_eq!(hello["debug_info"]["approximate_connection_time"], 42);
        assert!(peer.wait_until(WAIT, |p| p.ready_sockets() == 2).await);
        assert_eq!(peer.live_sockets(), 2);
        let started = Instant::now();
        first.close(None).await.unwrap();
        assert!(peer.wait_until(WAIT, |p| p.live_sockets() == 1).await);
        assert_eq!(peer.max_live_sockets_seen(), 2);
        assert_eq!(peer.ready_sockets(), 1);
        assert_eq!(peer.client_closes().len(), 1);
        assert!(peer.connections()[0].closed_at.is_some());
        assert!(peer.gaps_without_ready(started).is_empty());
        drop(second);
        assert!(peer.wait_until(WAIT, |p| p.live_sockets() == 0).await);
        let gaps = peer.gaps_without_ready(started);
        assert_eq!(gaps.len(), 1, "{gaps:?}");
    }

    #[tokio::test]
    async fn slack_peer_records_acks_with_latency() {
        let peer = SlackPeer::with_token(TOKEN);
        let mut ws = connect(&peer.issue_url()).await.unwrap();
        assert_eq!(next_json(&mut ws).await["type"], "hello");
        let ids = peer.send_envelopes(vec![events_api_envelope(
            "env-1",
            "Ev1",
            0,
            json!({"text": "hi"}),
        )]);
        assert_eq!(ids, vec!["env-1"]);
        let envelope = next_json(&mut ws).await;
        assert_eq!(envelope["envelope_id"], "env-1");
        assert_eq!(envelope["type"], "events_api");
        assert_eq!(envelope["retry_attempt"], 0);
        assert_eq!(envelope["retry_reason"], "");
        assert_eq!(envelope["payload"]["event_id"], "Ev1");
        assert_eq!(envelope["payload"]["event"]["text"], "hi");
        assert_eq!(peer.unacked(), vec!["env-1"]);
        tokio::time::sleep(Duration::from_millis(60)).await;
        ws.send(Message::text(r#"{"envelope_id":"env-1"}"#))
            .await
            .unwrap();
        // Not an ACK: another key.
        ws.send(Message::text(r#"{"envelope_id":"env-1","type":"x"}"#))
            .await
            .unwrap();
        assert!(
            peer.wait_until(WAIT, |p| p.all_received_frames().len() == 2)
                .await
        );
        let acks = peer.acks();
        assert_eq!(acks.len(), 1, "{acks:?}");
        assert_eq!(acks[0].original_id.as_deref(), Some("env-1"));
        assert!(peer.unacked().is_empty());
        assert!(peer.is_settled("env-1"));
        let latencies = peer.ack_latencies();
        assert_eq!(latencies.len(), 1);
        assert!(
            latencies[0] >= Duration::from_millis(60) && latencies[0] < WAIT,
            "{latencies:?}"
        );
        assert_eq!(peer.sent_envelopes().len(), 1);
    }

    #[tokio::test]
    async fn slack_peer_redelivers_unacked_envelope_with_new_id() {
        let peer = SlackPeer::start(
            SlackPeerConfig::new(TOKEN)
                .ack_deadline(Duration::from_millis(200))
                .max_redeliveries(2),
        );
        let mut ws = connect(&peer.issue_url()).await.unwrap();
        assert_eq!(next_json(&mut ws).await["type"], "hello");
        peer.send_envelopes(vec![events_api_envelope("env-1", "Ev1", 0, json!({}))]);
        let first = next_json(&mut ws).await;
        assert_eq!(first["envelope_id"], "env-1");
        let second = next_json(&mut ws).await;
        let new_id = second["envelope_id"].as_str().unwrap().to_owned();
        assert_ne!(new_id, "env-1");
        assert_eq!(second["retry_attempt"], 1);
        assert_eq!(second["retry_reason"], "timeout");
        assert_eq!(second["payload"], first["payload"]);
        let sent = peer.sent_envelopes();
        assert!(
            sent[1].at.duration_since(sent[0].at) >= Duration::from_millis(200),
            "{sent:?}"
        );
        ws.send(Message::text(json!({"envelope_id": new_id}).to_string()))
            .await
            .unwrap();
        assert!(peer.wait_until(WAIT, |p| p.unacked().is_empty()).await);
        assert_eq!(
            peer.redeliveries(),
            HashMap::from([("env-1".to_owned(), vec![new_id])])
        );
        // Settled: no third delivery.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(peer.sent_envelopes().len(), 2);
        assert!(peer.given_up().is_empty());
    }

    #[tokio::test]
    async fn slack_peer_max_connections_sends_too_many_websockets() {
        let peer = SlackPeer::start(SlackPeerConfig::new(TOKEN).max_connections(1));
        let mut first = connect(&peer.issue_url()).await.unwrap();
        assert_eq!(next_json(&mut first).await["type"], "hello");
        let mut second = connect(&peer.issue_url()).await.unwrap();
        let frame = next_json(&mut second).await;
        assert_eq!(frame["type"], "disconnect");
        assert_eq!(frame["reason"], "too_many_websockets");
        let closed = tokio::time::timeout(WAIT, async {
            loop {
                match second.next().await {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the refused socket is closed");
        assert_eq!(peer.too_many_refusals(), 1);
        assert_eq!(peer.attempts(), 2);
        assert_eq!(peer.live_sockets(), 1);
        assert_eq!(peer.max_live_sockets_seen(), 1);
        // Once the first leaves, a new socket fits.
        drop(first);
        assert!(peer.wait_until(WAIT, |p| p.live_sockets() == 0).await);
        let mut third = connect(&peer.issue_url()).await.unwrap();
        assert_eq!(next_json(&mut third).await["type"], "hello");
    }

    #[tokio::test]
    async fn slack_peer_round_robin_and_disconnect_all() {
        let peer = SlackPeer::with_token(TOKEN);
        let mut a = connect(&peer.issue_url()).await.unwrap();
        let mut b = connect(&peer.issue_url()).await.unwrap();
        next_json(&mut a).await;
        next_json(&mut b).await;
        assert!(peer.wait_until(WAIT, |p| p.ready_sockets() == 2).await);
        let envelopes = (0..4)
            .map(|i| events_api_envelope(&format!("e{i}"), &format!("Ev{i}"), 0, json!({})))
            .collect();
        peer.send_envelopes(envelopes);
        for ws in [&mut a, &mut b] {
            for _ in 0..2 {
                assert_eq!(next_json(ws).await["type"], "events_api");
            }
        }
        let per_conn = |c: usize| peer.sent_envelopes().iter().filter(|s| s.conn == c).count();
        assert_eq!((per_conn(0), per_conn(1)), (2, 2));

        let started = Instant::now();
        peer.disconnect_all_with("refresh_requested", Some(Duration::from_millis(500)));
        for ws in [&mut a, &mut b] {
            assert_eq!(next_json(ws).await["reason"], "refresh_requested");
        }
        // Still ready while draining, gone after the close.
        assert_eq!(peer.ready_sockets(), 2);
        assert!(peer.wait_until(WAIT, |p| p.live_sockets() == 0).await);
        assert!(started.elapsed() >= Duration::from_millis(500));
        assert_eq!(peer.gaps_without_ready(started).len(), 1);
        assert_eq!(peer.connections()[0].disconnects[0].1, "refresh_requested");
    }

    #[tokio::test]
    async fn slack_peer_no_pongs_step_drops_pongs_only() {
        let peer = SlackPeer::start(SlackPeerConfig::new(TOKEN).scripts(vec![
            SlackScript::default(),
            SlackScript::hello_then(vec![
                SlackStep::NoPongs,
                SlackStep::Send(r#"{"type":"after"}"#.into()),
            ]),
        ]));
        // Reads `texts` text frames, then pings and waits for the pong.
        let pong_within = |mut ws: Client, texts: usize| async move {
            for _ in 0..texts {
                next_json(&mut ws).await;
            }
            ws.send(Message::Ping(Bytes::from_static(b"p")))
                .await
                .unwrap();
            tokio::time::timeout(Duration::from_millis(500), async {
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Pong(_))) => return,
                        Some(Ok(_)) => {}
                        other => panic!("connection ended: {other:?}"),
                    }
                }
            })
            .await
            .is_ok()
        };
        let answering = connect(&peer.issue_url()).await.unwrap();
        assert!(
            pong_within(answering, 1).await,
            "pong from the default script"
        );
        let silent = connect(&peer.issue_url()).await.unwrap();
        // Hello and the `after` frame arrive (frames still flow), but no pong.
        assert!(!pong_within(silent, 2).await, "no pong after NoPongs");
        assert_eq!(peer.pings_received(), 2);
    }

    #[tokio::test]
    async fn slack_peer_paced_envelopes_follow_the_rate() {
        let peer = SlackPeer::with_token(TOKEN);
        let mut ws = connect(&peer.issue_url()).await.unwrap();
        next_json(&mut ws).await;
        assert!(peer.wait_until(WAIT, |p| p.ready_sockets() == 1).await);
        let envelopes = (0..5)
            .map(|i| events_api_envelope(&format!("p{i}"), &format!("Ev{i}"), 0, json!({})))
            .collect();
        let ids = peer.send_envelopes_paced(envelopes, 20.0);
        assert_eq!(ids, vec!["p0", "p1", "p2", "p3", "p4"]);
        for id in &ids {
            let envelope = next_json(&mut ws).await;
            assert_eq!(envelope["envelope_id"], id.as_str());
            ws.send(Message::text(json!({"envelope_id": id}).to_string()))
                .await
                .unwrap();
        }
        let sent = peer.sent_envelopes();
        let span = sent[4].at.duration_since(sent[0].at);
        assert!(span >= Duration::from_millis(190), "{span:?}");
        assert!(peer.wait_until(WAIT, |p| p.acks().len() == 5).await);
        assert!(peer.unacked().is_empty());
        assert_eq!(peer.ack_latencies().len(), 5);
    }

    #[tokio::test]
    async fn slack_peer_script_envelope_gives_up_after_max_redeliveries() {
        let peer = SlackPeer::start(
            SlackPeerConfig::new(TOKEN)
                .ack_deadline(Duration::from_millis(100))
                .max_redeliveries(1)
                .scripts(vec![SlackScript::hello_then(vec![SlackStep::Envelope(
                    slash_command_envelope("s1", "/deploy", "prod"),
                )])]),
        );
        let mut ws = connect(&peer.issue_url()).await.unwrap();
        assert_eq!(next_json(&mut ws).await["type"], "hello");
        assert_eq!(next_json(&mut ws).await["envelope_id"], "s1");
        let retry = next_json(&mut ws).await;
        assert_eq!(retry["retry_attempt"], 1);
        assert_eq!(retry["payload"]["command"], "/deploy");
        assert!(
            peer.wait_until(WAIT, |p| p.given_up() == vec!["s1"]).await,
            "{:?}",
            peer.given_up()
        );
        assert_eq!(peer.sent_envelopes().len(), 2);
        assert_eq!(peer.unacked(), vec!["s1"]);
        // A late ACK for the first id still settles the event.
        ws.send(Message::text(r#"{"envelope_id":"s1"}"#))
            .await
            .unwrap();
        assert!(peer.wait_until(WAIT, |p| p.is_settled("s1")).await);
    }

    #[tokio::test]
    async fn slack_peer_stalled_socket_gets_no_envelopes_and_no_pongs() {
        let peer = SlackPeer::start(SlackPeerConfig::new(TOKEN).scripts(vec![
            SlackScript::hello_then(vec![SlackStep::Stall]),
            SlackScript::default(),
        ]));
        let mut stalled = connect(&peer.issue_url()).await.unwrap();
        next_json(&mut stalled).await;
        let mut live = connect(&peer.issue_url()).await.unwrap();
        assert_eq!(next_json(&mut live).await["num_connections"], 2);
        assert!(
            peer.wait_until(WAIT, |p| p.ready_connections() == vec![1])
                .await
        );
        assert_eq!(peer.live_sockets(), 2);
        peer.send_envelopes(
            (0..3)
                .map(|i| events_api_envelope(&format!("e{i}"), "Ev", 0, json!({})))
                .collect(),
        );
        for _ in 0..3 {
            next_json(&mut live).await;
        }
        assert!(peer.sent_envelopes().iter().all(|s| s.conn == 1));
        stalled
            .send(Message::Ping(Bytes::from_static(b"p")))
            .await
            .unwrap();
        let answered = tokio::time::timeout(Duration::from_millis(300), stalled.next()).await;
        assert!(
            answered.is_err(),
            "a stalled socket stays silent: {answered:?}"
        );
        assert_eq!(peer.live_sockets(), 2);
    }

    #[tokio::test]
    async fn slack_peer_refresh_every_targets_the_oldest_socket() {
        let peer = SlackPeer::with_token(TOKEN);
        let mut old = connect(&peer.issue_url()).await.unwrap();
        next_json(&mut old).await;
        let mut new = connect(&peer.issue_url()).await.unwrap();
        next_json(&mut new).await;
        assert!(peer.wait_until(WAIT, |p| p.ready_sockets() == 2).await);
        let started = Instant::now();
        peer.refresh_every(Duration::from_millis(150), Duration::from_millis(100));
        assert_eq!(next_json(&mut old).await["reason"], "refresh_requested");
        // The old socket is closed by the peer: the client sees a close frame (and reading on
        // sends its reply).
        let mut code = None;
        let ended = tokio::time::timeout(WAIT, async {
            while let Some(Ok(message)) = old.next().await {
                if let Message::Close(frame) = message {
                    code = frame.map(|f| u16::from(f.code));
                }
            }
        })
        .await;
        assert!(ended.is_ok());
        assert_eq!(code, Some(1000));
        // The remaining socket is next; stopping the job stops refreshes.
        assert_eq!(next_json(&mut new).await["reason"], "refresh_requested");
        peer.stop_background();
        assert!(peer.wait_until(WAIT, |p| p.live_sockets() == 0).await);
        let records = peer.connections();
        assert_eq!(records[0].disconnects.len(), 1);
        assert_eq!(records[1].disconnects.len(), 1);
        let second_refresh = records[1].disconnects[0].0;
        assert!(records[0].disconnects[0].0 < second_refresh);
        assert!(records[0].disconnects[0].0.duration_since(started) >= Duration::from_millis(150));
        // Never without a ready socket until the last one was closed.
        let gaps = peer.gaps_without_ready(started);
        assert_eq!(gaps.len(), 1, "{gaps:?}");
        assert!(
            gaps[0].0 >= second_refresh + Duration::from_millis(100),
            "{gaps:?}"
        );
    }

    #[test]
    fn slack_peer_envelope_helpers_are_slack_shaped() {
        let padded = padded_envelope("e1", "Ev1", 4096);
        assert_eq!(padded.to_string().len(), 4096);
        let slash = slash_command_envelope("e2", "/deploy", "prod");
        assert_eq!(slash["type"], "slash_commands");
        assert_eq!(slash["payload"]["command"], "/deploy");
        let interactive = interactive_envelope("e3", "approve");
        assert_eq!(interactive["payload"]["actions"][0]["action_id"], "approve");
        let retried = events_api_envelope("e4", "Ev4", 2, json!({"user": "U9"}));
        assert_eq!(retried["retry_reason"], "timeout");
        assert_eq!(retried["payload"]["event"]["user"], "U9");
        assert_eq!(
            parse_ack(r#"{"envelope_id":"e1","payload":{"text":"ok"}}"#),
            Some(("e1".to_owned(), Some(json!({"text": "ok"}))))
        );
        assert_eq!(parse_ack(r#"{"envelope_id":1}"#), None);
        assert_eq!(parse_ack("[]"), None);
    }
}
