//! The peers, run as a child process of this binary (`throughput peer …`) so that their memory
//! and CPU are not counted: the generic WebSocket peer (firehose, paced, idle, idle over TLS) and
//! the Slack peer (`apps.connections.open` and Socket Mode).

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::env::message;

/// The child-process peer: `peer firehose N`, `peer paced RATE COUNT`, `peer idle`,
/// `peer idle-tls CERT KEY` (`wss://`, certificate and key PEM files) or
/// `peer slack RATE COUNT` (RATE 0: a burst). Prints its port on the first line of stdout.
pub(crate) fn peer_main(args: &[String]) {
    if args.first().map(String::as_str) == Some("slack") {
        return slack_peer_main(args);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap().port());
        std::io::stdout().flush().unwrap();
        let mode = args.first().cloned().unwrap_or_default();
        let n: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
        let m: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(0);
        let tls = (mode == "idle-tls").then(|| tls_acceptor(&args[1], &args[2]));
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            match tls.clone() {
                Some(acceptor) => tokio::spawn(serve_tls_idle(acceptor, tcp)),
                None => tokio::spawn(serve_plain(tcp, mode.clone(), n, m)),
            };
        }
    });
}

/// An idle `wss://` connection: reads until the other side goes.
async fn serve_tls_idle(acceptor: tokio_rustls::TlsAcceptor, tcp: tokio::net::TcpStream) {
    if let Ok(stream) = acceptor.accept(tcp).await
        && let Ok(ws) = tokio_tungstenite::accept_async(stream).await
    {
        let (_sink, mut stream) = ws.split();
        while let Some(Ok(_)) = stream.next().await {}
    }
}

/// One plain connection: `firehose` sends `n` messages as fast as it can, `paced` sends `m` at
/// `n`/s, `idle` sends nothing; then it stays open.
async fn serve_plain(tcp: tokio::net::TcpStream, mode: String, n: usize, m: usize) {
    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
    match mode.as_str() {
        "firehose" => {
            for seq in 0..n {
                if sink.feed(Message::text(message(seq, 0))).await.is_err() {
                    return;
                }
            }
            let _ = sink.flush().await;
        }
        "paced" => {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / n.max(1) as f64));
            for seq in 0..m {
                tick.tick().await;
                if sink.send(Message::text(message(seq, 0))).await.is_err() {
                    return;
                }
            }
        }
        _ => {}
    }
    std::future::pending::<()>().await;
}

/// A TLS acceptor serving the certificate and key at these paths.
fn tls_acceptor(cert: &str, key: &str) -> tokio_rustls::TlsAcceptor {
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = vec![CertificateDer::from_pem_file(cert).unwrap()];
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(
        std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider()),
    )
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config))
}

/// One envelope, ~400 bytes like a small Slack message event; half have `amount` over 100.
fn slack_envelope(seq: usize) -> (String, String) {
    let envelope_id = format!("env-{seq:08}");
    let text = json!({
        "envelope_id": envelope_id, "type": "events_api", "accepts_response_payload": false,
        "retry_attempt": 0, "retry_reason": "",
        "payload": {"team_id": "T1", "api_app_id": "A1", "type": "event_callback",
            "event_id": format!("Ev{seq:010}"), "event_time": 1_700_000_000u64,
            "event": {"type": "message", "user": "U1", "channel": "C1", "text": "hello",
                "ts": format!("1700000000.{seq:06}"), "amount": if seq.is_multiple_of(2) { 150 } else { 50 }}}
    })
    .to_string();
    (envelope_id, text)
}

