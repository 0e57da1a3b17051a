//! A scriptable WebSocket server peer on 127.0.0.1 for the integration tests.
//!
//! The peer runs on its own thread with its own current-thread tokio runtime, so it is independent
//! of the actix `System` of the test that uses it. Every accepted TCP connection that sends an
//! upgrade request is an *attempt*; attempt `i` follows `scripts[min(i, len - 1)]`.
//!
//! While a script runs, the peer keeps reading the connection (recording text and binary frames,
//! counting pings and pongs, answering client pings through tungstenite) and forwards
//! [`Peer::broadcast`] / [`Peer::firehose`] pushes. When the script ends (or reaches
//! [`Step::Echo`]) the peer just keeps reading until the client goes away.
//!
//! Dropping the last [`Peer`] handle stops the runtime, which closes every socket, and joins the
//! thread.

#![allow(dead_code)] // Not every test binary uses every helper.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWrite;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{
    Callback, ErrorResponse, Request, Response,
};
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::{Bytes, Message};

use crate::peer_support::{
    self, CLOSE_WAIT, Control, HANDSHAKE_TIMEOUT, WritePolicy, WsSink, add_headers, send,
    send_fragmented,
};
pub use crate::peer_support::{ClientClose, ReceivedFrame};

/// Names the peer in panics and refusals.
const WHO: &str = "peer";

/// Produces the text of frame `i` of a firehose.
pub type MakeText = Arc<dyn Fn(usize) -> String + Send + Sync>;

/// One step of a [`ConnectionScript`].
#[derive(Clone)]
pub enum Step {
    /// Send a text frame.
    Send(String),
    /// Send a binary frame.
    SendBinary(Vec<u8>),
    /// Send the text as exactly N frames (N clamped to at least 1): a Text frame with fin=false,
    /// Continuation frames, the last with fin=true. The split is by bytes, so a piece may end in
    /// the middle of a UTF-8 sequence; pieces may be empty when N exceeds the length.
    SendFragmented(String, usize),
    /// Send a ping with this payload (at most 125 bytes); a pong with the same payload counts in
    /// [`Peer::pongs`].
    Ping(Vec<u8>),
    /// Send a close frame with code and reason, wait up to 1 s for the client's close frame, then
    /// drop the connection. Later steps are ignored.
    Close(u16, String),
    /// Drop the TCP connection abruptly, without a close frame. Later steps are ignored.
    Drop,
    /// Half-open: keep the socket open but never read or write again (client pings get no pong,
    /// broadcasts are not sent) until the peer is dropped. Later steps are ignored.
    Stall,
    /// Wait until the client has sent, on this connection, a text frame containing `contains`
    /// (frames received before this step count too, except those already matched by an earlier
    /// `WaitForText` of the same connection). On timeout, count it in [`Peer::wait_timeouts`] and
    /// continue.
    WaitForText { contains: String, timeout: Duration },
    /// Sleep (while still reading and answering pings).
    Sleep(Duration),
    /// End the script: just read and record everything (the default after the last step).
    Echo,
    /// Send `count` text frames made by `make(i)` as fast as the socket takes them (TCP
    /// backpressure), then flush; recorded in [`Peer::firehoses`]. Build it with [`firehose`].
    Firehose { count: usize, make: MakeText },
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Send(text) => f.debug_tuple("Send").field(text).finish(),
            Step::SendBinary(data) => f.debug_tuple("SendBinary").field(data).finish(),
            Step::SendFragmented(text, n) => f
                .debug_tuple("SendFragmented")
                .field(text)
                .field(n)
                .finish(),
            Step::Ping(data) => f.debug_tuple("Ping").field(data).finish(),
            Step::Close(code, reason) => f.debug_tuple("Close").field(code).field(reason).finish(),
            Step::Drop => f.write_str("Drop"),
            Step::Stall => f.write_str("Stall"),
            Step::WaitForText { contains, timeout } => f
                .debug_struct("WaitForText")
                .field("contains", contains)
                .field("timeout", timeout)
                .finish(),
            Step::Sleep(d) => f.debug_tuple("Sleep").field(d).finish(),
            Step::Echo => f.write_str("Echo"),
            Step::Firehose { count, .. } => f
                .debug_struct("Firehose")
                .field("count", count)
                .finish_non_exhaustive(),
        }
    }
}

