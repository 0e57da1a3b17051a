//! Plumbing shared by the scriptable test peers ([`crate::peer`], [`crate::slack_peer`]).
//!
//! - [`bind_local`]: a non-blocking std listener on a random port of 127.0.0.1, to hand over to
//!   the peer's runtime.
//! - [`spawn_runtime_thread`] and [`Control`]: the peer's own thread running its own
//!   current-thread tokio runtime, independent of the actix `System` of the test that uses it;
//!   dropping the [`Control`] stops the runtime (closing every socket) and joins the thread.
//! - [`accept_loop`]: accept TCP connections (with `TCP_NODELAY`) and spawn a handler for each.
//! - [`PeerStream`]: the accepted TCP stream, reads passed through, writes through a
//!   [`WritePolicy`] that each peer chooses.
//! - [`send`], [`send_fragmented`]: writes on the shared WebSocket sink of a connection.
//! - [`refusal`]: an HTTP answer that refuses an upgrade.
//! - [`ReceivedFrame`], [`ClientClose`]: what a peer records of the frames a client sent.
//! - [`wait_until`]: polling for a condition on a peer handle.
//!
//! Messages of panics and refusals name the peer (`who`), as they did before this module existed.

#![allow(dead_code)] // Not every test binary uses every helper.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use futures_util::stream::SplitSink;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::ErrorResponse;
use tokio_tungstenite::tungstenite::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};
use tokio_tungstenite::tungstenite::{Bytes, Message};

/// How long a connection may take to send its upgrade request before the peer gives up on it.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a close started by the peer waits for the client's close frame before dropping the
/// socket.
pub const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// A text or binary frame received from a client.
#[derive(Clone, Debug)]
pub struct ReceivedFrame {
    /// The connection (attempt) it arrived on, counted from 0.
    pub conn: usize,
    /// When it was read.
    pub at: Instant,
    /// The text of a text frame.
    pub text: Option<String>,
    /// The data of a binary frame.
    pub binary: Option<Vec<u8>>,
}

impl ReceivedFrame {
    /// The record of `message` when it is a text or binary frame.
    pub fn of(conn: usize, at: Instant, message: &Message) -> Option<ReceivedFrame> {
        let (text, binary) = match message {
            Message::Text(text) => (Some(text.as_str().to_owned()), None),
            Message::Binary(data) => (None, Some(data.to_vec())),
            _ => return None,
        };
        Some(ReceivedFrame {
            conn,
            at,
            text,
            binary,
        })
    }
}

/// The texts of `frames`, in order; only those of connection `conn` when given.
pub fn texts(frames: &[ReceivedFrame], conn: Option<usize>) -> Vec<String> {
    frames
        .iter()
        .filter(|r| conn.is_none_or(|c| r.conn == c))
        .filter_map(|r| r.text.clone())
        .collect()
}

/// A close frame received from a client.
#[derive(Clone, Debug)]
pub struct ClientClose {
    /// The connection (attempt) it arrived on, counted from 0.
    pub conn: usize,
    /// When it was read.
    pub at: Instant,
    /// `None` when the close frame had no payload.
    pub code: Option<u16>,
    /// The close reason (empty when none).
    pub reason: String,
}

impl ClientClose {
    /// The record of a close frame (`None`: one without a payload).
    pub fn of(conn: usize, at: Instant, frame: Option<&CloseFrame>) -> ClientClose {
        ClientClose {
            conn,
            at,
            code: frame.map(|f| u16::from(f.code)),
            reason: frame
                .map(|f| f.reason.as_str().to_owned())
                .unwrap_or_default(),
        }
    }
}

/// Binds a non-blocking listener on a random port of 127.0.0.1 and returns it with its port.
/// Panics (naming `who`) when that fails.
pub fn bind_local(who: &str) -> (std::net::TcpListener, u16) {
    let listener = match std::net::TcpListener::bind("127.0.0.1:0") {
        Ok(listener) => listener,
        Err(e) => panic!("{who}: bind 127.0.0.1:0: {e}"),
    };
    let port = match listener.local_addr() {
        Ok(addr) => addr.port(),
        Err(e) => panic!("{who}: local_addr: {e}"),
    };
    if let Err(e) = listener.set_nonblocking(true) {
        panic!("{who}: set_nonblocking: {e}");
    }
    (listener, port)
}