/// The Slack peer: `apps.connections.open` on one port (printed first), the Socket Mode endpoint
/// on another. Every connection gets `hello`; once two are open, envelope `seq` goes to
/// connection `seq % 2`, as fast as it reads (RATE 0) or at RATE/s in all. When every envelope is
/// ACKed it prints `p50 p99 max` of the ACK latency in microseconds.
fn slack_peer_main(args: &[String]) {
    let rate: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    let total: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws_port = ws.local_addr().unwrap().port();
        println!("{}", api.local_addr().unwrap().port());
        std::io::stdout().flush().unwrap();
        tokio::spawn(serve_connections_open(api, ws_port));
        let sent: Sent = Arc::default();
        let latencies: Arc<Mutex<Vec<u64>>> = Arc::default();
        let (open_tx, open_rx) = tokio::sync::watch::channel(0usize);
        let mut conn = 0usize;
        loop {
            let (tcp, _) = ws.accept().await.unwrap();
            let Ok(socket) = tokio_tungstenite::accept_async(tcp).await else {
                continue;
            };
            let index = conn;
            conn += 1;
            let (mut sink, stream) = socket.split();
            tokio::spawn(read_acks(stream, sent.clone(), latencies.clone(), total));
            let hello = json!({"type": "hello", "num_connections": index + 1,
                "debug_info": {"host": "bench", "approximate_connection_time": 18060},
                "connection_info": {"app_id": "A1"}});
            if sink.send(Message::text(hello.to_string())).await.is_err() {
                continue;
            }
            open_tx.send_modify(|n| *n += 1);
            if index > 1 {
                continue;
            }
            let plan = Envelopes { index, rate, total };
            tokio::spawn(send_envelopes(sink, sent.clone(), open_rx.clone(), plan));
        }
    });
}

/// When each envelope in flight was sent, by envelope id.
type Sent = Arc<Mutex<HashMap<String, Instant>>>;
type WsSink = futures_util::stream::SplitSink<WebSocketStream<tokio::net::TcpStream>, Message>;
type WsStream = futures_util::stream::SplitStream<WebSocketStream<tokio::net::TcpStream>>;

/// `apps.connections.open`: every request gets a fresh Socket Mode URL on `ws_port`.
async fn serve_connections_open(api: tokio::net::TcpListener, ws_port: u16) {
    loop {
        let (mut tcp, _) = api.accept().await.unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            let mut read = 0;
            while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                match tcp.read(&mut buf[read..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => read += n,
                }
            }
            let body = json!({"ok": true, "url": format!("ws://127.0.0.1:{ws_port}/link/?ticket={}", uuid::Uuid::new_v4())}).to_string();
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tcp.write_all(answer.as_bytes()).await;
            let _ = tcp.shutdown().await;
        });
    }
}

/// Times each ACK against its envelope; prints `p50 p99 max` (µs) once `total` are ACKed.
async fn read_acks(
    mut stream: WsStream,
    sent: Sent,
    latencies: Arc<Mutex<Vec<u64>>>,
    total: usize,
) {
    while let Some(Ok(message)) = stream.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(ack) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let Some(id) = ack["envelope_id"].as_str() else {
            continue;
        };
        let Some(at) = sent.lock().unwrap().remove(id) else {
            continue;
        };
        let mut all = latencies.lock().unwrap();
        all.push(at.elapsed().as_micros() as u64);
        if all.len() == total {
            all.sort_unstable();
            let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
            println!("{} {} {}", pct(0.5), pct(0.99), all[all.len() - 1]);
            std::io::stdout().flush().unwrap();
        }
    }
}

/// Which envelopes one of the two connections sends, and how fast.
struct Envelopes {
    /// The connection (0 or 1): it sends envelopes `index, index + 2, …`.
    index: usize,
    /// Envelopes/s over both connections; 0 for as fast as the service reads.
    rate: usize,
    total: usize,
}

/// Once two connections are open, sends this connection's envelopes; then stays open.
async fn send_envelopes(
    mut sink: WsSink,
    sent: Sent,
    mut open: tokio::sync::watch::Receiver<usize>,
    plan: Envelopes,
) {
    let _ = open.wait_for(|n| *n >= 2).await;
    let mut tick = (plan.rate > 0)
        .then(|| tokio::time::interval(Duration::from_secs_f64(2.0 / plan.rate as f64)));
    for seq in (plan.index..plan.total).step_by(2) {
        if let Some(tick) = tick.as_mut() {
            tick.tick().await;
        }
        let (id, text) = slack_envelope(seq);
        sent.lock().unwrap().insert(id, Instant::now());
        let result = if tick.is_some() {
            sink.send(Message::text(text)).await
        } else {
            sink.feed(Message::text(text)).await
        };
        if result.is_err() {
            return;
        }
    }
    let _ = sink.flush().await;
    std::future::pending::<()>().await;
}