/// A [`Step::Firehose`] of `count` text frames made by `make(i)`.
pub fn firehose(count: usize, make: impl Fn(usize) -> String + Send + Sync + 'static) -> Step {
    Step::Firehose {
        count,
        make: Arc::new(make),
    }
}

/// What the peer answers to the upgrade request.
#[derive(Clone, Debug)]
pub enum Upgrade {
    /// Switch protocols.
    Accept,
    /// Switch protocols, adding these response headers (e.g. `Sec-WebSocket-Protocol`).
    AcceptWith(Vec<(String, String)>),
    /// Answer with this HTTP status and no upgrade, e.g. `Refuse(401)`, `Refuse(500)`.
    Refuse(u16),
    /// Answer with this HTTP status and these headers (e.g. `Retry-After`), no upgrade.
    RefuseWith(u16, Vec<(String, String)>),
    /// Read the upgrade request (it counts as an attempt) and never answer.
    Hang,
}

/// What the peer does with one connection attempt.
#[derive(Clone, Debug)]
pub struct ConnectionScript {
    pub upgrade: Upgrade,
    pub steps: Vec<Step>,
}

impl ConnectionScript {
    /// Accept the upgrade and run these steps.
    pub fn accept(steps: Vec<Step>) -> ConnectionScript {
        ConnectionScript {
            upgrade: Upgrade::Accept,
            steps,
        }
    }

    /// Refuse the upgrade with this HTTP status.
    pub fn refuse(status: u16) -> ConnectionScript {
        ConnectionScript {
            upgrade: Upgrade::Refuse(status),
            steps: Vec::new(),
        }
    }
}

/// One finished firehose.
#[derive(Clone, Debug)]
pub struct FirehoseRun {
    pub attempt: usize,
    /// Frames actually written (less than requested when the connection failed).
    pub sent: usize,
    pub started: Instant,
    /// When the last frame was written and flushed to the socket.
    pub finished: Instant,
}

struct Attempt {
    at: Instant,
    uri: String,
    headers: Vec<(String, String)>,
}

#[derive(Default)]
struct Record {
    attempts: Vec<Attempt>,
    received: Vec<ReceivedFrame>,
    closes: Vec<ClientClose>,
    firehoses: Vec<FirehoseRun>,
    connections: HashMap<usize, mpsc::UnboundedSender<Command>>,
}

#[derive(Default)]
struct Shared {
    record: Mutex<Record>,
    open: AtomicUsize,
    pongs: AtomicUsize,
    pings_received: AtomicUsize,
    wait_timeouts: AtomicUsize,
}

impl Shared {
    fn record(&self) -> MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Handle to a running peer. Clones share the server; dropping the last one shuts it down.
#[derive(Clone)]
pub struct Peer {
    shared: Arc<Shared>,
    port: u16,
    _control: Arc<Control>,
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Peer {
    /// Start a peer on 127.0.0.1 (random port). Attempt `i` uses `scripts[min(i, len - 1)]`;
    /// no scripts means accept and echo.
    pub fn start(scripts: Vec<ConnectionScript>) -> Peer {
        let (listener, port) = peer_support::bind_local(WHO);
        let scripts = if scripts.is_empty() {
            vec![ConnectionScript::accept(Vec::new())]
        } else {
            scripts
        };
        let shared = Arc::new(Shared::default());
        let thread_shared = Arc::clone(&shared);
        let (control, _) = peer_support::spawn_runtime_thread(
            WHO,
            format!("ws-peer-{port}"),
            move || async move {
                let listener = match TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(e) => panic!("peer: listener: {e}"),
                };
                accept_loop(listener, thread_shared, scripts).await;
            },
        );
        Peer {
            shared,
            port,
            _control: Arc::new(control),
        }
    }

