//! One connection of any kind of source, from connect to down: the loop the `ConnectionActor`
//! drives.
//! It feeds frames through the sans-IO [`Protocol`] and the ingest pipeline into the inbox
//! writer, sends ACKs only after commit, and keeps the connection honest (pings, pong deadline,
//! idle watchdog, ready timeout, bounded close). Reading stops while the inbox buffer is full
//! (TCP backpressure).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use awc::ws::Message;
use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};

use super::connect::{self, WsSink, WsStream};
use super::protocol::Protocol;
use super::reports::DownReason;
use super::slack_open;
use crate::actors::commands::SendError;
use crate::actors::inbox::{AckFrames, Inbound, InboxHandle, InboxPermit};
use crate::actors::runtime::SourceRuntime;
use crate::actors::spec::SourceSpec;
use crate::sources::reassembly::Reassembler;
use crate::sources::slack::OpenBudget;
use crate::sources::status::SourceCounters;

mod deadlines;
mod frames;
mod stopping;

use stopping::{MAX_QUIET_WAIT, Stopping};

/// Commands from the `ConnectionActor` to its loop.
#[derive(Debug)]
pub enum Command {
    /// Send a text frame (answered once written, or `NotConnected` before ready). Boxed: the
    /// command channel allocates room for 32 commands up front, so a small command keeps every
    /// idle connection smaller.
    Send(Box<Outgoing>),
    /// Use a new spec (expressions only) from the next message on.
    Swap(Arc<SourceSpec>),
    /// Close gracefully: stop reading, finish in-flight persists and ACKs, close, return.
    Stop,
    /// A ready replacement has taken over. A connection the peer asked to refresh (Slack
    /// `disconnect`) keeps reading, storing and ACKing until the peer closes it, at most the
    /// refresh grace; any other stops as [`Command::Stop`] does (the peer will not close it).
    Retire,
}

/// A text frame to write, and where to answer once it is written.
#[derive(Debug)]
pub struct Outgoing {
    /// The frame's text.
    pub text: String,
    /// Answered once written, or `NotConnected`.
    pub reply: oneshot::Sender<Result<(), SendError>>,
}

/// Everything the loop needs.
pub struct ConnectionCtx {
    /// The spec this connection runs.
    pub spec: Arc<SourceSpec>,
    /// Shared context.
    pub rt: Arc<SourceRuntime>,
    /// Live counters.
    pub counters: Arc<SourceCounters>,
    /// Commands from the actor.
    pub commands: mpsc::Receiver<Command>,
    /// The source's `apps.connections.open` budget, shared by its connections (Slack).
    pub open_budget: Arc<Mutex<OpenBudget>>,
    /// Called once, when the connection is ready, with the connection count the peer reported.
    pub on_ready: Box<dyn FnOnce(Option<u32>)>,
    /// Called once, when the connection should be replaced (it reached `max_connection_age_s`,
    /// or Slack asked for a refresh); the loop goes on serving until it is told to stop.
    pub on_rotate: Box<dyn FnOnce()>,
}

/// Runs one connection until it is down.
pub async fn run(mut ctx: ConnectionCtx) -> DownReason {
    let (request, protocol) = if let Some(adapter) = ctx.spec.generic.clone() {
        let now_unix = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
        (
            adapter.connect_request(now_unix),
            Protocol::generic(adapter),
        )
    } else if let Some(adapter) = ctx.spec.slack.clone() {
        let budget = ctx.open_budget.clone();
        let opened = tokio::select! {
            opened = Box::pin(slack_open::open_url(&ctx.rt, &adapter, &budget)) => opened,
            _ = wait_stop(&mut ctx.commands) => return DownReason::Stopped,
        };
        match opened {
            Ok(request) => (request, Protocol::slack(adapter)),
            Err(reason) => return reason,
        }
    } else {
        return DownReason::Terminal("the source has no adapter".to_owned());
    };
    let max = ctx.spec.settings.liveness().max_message_bytes as usize;
    // The connect and the handshakes are boxed: a future is as large as its largest state, and
    // this one lives as long as the connection, so their state (freed once connected) would
    // otherwise stay allocated for every connection.
    let opened = tokio::select! {
        opened = Box::pin(connect::open(&ctx.rt, &request, max, ctx.spec.tls.as_deref())) => opened,
        _ = wait_stop(&mut ctx.commands) => return DownReason::Stopped,
    };
    let (sink, stream) = match opened {
        Ok(halves) => halves,
        Err(reason) => return reason,
    };
    let (inbox, ack_rx) = ctx.rt.inbox.connect(ctx.spec.clone(), ctx.counters.clone());
    let mut conn = Conn::new(ctx, protocol, sink, stream, inbox, ack_rx);
    conn.run().await
}

