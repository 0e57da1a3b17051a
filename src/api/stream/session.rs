//! `StreamSession`: the actor behind one live-stream connection. It reads the client's messages
//! (size and rate limited, control frames included; bad ones answered with an error frame, the
//! connection stays open), holds the connection's subscriptions, forwards matching messages of its
//! org from the publisher, pings the client with an unpredictable payload and drops it when that
//! ping is not answered in time (only the matching pong counts, so a client that sends but never
//! reads is dropped too). It never waits for the client: when the send queue is full it drops data
//! messages and later says how many (`lagged`), drops its answers to control frames, and closes
//! the connection when even those would pile up. It closes when its API key is revoked.

use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_http::ws::Item;
use actix_web::web;
use actix_web_actors::ws;
use chrono::Utc;
use futures_util::Stream;
use tokio::sync::broadcast::{self, error::RecvError};
use uuid::Uuid;

use super::outbox::{Outbox, SEND_QUEUE_BYTES};
use super::protocol::{self, ClientMessage, Refusal, Subscription, Topic};
use super::registry::{KeyRevoked, Ticket};
use crate::actors::publisher::Published;
use crate::api::state::AppState;
use crate::pipeline::expr::to_value;
use crate::webhooks::inbound::TokenBucket;

/// Client messages per second a connection may send.
pub const MESSAGES_PER_SECOND: f64 = 20.0;
/// Client messages a connection may send at once.
pub const MESSAGE_BURST: u32 = 40;
/// How often a session that dropped messages checks whether it can say so.
const LAG_CHECK: Duration = Duration::from_millis(200);
/// Bytes waiting for a client beyond which the session gives up on it (data messages stop at
/// [`SEND_QUEUE_BYTES`]; this bounds what answers to control frames and errors may add).
const HARD_QUEUE_BYTES: usize = 2 * SEND_QUEUE_BYTES;

/// Publisher → session, as a stream item (the broadcast channel never waits for a session);
/// answers nothing.
#[derive(Debug)]
pub enum Feed {
    /// A published message.
    Message(Published),
    /// The session fell this many messages behind the publisher; they are gone.
    Lagged(u64),
}

/// One live-stream connection (started by `GET /v1/stream`, answers nothing: it talks only to its
/// client).
pub struct StreamSession {
    org_id: Uuid,
    state: web::Data<AppState>,
    outbox: Outbox,
    subscriptions: protocol::Subscriptions,
    bucket: TokenBucket,
    throttled: bool,
    ping_interval: Duration,
    /// The payload of the ping not answered yet.
    ping_outstanding: Option<[u8; 8]>,
    missed: u64,
    lag_watch: bool,
    reassembly: protocol::Reassembly,
    /// Its place among the open sessions (freed when the session is dropped).
    ticket: Ticket,
}

impl StreamSession {
    /// A session showing `org_id`'s messages, writing through `outbox`, holding `ticket`.
    pub fn new(
        org_id: Uuid,
        state: web::Data<AppState>,
        outbox: Outbox,
        ticket: Ticket,
    ) -> StreamSession {
        let ping_interval = Duration::from_secs(state.settings.stream_ping_interval_s);
        StreamSession {
            org_id,
            state,
            outbox,
            subscriptions: protocol::Subscriptions::default(),
            bucket: TokenBucket::new(MESSAGES_PER_SECOND, MESSAGE_BURST, Instant::now()),
            throttled: false,
            ping_interval,
            ping_outstanding: None,
            missed: 0,
            lag_watch: false,
            reassembly: protocol::Reassembly::default(),
            ticket,
        }
    }
}

/// The publisher's messages for one session, as a stream that never blocks the publisher.
fn feed(rx: broadcast::Receiver<Published>) -> impl Stream<Item = Feed> {
    futures_util::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Ok(message) => Some((Feed::Message(message), rx)),
            Err(RecvError::Lagged(n)) => Some((Feed::Lagged(n), rx)),
            Err(RecvError::Closed) => None,
        }
    })
}

impl Actor for StreamSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.ticket.attach(ctx.address().recipient());
        ctx.add_stream(feed(self.state.publisher.subscribe()));
        ctx.run_interval(self.ping_interval, |act, ctx| act.heartbeat(ctx));
        tracing::debug!(org_id = %self.org_id, "live stream session started");
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        tracing::info!(org_id = %self.org_id, "live stream closed");
    }
}