    /// `ws://127.0.0.1:PORT/ws`
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// TCP connections that sent an upgrade request (accepted, refused or hung).
    pub fn attempts(&self) -> usize {
        self.shared.record().attempts.len()
    }

    /// When each attempt's upgrade request was read.
    pub fn attempt_times(&self) -> Vec<Instant> {
        self.shared.record().attempts.iter().map(|a| a.at).collect()
    }

    /// Upgrade request headers of attempt `attempt` (names lower-cased, in request order; empty
    /// when there is no such attempt).
    pub fn request_headers(&self, attempt: usize) -> Vec<(String, String)> {
        self.shared
            .record()
            .attempts
            .get(attempt)
            .map(|a| a.headers.clone())
            .unwrap_or_default()
    }

    /// First value of header `name` (case-insensitive) in attempt `attempt`'s upgrade request.
    pub fn request_header(&self, attempt: usize, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        self.request_headers(attempt)
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }

    /// Request target (path and query) of attempt `attempt`'s upgrade request.
    pub fn request_uri(&self, attempt: usize) -> Option<String> {
        self.shared
            .record()
            .attempts
            .get(attempt)
            .map(|a| a.uri.clone())
    }

    /// Upgraded connections currently open (a stalled one stays open until the peer is dropped).
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Every text and binary frame received from clients, in order.
    pub fn received(&self) -> Vec<ReceivedFrame> {
        self.shared.record().received.clone()
    }

    /// How many text and binary frames were received (cheap, for polling).
    pub fn received_count(&self) -> usize {
        self.shared.record().received.len()
    }

    /// The text frames received from clients, in order.
    pub fn texts(&self) -> Vec<String> {
        peer_support::texts(&self.shared.record().received, None)
    }

    /// The text frames received on attempt `attempt`, in order.
    pub fn texts_of(&self, attempt: usize) -> Vec<String> {
        peer_support::texts(&self.shared.record().received, Some(attempt))
    }

    /// Close frames received from clients.
    pub fn client_closes(&self) -> Vec<ClientClose> {
        self.shared.record().closes.clone()
    }

    /// Pongs received whose payload matched an outstanding [`Step::Ping`].
    pub fn pongs(&self) -> usize {
        self.shared.pongs.load(Ordering::SeqCst)
    }

    /// Pings received from clients (answered automatically unless the connection is stalled).
    pub fn pings_received(&self) -> usize {
        self.shared.pings_received.load(Ordering::SeqCst)
    }

    /// [`Step::WaitForText`] steps that timed out.
    pub fn wait_timeouts(&self) -> usize {
        self.shared.wait_timeouts.load(Ordering::SeqCst)
    }

    /// Finished firehoses (script steps and [`Peer::firehose`] pushes).
    pub fn firehoses(&self) -> Vec<FirehoseRun> {
        self.shared.record().firehoses.clone()
    }

    /// Poll `cond` every 10 ms until it holds (true) or `timeout` passes (false, after a last
    /// check). Works under actix-rt (tokio time).
    pub async fn wait_until(&self, timeout: Duration, cond: impl Fn(&Peer) -> bool) -> bool {
        peer_support::wait_until(self, timeout, cond).await
    }

    /// Push a text frame to every open (not stalled) connection now, outside the script.
    pub fn broadcast(&self, text: String) {
        self.command(|| Command::Text(text.clone()));
    }