async fn wait_stop(commands: &mut mpsc::Receiver<Command>) {
    while let Some(cmd) = commands.recv().await {
        match cmd {
            Command::Stop | Command::Retire => return,
            Command::Send(outgoing) => {
                let _ = outgoing.reply.send(Err(SendError::NotConnected));
            }
            Command::Swap(_) => {}
        }
    }
    std::future::pending::<()>().await;
}

struct Conn {
    ctx: ConnectionCtx,
    protocol: Protocol,
    sink: WsSink,
    stream: WsStream,
    inbox: Option<InboxHandle>,
    acks: mpsc::UnboundedReceiver<AckFrames>,
    backlog: VecDeque<Inbound>,
    partial: Reassembler,
    on_ready: Option<Box<dyn FnOnce(Option<u32>)>>,
    on_rotate: Option<Box<dyn FnOnce()>>,
    rotate_due: Option<Instant>,
    last_frame: Instant,
    /// Set by a stop: when the loop ends at the latest, and when the last data frame came.
    stopping: Option<Stopping>,
    /// The peer asked for this connection to be replaced (Slack `disconnect`).
    peer_refresh: bool,
    /// The peer's close frame, once it came (the close is echoed after the last ACKs).
    peer_close: Option<Option<awc::ws::CloseReason>>,
    pong_due: Option<Instant>,
    ready_due: Option<Instant>,
    /// The size of the frame being read, until its first message is queued (see `on_data`).
    frame_bytes: usize,
}

impl Conn {
    fn new(
        mut ctx: ConnectionCtx,
        protocol: Protocol,
        sink: WsSink,
        stream: WsStream,
        inbox: InboxHandle,
        acks: mpsc::UnboundedReceiver<AckFrames>,
    ) -> Conn {
        let on_ready = std::mem::replace(&mut ctx.on_ready, Box::new(|_| {}));
        let on_rotate = std::mem::replace(&mut ctx.on_rotate, Box::new(|| {}));
        let now = Instant::now();
        let ready_due = (!protocol.is_ready()).then(|| now + protocol.ready_timeout());
        let max_message_bytes = ctx.spec.settings.liveness().max_message_bytes as usize;
        Conn {
            ctx,
            protocol,
            sink,
            stream,
            inbox: Some(inbox),
            acks,
            backlog: VecDeque::new(),
            partial: Reassembler::new(max_message_bytes),
            on_ready: Some(on_ready),
            on_rotate: Some(on_rotate),
            rotate_due: None,
            last_frame: now,
            stopping: None,
            peer_refresh: false,
            peer_close: None,
            pong_due: None,
            ready_due,
            frame_bytes: 0,
        }
    }

    async fn run(&mut self) -> DownReason {
        for message in self.protocol.on_connect_messages() {
            if let Err(err) = self.sink.send(Message::Text(message.into())).await {
                return DownReason::Transient(format!("sending on_connect failed: {err}"));
            }
        }
        if self.protocol.is_ready() {
            self.mark_ready(None, None);
        }
        let reason = self.event_loop().await;
        self.finish(reason == DownReason::Stopped || self.peer_close.is_some())
            .await;
        reason
    }

    fn liveness(&self) -> (Duration, Duration, Duration) {
        let l = self.ctx.spec.settings.liveness();
        (
            Duration::from_secs(l.ping_interval_s.into()),
            Duration::from_secs(l.pong_timeout_s.into()),
            Duration::from_secs(l.idle_timeout_s.into()),
        )
    }

    async fn event_loop(&mut self) -> DownReason {
        let (ping_every, pong_timeout, idle_timeout) = self.liveness();
        let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
        let app_ping = self.protocol.app_ping();
        let app_every = app_ping
            .as_ref()
            .map_or(Duration::from_secs(3600), |(every, _)| *every);
        let mut app_tick = tokio::time::interval_at(Instant::now() + app_every, app_every);
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        loop {
            let reading = self.backlog.is_empty();
            let deadline = self.next_deadline(reading, idle_timeout);
            let inbox = self.inbox.clone();
            let next_bytes = self.backlog.front().map_or(0, |item| item.bytes);
            let step = tokio::select! {
                frame = self.stream.next(), if reading => self.on_frames(frame).await,
                permit = reserve(inbox.as_ref(), next_bytes), if !self.backlog.is_empty() => {
                    if let (Some(permit), Some(item)) = (permit, self.backlog.pop_front()) {
                        permit.send(item);
                    }
                    if self.backlog.is_empty() {
                        self.resume_reading(pong_timeout);
                    }
                    Ok(())
                }
                Some(frames) = self.acks.recv() => self.send_acks(frames).await,
                cmd = self.ctx.commands.recv() => match cmd {
                    None => Err(DownReason::Stopped),
                    Some(cmd) => self.on_command(cmd).await,
                },
                _ = ping.tick() => self.send_ping(pong_timeout).await,
                _ = app_tick.tick(), if app_ping.is_some() => match &app_ping {
                    Some((_, text)) => self.send(Message::Text(text.clone().into())).await,
                    None => Ok(()),
                },
                () = sleep_until(deadline.unwrap_or(far)) => self.on_deadline(reading, idle_timeout),
            };
            if let Err(reason) = step {
                return reason;
            }
        }
    }