impl StreamHandler<Feed> for StreamSession {
    fn handle(&mut self, item: Feed, ctx: &mut Self::Context) {
        match item {
            Feed::Message(message) => self.forward(&message, ctx),
            Feed::Lagged(n) => {
                self.missed += n;
                self.report_lag(ctx);
            }
        }
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for StreamSession {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        match msg {
            // Answered within the message rate, and only while the client reads what it gets.
            Ok(ws::Message::Ping(payload)) => {
                if self.bucket.try_take(Instant::now()).is_ok() && !self.outbox.is_full() {
                    ctx.pong(&payload);
                }
            }
            // Only the answer to our own ping shows the client reads.
            Ok(ws::Message::Pong(payload)) => {
                if self
                    .ping_outstanding
                    .is_some_and(|sent| payload[..] == sent[..])
                {
                    self.ping_outstanding = None;
                }
            }
            Ok(ws::Message::Nop) => {}
            Ok(ws::Message::Text(text)) => {
                if self.admit(ctx) {
                    self.on_text(&text, ctx);
                }
            }
            Ok(ws::Message::Binary(_)) => {
                if self.admit(ctx) {
                    let detail = "binary frames are not supported; send JSON text";
                    self.reply(Refusal::new(detail, None).frame(), ctx);
                }
            }
            Ok(ws::Message::Continuation(item)) => self.on_fragment(item, ctx),
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Err(err) => {
                // The frame cannot be skipped (e.g. larger than the codec allows): close.
                tracing::debug!(org_id = %self.org_id, error = %err, "live stream protocol error");
                let code = match err {
                    ws::ProtocolError::Overflow => ws::CloseCode::Size,
                    _ => ws::CloseCode::Protocol,
                };
                ctx.close(Some(code.into()));
                ctx.stop();
            }
        }
    }
}

impl StreamSession {
    /// Applies the per-connection rate limit; the first refused message of a run says so.
    fn admit(&mut self, ctx: &mut ws::WebsocketContext<Self>) -> bool {
        if self.bucket.try_take(Instant::now()).is_ok() {
            self.throttled = false;
            return true;
        }
        if !self.throttled {
            self.throttled = true;
            let detail = format!(
                "rate limit exceeded: at most {MESSAGES_PER_SECOND} messages per second \
                 (bursts of {MESSAGE_BURST}); messages are ignored until the rate drops"
            );
            self.reply(Refusal::new(detail, None).frame(), ctx);
        }
        false
    }

    fn on_fragment(&mut self, item: Item, ctx: &mut ws::WebsocketContext<Self>) {
        let whole = match item {
            Item::FirstText(piece) => return self.reassembly.start(true, &piece),
            Item::FirstBinary(piece) => return self.reassembly.start(false, &piece),
            Item::Continue(piece) => return self.reassembly.push(&piece),
            Item::Last(piece) => self.reassembly.finish(&piece),
        };
        if let Some(whole) = whole
            && self.admit(ctx)
        {
            match whole {
                Ok(text) => self.on_text(&text, ctx),
                Err(refusal) => self.reply(refusal.frame(), ctx),
            }
        }
    }

    fn on_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        match protocol::parse(text) {
            Ok(ClientMessage::Ping) => self.reply(protocol::pong_frame(), ctx),
            Ok(ClientMessage::Unsubscribe { id }) => match self.subscriptions.remove(&id) {
                Ok(_) => self.reply(protocol::unsubscribed_frame(&id), ctx),
                Err(refusal) => self.reply(refusal.frame(), ctx),
            },
            Ok(ClientMessage::Subscribe(subscription)) => self.subscribe(subscription, ctx),
            Err(refusal) => self.reply(refusal.frame(), ctx),
        }
    }

    fn subscribe(&mut self, subscription: Subscription, ctx: &mut ws::WebsocketContext<Self>) {
        let id = subscription.id.clone();
        let source = subscription.source.clone();
        let snapshot = subscription.topics.contains(&Topic::SourceStatus);
        if let Err(refusal) = self.subscriptions.add(subscription) {
            self.reply(refusal.frame(), ctx);
            return;
        }
        self.reply(protocol::subscribed_frame(&id), ctx);
        if snapshot {
            self.send_snapshot(id, source, ctx);
        }
    }