    /// Push `count` text frames made by `make(i)` to every open (not stalled) connection as fast
    /// as each socket takes them; each finished run shows in [`Peer::firehoses`].
    pub fn firehose(&self, count: usize, make: impl Fn(usize) -> String + Send + Sync + 'static) {
        let make: MakeText = Arc::new(make);
        self.command(|| Command::Firehose(count, Arc::clone(&make)));
    }

    fn command(&self, make: impl Fn() -> Command) {
        for sender in self.shared.record().connections.values() {
            let _ = sender.send(make());
        }
    }
}

enum Command {
    Text(String),
    Firehose(usize, MakeText),
}

/// How a script ended.
enum End {
    Echo,
    Drop,
    Stall,
}

#[derive(Default)]
struct ConnState {
    texts: Vec<String>,
    client_closed: bool,
    outstanding_pings: Vec<Bytes>,
}

type PeerStream = peer_support::PeerStream<HangGate>;
type Ws = WebSocketStream<PeerStream>;
type Sink = WsSink<PeerStream>;

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, scripts: Vec<ConnectionScript>) {
    let scripts = Arc::new(scripts);
    peer_support::accept_loop(listener, |stream| {
        handle_connection(stream, Arc::clone(&shared), Arc::clone(&scripts))
    })
    .await;
}

async fn handle_connection(
    stream: TcpStream,
    shared: Arc<Shared>,
    scripts: Arc<Vec<ConnectionScript>>,
) {
    let hang = Arc::new(AtomicBool::new(false));
    let hang_flag = Arc::clone(&hang);
    let stream = PeerStream {
        inner: stream,
        write: HangGate {
            hang: Arc::clone(&hang),
        },
    };
    let chosen: Arc<Chosen> = Arc::default();
    let callback = UpgradeCallback {
        shared: Arc::clone(&shared),
        scripts,
        hang,
        chosen: Arc::clone(&chosen),
    };
    let handshake = tokio_tungstenite::accept_hdr_async(stream, callback);
    tokio::pin!(handshake);
    let ws = match tokio::time::timeout(HANDSHAKE_TIMEOUT, &mut handshake).await {
        Ok(Ok(ws)) => ws,
        // Keep the socket (inside the handshake) open until the peer is dropped.
        Err(_) if hang_flag.load(Ordering::SeqCst) => std::future::pending().await,
        // Refused (the error response has been written), bad request, I/O error or timeout.
        _ => {
            if let Some((attempt, ..)) =
                chosen.lock().unwrap_or_else(PoisonError::into_inner).take()
            {
                shared.record().connections.remove(&attempt);
            }
            return;
        }
    };
    let Some((attempt, steps, commands)) =
        chosen.lock().unwrap_or_else(PoisonError::into_inner).take()
    else {
        return;
    };
    serve(ws, attempt, steps, commands, &shared).await;
}

/// The attempt index and steps chosen for an accepted upgrade, and its command channel (registered
/// before the upgrade is answered, so a command sent once the client sees it connected reaches it).
type Chosen = Mutex<Option<(usize, Vec<Step>, mpsc::UnboundedReceiver<Command>)>>;

/// Records the upgrade request as an attempt and answers it as its script says.
struct UpgradeCallback {
    shared: Arc<Shared>,
    scripts: Arc<Vec<ConnectionScript>>,
    hang: Arc<AtomicBool>,
    chosen: Arc<Chosen>,
}

impl Callback for UpgradeCallback {
    fn on_request(
        self,
        request: &Request,
        mut response: Response,
    ) -> Result<Response, ErrorResponse> {
        let UpgradeCallback {
            shared,
            scripts,
            hang,
            chosen,
        } = self;
        let headers = request
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let attempt = {
            let mut record = shared.record();
            record.attempts.push(Attempt {
                at: Instant::now(),
                uri: request.uri().to_string(),
                headers,
            });
            record.attempts.len() - 1
        };
        let script = &scripts[attempt.min(scripts.len() - 1)];
        match &script.upgrade {
            Upgrade::Accept => {}
            Upgrade::AcceptWith(extra) => add_headers(response.headers_mut(), extra),
            Upgrade::Refuse(status) => return Err(refusal(*status, &[])),
            Upgrade::RefuseWith(status, extra) => return Err(refusal(*status, extra)),
            Upgrade::Hang => hang.store(true, Ordering::SeqCst),
        }
        let (command_tx, commands) = mpsc::unbounded_channel();
        if !hang.load(Ordering::SeqCst) {
            shared.record().connections.insert(attempt, command_tx);
        }
        *chosen.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((attempt, script.steps.clone(), commands));
        Ok(response)
    }
}

