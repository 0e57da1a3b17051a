//! The many-hosts peer (`throughput peer hosts N`), run as a child process: a plain WebSocket
//! endpoint on each of `N` loopback addresses 127.0.0.2, 127.0.0.3, … (one port each, printed
//! space-separated on the first line of stdout), idle connections, and a command loop on stdin:
//!
//! - `open` → the number of WebSocket connections open now;
//! - `drop` → closes every open connection at once, then answers `dropped N`;
//! - `check RATE BURST SLACK_MS` → checks every host's accept times (handshakes completed) since
//!   the peer started against the token bucket: in any window `[a, b]` at most
//!   `BURST + RATE × (b − a + SLACK)` accepts, `SLACK` allowing for connects the service
//!   started on time but the peer completed a little later; answers `ok MAX_PER_SECOND` (the
//!   most accepts one host saw in any one-second window) or `violation HOST N WINDOW_MS`;
//! - `go SECONDS` → every open connection sends one order message a second (each at its own
//!   random phase, ids unique per connection) for `SECONDS` seconds; answers `going N`.

use std::collections::HashMap;
use std::io::{BufRead as _, Write as _};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::StreamExt as _;

/// What the connection tasks share with the command loop.
#[derive(Default)]
struct Shared {
    open: AtomicUsize,
    /// Connections accepted so far (each one's messages carry its number).
    accepted: AtomicUsize,
    accepts: Mutex<HashMap<Ipv4Addr, Vec<Instant>>>,
}

pub(crate) fn hosts_peer_main(hosts: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let shared = Arc::new(Shared::default());
        let (drop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
        let (go_tx, go_rx) = tokio::sync::watch::channel::<u64>(0);
        let mut ports = Vec::new();
        for i in 0..hosts {
            let ip = Ipv4Addr::new(127, 0, 0, 2 + u8::try_from(i).unwrap());
            let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
            ports.push(listener.local_addr().unwrap().port().to_string());
            let signals = (drop_tx.clone(), go_rx.clone());
            tokio::spawn(accept_loop(listener, ip, shared.clone(), signals));
        }
        println!("{}", ports.join(" "));
        std::io::stdout().flush().unwrap();
        let (line_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                if line_tx.send(line).is_err() {
                    return;
                }
            }
        });
        while let Some(line) = lines.recv().await {
            let answer = command(&line, &shared, &drop_tx, &go_tx).await;
            println!("{answer}");
            std::io::stdout().flush().unwrap();
        }
    });
}

async fn command(
    line: &str,
    shared: &Shared,
    drop_tx: &tokio::sync::broadcast::Sender<()>,
    go_tx: &tokio::sync::watch::Sender<u64>,
) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["open"] => shared.open.load(Ordering::SeqCst).to_string(),
        ["drop"] => {
            let open = shared.open.load(Ordering::SeqCst);
            let _ = drop_tx.send(());
            // The connection tasks close on the signal, within this runtime's next turns (new
            // connections may already be coming back, so `open` is not waited down to zero).
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            format!("dropped {open}")
        }
        ["check", rate, burst, slack_ms] => {
            let accepts = shared.accepts.lock().unwrap();
            check_rates(
                &accepts,
                rate.parse().unwrap(),
                burst.parse().unwrap(),
                slack_ms.parse::<f64>().unwrap() / 1000.0,
            )
        }
        ["go", seconds] => {
            go_tx.send_replace(seconds.parse().unwrap());
            format!("going {}", shared.open.load(Ordering::SeqCst))
        }
        _ => format!("unknown command {line:?}"),
    }
}

/// The drop signal and the `go` signal (seconds to send for, 0 until told).
type Signals = (
    tokio::sync::broadcast::Sender<()>,
    tokio::sync::watch::Receiver<u64>,
);

async fn accept_loop(
    listener: tokio::net::TcpListener,
    ip: Ipv4Addr,
    shared: Arc<Shared>,
    signals: Signals,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (shared, mut dropped, go) = (shared.clone(), signals.0.subscribe(), signals.1.clone());
        tokio::spawn(async move {
            let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                return;
            };
            shared
                .accepts
                .lock()
                .unwrap()
                .entry(ip)
                .or_default()
                .push(Instant::now());
            shared.open.fetch_add(1, Ordering::SeqCst);
            let salt = shared.accepted.fetch_add(1, Ordering::SeqCst);
            let (sink, mut stream) = ws.split();
            tokio::select! {
                _ = async { while let Some(Ok(_)) = stream.next().await {} } => {}
                _ = dropped.recv() => {}
                _ = send_when_told(sink, go, salt) => {}
            }
            shared.open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Once told to go, sends one message a second for the seconds told, starting at a random
/// phase; then stays open.
async fn send_when_told(
    mut sink: futures_util::stream::SplitSink<
        tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
        tokio_tungstenite::tungstenite::Message,
    >,
    mut go: tokio::sync::watch::Receiver<u64>,
    salt: usize,
) {
    use futures_util::SinkExt as _;
    if let Ok(seconds) = go.wait_for(|s| *s > 0).await.map(|s| *s) {
        let phase = std::time::Duration::from_millis(rand::random_range(0..1000));
        let every = std::time::Duration::from_secs(1);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + phase, every);
        for seq in 0..usize::try_from(seconds).unwrap() {
            tick.tick().await;
            let text = super::env::message(seq, salt);
            if sink
                .send(tokio_tungstenite::tungstenite::Message::text(text))
                .await
                .is_err()
            {
                return;
            }
        }
    }
    std::future::pending::<()>().await;
}

/// Checks every window of every host's accepts against `burst + rate × (window + slack)`.
fn check_rates(
    accepts: &HashMap<Ipv4Addr, Vec<Instant>>,
    rate: f64,
    burst: f64,
    slack: f64,
) -> String {
    let mut most_in_a_second = 0;
    for (ip, times) in accepts {
        let mut times = times.clone();
        times.sort();
        for i in 0..times.len() {
            let in_a_second = times[i..]
                .iter()
                .take_while(|t| (**t - times[i]).as_secs_f64() < 1.0)
                .count();
            most_in_a_second = most_in_a_second.max(in_a_second);
            for j in i..times.len() {
                let window = (times[j] - times[i]).as_secs_f64();
                let n = (j - i + 1) as f64;
                if n > burst + rate * (window + slack) {
                    return format!("violation {ip} {n} {:.1}", window * 1000.0);
                }
            }
        }
    }
    format!("ok {most_in_a_second}")
}