    async fn on_command(&mut self, cmd: Command) -> Result<(), DownReason> {
        match cmd {
            Command::Send(outgoing) => {
                let Outgoing { text, reply } = *outgoing;
                if !self.protocol.is_ready() {
                    let _ = reply.send(Err(SendError::NotConnected));
                    return Ok(());
                }
                let result = self.send(Message::Text(text.into())).await;
                let _ = reply.send(
                    result
                        .as_ref()
                        .map(|_| ())
                        .map_err(|_| SendError::NotConnected),
                );
                result
            }
            Command::Swap(spec) => {
                self.ctx.spec = spec;
                Ok(())
            }
            Command::Stop => {
                self.begin_stop(false);
                Ok(())
            }
            Command::Retire => {
                self.begin_stop(self.peer_refresh);
                Ok(())
            }
        }
    }

    /// A graceful stop first keeps reading (and storing, and ACKing), then [`Conn::finish`]
    /// runs. Normally until the peer has been quiet for [`QUIET`] or the close timeout passed, so
    /// a message already on the wire when a replacement took over (make-before-break) is not left
    /// unread. `until_peer_closes` (a retired connection the peer asked to refresh): until the
    /// peer closes it, or the refresh grace passed, however busy it still is: an envelope that
    /// arrived after our close frame could never be ACKed. A plain stop cuts a drain short.
    fn begin_stop(&mut self, until_peer_closes: bool) {
        let now = Instant::now();
        let close_timeout =
            Duration::from_millis(self.ctx.spec.settings.liveness().close_timeout_ms.into());
        let quiet = Stopping {
            deadline: now + close_timeout.min(MAX_QUIET_WAIT),
            last_data: now,
            until_peer_closes: false,
        };
        self.stopping = match (&self.stopping, until_peer_closes) {
            (None, true) => Some(Stopping {
                deadline: now + self.ctx.rt.refresh_grace,
                last_data: now,
                until_peer_closes: true,
            }),
            (Some(draining), false) if draining.until_peer_closes => Some(quiet),
            (None, false) => Some(quiet),
            (Some(_), _) => return,
        };
    }

    async fn send(&mut self, message: Message) -> Result<(), DownReason> {
        self.sink
            .send(message)
            .await
            .map_err(|e| DownReason::Transient(format!("write failed: {e}")))
    }

    async fn send_ping(&mut self, pong_timeout: Duration) -> Result<(), DownReason> {
        if self.pong_due.is_none() {
            self.pong_due = Some(Instant::now() + pong_timeout);
        }
        self.send(Message::Ping(Bytes::from_static(b"sb"))).await
    }

    async fn send_acks(&mut self, frames: AckFrames) -> Result<(), DownReason> {
        let mut received = Vec::with_capacity(frames.len());
        for (frame, at) in *frames {
            received.push(at);
            self.sink
                .feed(Message::Text(frame.into()))
                .await
                .map_err(|e| DownReason::Transient(format!("write failed: {e}")))?;
        }
        self.sink
            .flush()
            .await
            .map_err(|e| DownReason::Transient(format!("write failed: {e}")))?;
        let histogram = &self.ctx.rt.metrics.ack_latency;
        for at in received {
            histogram.observe(at.elapsed().as_secs_f64());
        }
        Ok(())
    }

    fn mark_ready(&mut self, num_connections: Option<u32>, refresh_after: Option<Duration>) {
        self.ready_due = None;
        let replace_after = match (self.protocol.max_connection_age(), refresh_after) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(after) = replace_after
            && self.on_rotate.is_some()
        {
            self.rotate_due = Some(Instant::now() + after);
        }
        if let Some(notify) = self.on_ready.take() {
            notify(num_connections);
        }
    }

    /// Reading again after backpressure: whatever the peer sent meanwhile (pongs included) is
    /// still unread, so the liveness deadlines start over from now.
    fn resume_reading(&mut self, pong_timeout: Duration) {
        let now = Instant::now();
        self.last_frame = now;
        if self.pong_due.is_some() {
            self.pong_due = Some(now + pong_timeout);
        }
    }

    /// Asks the source actor (once) for a make-before-break replacement; this connection keeps
    /// serving, and ACKing, until it is told to stop or the peer closes it.
    fn rotate(&mut self) {
        if let Some(rotate) = self.on_rotate.take() {
            rotate();
        }
    }
}

async fn reserve(inbox: Option<&InboxHandle>, bytes: usize) -> Option<InboxPermit<'_>> {
    match inbox {
        Some(tx) => tx.reserve(bytes).await,
        None => std::future::pending().await,
    }
}
