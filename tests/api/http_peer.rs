//! A scriptable HTTP/1.1 peer on 127.0.0.1 for the integration tests: it stands in for the
//! service in front of a client (the reference worker), answering each request from a script and
//! recording what it was asked.
//!
//! **Answers.** A request for path `p` gets the next answer queued for `p`
//! ([`HttpPeer::push`]), else the sticky answer of `p` ([`HttpPeer::set_sticky`]), else
//! `200 {}`. An [`Answer`] has a status, a JSON body and a delay before it is written (a claim's
//! long poll). Connections are kept alive: a client may send many requests on one.
//!
//! **Records.** Every request is recorded once its body is read ([`HttpPeer::requests`]), with
//! its arrival time, method, path, `Authorization` header and JSON body; poll with
//! [`HttpPeer::wait_until`].
//!
//! Like the other peers it runs on its own thread with its own tokio runtime, independent of the
//! test's actix `System`; dropping the [`HttpPeer`] closes every socket and joins the thread.

#![allow(dead_code)] // Not every test binary uses every helper.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::peer_support::{Control, accept_loop, bind_local, spawn_runtime_thread};

/// Largest request head or body the peer reads.
const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// JSON body (sent as `application/json`).
    pub body: Value,
    /// How long to wait before answering.
    pub delay: Duration,
}

impl Answer {
    /// `status` with `body`, at once.
    pub fn new(status: u16, body: Value) -> Answer {
        Answer {
            status,
            body,
            delay: Duration::ZERO,
        }
    }

    /// The same answer after `delay`.
    pub fn after(mut self, delay: Duration) -> Answer {
        self.delay = delay;
        self
    }
}

/// One request the peer read.
#[derive(Clone, Debug)]
pub struct Request {
    /// When its head arrived.
    pub at: Instant,
    /// `POST`, `GET`, …
    pub method: String,
    /// The path (with any query).
    pub path: String,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The body as JSON (`null` when it is none).
    pub body: Value,
}

#[derive(Default)]
struct Script {
    queued: HashMap<String, VecDeque<Answer>>,
    sticky: HashMap<String, Answer>,
    requests: Vec<Request>,
}

impl Script {
    fn answer(&mut self, path: &str) -> Answer {
        let queued = self.queued.get_mut(path).and_then(VecDeque::pop_front);
        queued
            .or_else(|| self.sticky.get(path).cloned())
            .unwrap_or_else(|| Answer::new(200, json!({})))
    }
}

/// The peer; see the module documentation.
pub struct HttpPeer {
    script: Arc<Mutex<Script>>,
    port: u16,
    _control: Control,
}

impl HttpPeer {
    /// Starts the peer on a random port of 127.0.0.1.
    pub fn start() -> HttpPeer {
        let (listener, port) = bind_local("http peer");
        HttpPeer::serving(listener, port)
    }

    /// Starts the peer on `port` of 127.0.0.1 (a client may have been calling it already).
    pub fn start_on(port: u16) -> HttpPeer {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("http peer: bind 127.0.0.1:{port}: {e}"));
        if let Err(e) = listener.set_nonblocking(true) {
            panic!("http peer: set_nonblocking: {e}");
        }
        HttpPeer::serving(listener, port)
    }

    fn serving(listener: std::net::TcpListener, port: u16) -> HttpPeer {
        let script = Arc::new(Mutex::new(Script::default()));
        let shared = script.clone();
        let (control, _) = spawn_runtime_thread("http peer", format!("http-peer-{port}"), || {
            serve(listener, shared)
        });
        HttpPeer {
            script,
            port,
            _control: control,
        }
    }

    /// `http://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Queues `answer` for the next request for `path` not answered from the queue yet.
    pub fn push(&self, path: &str, answer: Answer) {
        let mut script = self.lock();
        script
            .queued
            .entry(path.to_owned())
            .or_default()
            .push_back(answer);
    }

    /// Answers `path` with `answer` once its queue is empty.
    pub fn set_sticky(&self, path: &str, answer: Answer) {
        self.lock().sticky.insert(path.to_owned(), answer);
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    /// The requests for `path` so far.
    pub fn requests_to(&self, path: &str) -> Vec<Request> {
        let all = self.requests();
        all.into_iter().filter(|r| r.path == path).collect()
    }

    /// Polls `cond` until it holds (true) or `timeout` passes (false).
    pub async fn wait_until(&self, timeout: Duration, cond: impl Fn(&HttpPeer) -> bool) -> bool {
        crate::peer_support::wait_until(self, timeout, cond).await
    }

    fn lock(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn serve(listener: std::net::TcpListener, script: Arc<Mutex<Script>>) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        panic!("http peer: registering the listener failed");
    };
    accept_loop(listener, move |stream| connection(stream, script.clone())).await;
}

/// Answers requests on one connection until the client closes it or sends something unreadable.
async fn connection(mut stream: TcpStream, script: Arc<Mutex<Script>>) {
    let mut buffer = Vec::new();
    while let Some(request) = read_request(&mut stream, &mut buffer).await {
        let answer = {
            let mut script = script.lock().unwrap_or_else(PoisonError::into_inner);
            let answer = script.answer(request.path.split('?').next().unwrap_or_default());
            script.requests.push(request);
            answer
        };
        tokio::time::sleep(answer.delay).await;
        let body = answer.body.to_string();
        let head = format!(
            "HTTP/1.1 {} Scripted\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            answer.status,
            body.len()
        );
        if stream.write_all(head.as_bytes()).await.is_err()
            || stream.write_all(body.as_bytes()).await.is_err()
        {
            return;
        }
    }
}

/// Reads one request (head and `content-length` body) from `stream`, keeping any bytes of the
/// next one in `buffer`.
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Request> {
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buffer.len() > MAX_REQUEST_BYTES || !fill(stream, buffer).await {
            return None;
        }
    };
    let at = Instant::now();
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let (method, path) = (
        request_line.next()?.to_owned(),
        request_line.next()?.to_owned(),
    );
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if length > MAX_REQUEST_BYTES {
        return None;
    }
    while buffer.len() < head_end + length {
        if !fill(stream, buffer).await {
            return None;
        }
    }
    let body = serde_json::from_slice(&buffer[head_end..head_end + length]).unwrap_or(Value::Null);
    buffer.drain(..head_end + length);
    Some(Request {
        at,
        method,
        path,
        authorization: header("authorization"),
        body,
    })
}

/// Reads more bytes into `buffer`; false when the connection ended.
async fn fill(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buffer.extend_from_slice(&chunk[..n]);
            true
        }
    }
}