    /// Sends the current status of every matching source of the org, before any later change
    /// (the session waits for it, so live messages queue behind it in the publisher).
    fn send_snapshot(
        &mut self,
        id: String,
        source: Option<String>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let (state, org_id) = (self.state.clone(), self.org_id);
        let load = async move { super::load_statuses(&state, org_id, source.as_deref()).await };
        ctx.wait(load.into_actor(self).map(move |loaded, act, ctx| {
            let statuses = match loaded {
                Ok(statuses) => statuses,
                Err(err) => {
                    tracing::warn!(org_id = %act.org_id, error = %err, "live stream snapshot failed");
                    let detail = "the source.status snapshot could not be loaded; changes follow";
                    act.reply(Refusal::new(detail, Some(&id)).frame(), ctx);
                    return;
                }
            };
            let at = Utc::now();
            for data in statuses {
                let accepted = match act.subscriptions.get(&id) {
                    Some(s) => s.accepts(&to_value(&data)),
                    None => Ok(false),
                };
                if let Err(detail) = &accepted {
                    let _ = act.subscriptions.remove(&id);
                    act.reply(Refusal::new(detail.clone(), Some(&id)).frame(), ctx);
                    return;
                }
                if accepted == Ok(true) {
                    let frame = protocol::message_frame(Topic::SourceStatus, &id, &data, at);
                    act.send_data(frame, ctx);
                }
            }
        }));
    }

    /// Sends a published message to every subscription of this org that matches it.
    fn forward(&mut self, message: &Published, ctx: &mut ws::WebsocketContext<Self>) {
        let (topic, org_id, source) = protocol::route(message);
        if org_id != self.org_id || !self.subscriptions.wants(topic, source) {
            return;
        }
        let data = protocol::data(message);
        let at = Utc::now();
        let matching = self.subscriptions.matching(topic, source, &data);
        for refusal in matching.ended {
            self.reply(refusal.frame(), ctx);
        }
        for id in matching.ids {
            let frame = protocol::message_frame(topic, &id, &data, at);
            self.send_data(frame, ctx);
        }
    }

    /// Queues a data message, or drops and counts it while the client is not keeping up.
    fn send_data(&mut self, frame: String, ctx: &mut ws::WebsocketContext<Self>) {
        if self.outbox.is_full() {
            self.missed += 1;
            self.watch_lag(ctx);
            return;
        }
        self.report_lag(ctx);
        ctx.text(frame);
    }

    /// Tells the client how many messages it missed, once it has room again.
    fn report_lag(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if self.missed == 0 {
            return;
        }
        if self.outbox.is_full() {
            self.watch_lag(ctx);
            return;
        }
        ctx.text(protocol::lagged_frame(self.missed));
        self.missed = 0;
    }

    fn watch_lag(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if self.lag_watch {
            return;
        }
        self.lag_watch = true;
        ctx.run_later(LAG_CHECK, |act, ctx| {
            act.lag_watch = false;
            act.report_lag(ctx);
        });
    }

    /// Pings the client, or drops it when the previous ping is still unanswered (whatever else
    /// it sent) or its send queue is past the hard limit.
    fn heartbeat(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if self.ping_outstanding.is_some() {
            tracing::info!(org_id = %self.org_id, "live stream client missed a ping; disconnecting");
            self.close(ws::CloseCode::Away, "ping timeout", ctx);
            return;
        }
        if self.overflowing(ctx) {
            return;
        }
        let payload: [u8; 8] = rand::random();
        self.ping_outstanding = Some(payload);
        ctx.ping(&payload);
    }

    /// Closes with `code` and `reason` and stops.
    fn close(&mut self, code: ws::CloseCode, reason: &str, ctx: &mut ws::WebsocketContext<Self>) {
        ctx.close(Some(ws::CloseReason {
            code,
            description: Some(reason.to_owned()),
        }));
        ctx.stop();
    }

    /// Closes the connection when the client has let its send queue grow past the hard limit
    /// (it does not read); says whether it did.
    fn overflowing(&mut self, ctx: &mut ws::WebsocketContext<Self>) -> bool {
        if self.outbox.queued() < HARD_QUEUE_BYTES {
            return false;
        }
        tracing::info!(org_id = %self.org_id, "live stream client does not read; disconnecting");
        self.close(ws::CloseCode::Policy, "the client does not read", ctx);
        true
    }

    /// Sends an answer or error frame unless the client is not reading (then it is dropped, and
    /// past the hard limit the connection closes).
    fn reply(&mut self, frame: String, ctx: &mut ws::WebsocketContext<Self>) {
        if self.overflowing(ctx) || self.outbox.is_full() {
            return;
        }
        ctx.text(frame);
    }
}

impl Handler<KeyRevoked> for StreamSession {
    type Result = ();

    fn handle(&mut self, _: KeyRevoked, ctx: &mut Self::Context) {
        tracing::info!(org_id = %self.org_id, "live stream closed: its API key was revoked");
        self.close(ws::CloseCode::Policy, "API key revoked", ctx);
    }
}