/// Stops a peer's runtime and joins its thread when dropped.
pub struct Control {
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Control {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts thread `thread_name` running a new current-thread tokio runtime (all drivers enabled)
/// that runs `run()` until it returns or the returned [`Control`] is dropped; then the runtime is
/// dropped, which drops every task and so closes every socket. `run` is called inside the
/// runtime, so it may register std listeners (`TcpListener::from_std`) and spawn tasks. Also
/// returns a handle to the runtime, for spawning onto it from outside. Panics (naming `who`)
/// when the runtime or the thread cannot be made.
pub fn spawn_runtime_thread<F, Fut>(
    who: &str,
    thread_name: String,
    run: F,
) -> (Control, tokio::runtime::Handle)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => panic!("{who}: tokio runtime: {e}"),
    };
    let handle = runtime.handle().clone();
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    () = run() => {}
                    _ = shutdown_rx => {}
                }
            });
            // Dropping the runtime drops every task and so closes every socket.
            drop(runtime);
        });
    let thread = match thread {
        Ok(thread) => thread,
        Err(e) => panic!("{who}: spawn thread: {e}"),
    };
    let control = Control {
        shutdown: Some(shutdown_tx),
        thread: Some(thread),
    };
    (control, handle)
}

/// Accepts connections forever, setting `TCP_NODELAY` and spawning `handle(stream)` for each;
/// after an accept error, waits 10 ms and goes on.
pub async fn accept_loop<F, Fut>(listener: TcpListener, mut handle: F)
where
    F: FnMut(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(handle(stream));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// What a [`PeerStream`] does with writes to its TCP stream.
pub trait WritePolicy: Unpin {
    fn poll_write(
        &mut self,
        inner: &mut TcpStream,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>>;

    fn poll_flush(&mut self, inner: &mut TcpStream, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    fn poll_shutdown(
        &mut self,
        inner: &mut TcpStream,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>>;
}

/// An accepted TCP stream: reads go straight to `inner`, writes through `write`.
pub struct PeerStream<W> {
    pub inner: TcpStream,
    pub write: W,
}

impl<W: WritePolicy> AsyncRead for PeerStream<W> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<W: WritePolicy> AsyncWrite for PeerStream<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.write.poll_write(&mut this.inner, cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.write.poll_flush(&mut this.inner, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.write.poll_shutdown(&mut this.inner, cx)
    }
}

/// The write half of an upgraded connection, shared by the tasks that write to it.
pub type WsSink<S> = tokio::sync::Mutex<SplitSink<WebSocketStream<S>, Message>>;

/// Sends one message; false when the connection failed.
pub async fn send<S>(sink: &WsSink<S>, message: Message) -> bool
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    sink.lock().await.send(message).await.is_ok()
}

/// Sends the text as exactly N frames (N clamped to at least 1): a Text frame with fin=false,
/// Continuation frames, the last with fin=true. The split is by bytes, so a piece may end in the
/// middle of a UTF-8 sequence; pieces may be empty when N exceeds the length. False when the
/// connection failed.
pub async fn send_fragmented<S>(sink: &WsSink<S>, text: String, n: usize) -> bool
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let bytes = Bytes::from(text);
    let n = n.max(1);
    let len = bytes.len();
    let mut sink = sink.lock().await;
    for i in 0..n {
        let piece = bytes.slice(i * len / n..(i + 1) * len / n);
        let opcode = if i == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        let frame = Frame::message(piece, opcode, i + 1 == n);
        if sink.feed(Message::Frame(frame)).await.is_err() {
            return false;
        }
    }
    sink.flush().await.is_ok()
}

/// An answer refusing an upgrade with this HTTP status (500 when it is not one) and these extra
/// headers; the body says `refused by {who}: {status}`.
pub fn refusal(who: &str, status: u16, extra: &[(String, String)]) -> ErrorResponse {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = ErrorResponse::new(Some(format!("refused by {who}: {status}")));
    *response.status_mut() = status;
    add_headers(response.headers_mut(), extra);
    response
}

/// Appends these headers, skipping any with an invalid name or value.
pub fn add_headers(headers: &mut HeaderMap, extra: &[(String, String)]) {
    for (name, value) in extra {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
}

/// Polls `cond(peer)` every 10 ms until it holds (true) or `timeout` passes (false, after a last
/// check). Works under actix-rt (tokio time).
pub async fn wait_until<P>(peer: &P, timeout: Duration, cond: impl Fn(&P) -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond(peer) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