fn refusal(status: u16, extra: &[(String, String)]) -> ErrorResponse {
    peer_support::refusal("test peer", status, extra)
}

/// Decrements the open-connection count and unregisters the command channel when dropped
/// (also when the runtime shuts down).
struct OpenGuard<'a> {
    shared: &'a Shared,
    attempt: usize,
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.shared.record().connections.remove(&self.attempt);
        self.shared.open.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve(
    ws: Ws,
    attempt: usize,
    steps: Vec<Step>,
    command_rx: mpsc::UnboundedReceiver<Command>,
    shared: &Shared,
) {
    shared.open.fetch_add(1, Ordering::SeqCst);
    let _guard = OpenGuard { shared, attempt };

    let (sink, mut stream) = ws.split();
    let sink: Sink = tokio::sync::Mutex::new(sink);
    let (state, _) = watch::channel(ConnState::default());

    let reader = read_loop(shared, attempt, &mut stream, &state);
    let script = run_script(shared, attempt, &sink, &state, steps);
    let commands = command_loop(shared, attempt, &sink, command_rx);
    tokio::pin!(reader, script, commands);

    let end = tokio::select! {
        () = &mut reader => return,
        end = &mut script => end,
        () = &mut commands => return,
    };
    match end {
        End::Drop => {}
        End::Echo => {
            tokio::select! {
                () = &mut reader => {}
                () = &mut commands => {}
            }
        }
        // Never poll the reader or the sink again; the runtime's shutdown drops the socket.
        End::Stall => std::future::pending::<()>().await,
    }
}

/// Reads until the client goes away, recording frames; tungstenite queues pongs for client pings
/// and writes them on the next read.
async fn read_loop(
    shared: &Shared,
    attempt: usize,
    stream: &mut SplitStream<Ws>,
    state: &watch::Sender<ConnState>,
) {
    while let Some(Ok(message)) = stream.next().await {
        let at = Instant::now();
        if let Some(frame) = ReceivedFrame::of(attempt, at, &message) {
            let text = frame.text.clone();
            shared.record().received.push(frame);
            if let Some(text) = text {
                state.send_modify(|s| s.texts.push(text));
            }
        }
        match message {
            Message::Text(_) | Message::Binary(_) | Message::Frame(_) => {}
            Message::Ping(_) => {
                shared.pings_received.fetch_add(1, Ordering::SeqCst);
            }
            Message::Pong(data) => {
                let mut matched = false;
                state.send_modify(|s| {
                    if let Some(i) = s.outstanding_pings.iter().position(|p| *p == data) {
                        s.outstanding_pings.remove(i);
                        matched = true;
                    }
                });
                if matched {
                    shared.pongs.fetch_add(1, Ordering::SeqCst);
                }
            }
            Message::Close(frame) => {
                shared
                    .record()
                    .closes
                    .push(ClientClose::of(attempt, at, frame.as_ref()));
                state.send_modify(|s| s.client_closed = true);
            }
        }
    }
}

async fn run_script(
    shared: &Shared,
    attempt: usize,
    sink: &Sink,
    state: &watch::Sender<ConnState>,
    steps: Vec<Step>,
) -> End {
    // Texts of this connection before this index were matched by an earlier WaitForText.
    let mut cursor = 0;
    for step in steps {
        let sent = match step {
            Step::Send(text) => send(sink, Message::text(text)).await,
            Step::SendBinary(data) => send(sink, Message::binary(data)).await,
            Step::SendFragmented(text, n) => send_fragmented(sink, text, n).await,
            Step::Ping(data) => {
                let data = Bytes::from(data);
                state.send_modify(|s| s.outstanding_pings.push(data.clone()));
                send(sink, Message::Ping(data)).await
            }
            Step::Close(code, reason) => {
                let frame = CloseFrame {
                    code: code.into(),
                    reason: reason.into(),
                };
                if send(sink, Message::Close(Some(frame))).await {
                    let mut rx = state.subscribe();
                    let _ =
                        tokio::time::timeout(CLOSE_WAIT, rx.wait_for(|s| s.client_closed)).await;
                }
                return End::Drop;
            }
            Step::Drop => return End::Drop,
            Step::Stall => return End::Stall,
            Step::WaitForText { contains, timeout } => {
                let mut rx = state.subscribe();
                let mut found = None;
                let waited = tokio::time::timeout(
                    timeout,
                    rx.wait_for(|s| {
                        found = s.texts[cursor..]
                            .iter()
                            .position(|t| t.contains(&contains))
                            .map(|i| cursor + i);
                        found.is_some()
                    }),
                )
                .await;
                match (waited, found) {
                    (Ok(Ok(_)), Some(i)) => cursor = i + 1,
                    _ => {
                        shared.wait_timeouts.fetch_add(1, Ordering::SeqCst);
                    }
                }
                true
            }
            Step::Sleep(d) => {
                tokio::time::sleep(d).await;
                true
            }
            Step::Echo => return End::Echo,
            Step::Firehose { count, make } => {
                run_firehose(shared, attempt, sink, count, &*make).await
            }
        };
        if !sent {
            return End::Drop;
        }
    }
    End::Echo
}

/// Forwards broadcasts and firehoses; never returns while the peer is alive.
async fn command_loop(
    shared: &Shared,
    attempt: usize,
    sink: &Sink,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    while let Some(command) = commands.recv().await {
        let ok = match command {
            Command::Text(text) => send(sink, Message::text(text)).await,
            Command::Firehose(count, make) => {
                run_firehose(shared, attempt, sink, count, &*make).await
            }
        };
        if !ok {
            return;
        }
    }
    std::future::pending::<()>().await;
}

async fn run_firehose(
    shared: &Shared,
    attempt: usize,
    sink: &Sink,
    count: usize,
    make: &(dyn Fn(usize) -> String + Send + Sync),
) -> bool {
    let mut sink = sink.lock().await;
    let started = Instant::now();
    let mut sent = 0;
    let mut ok = true;
    for i in 0..count {
        if sink.feed(Message::text(make(i))).await.is_err() {
            ok = false;
            break;
        }
        sent += 1;
    }
    ok = ok && sink.flush().await.is_ok();
    shared.record().firehoses.push(FirehoseRun {
        attempt,
        sent,
        started,
        finished: Instant::now(),
    });
    ok
}

/// Writes to the TCP stream that never finish once [`Upgrade::Hang`] was chosen (so the upgrade
/// request is read and recorded but never answered).
struct HangGate {
    hang: Arc<AtomicBool>,
}

impl WritePolicy for HangGate {
    fn poll_write(
        &mut self,
        inner: &mut TcpStream,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.hang.load(Ordering::SeqCst) {
            return Poll::Pending;
        }
        Pin::new(inner).poll_write(cx, buf)
    }

    fn poll_flush(&mut self, inner: &mut TcpStream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.hang.load(Ordering::SeqCst) {
            return Poll::Pending;
        }
        Pin::new(inner).poll_flush(cx)
    }

    fn poll_shutdown(
        &mut self,
        inner: &mut TcpStream,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(inner).poll_shutdown(cx)
    }
}
