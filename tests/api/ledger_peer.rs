//! A generic feed with an ACK protocol that keeps its promise: it holds a ledger of messages
//! (`{"type": "t", "id": "<id>", "n": <n>}`), sends every message appended while a client is
//! connected, and on every new connection first sends again, in order, every message not yet
//! ACKed (`{"ack": "<id>"}`, what `ack_expr: "{ack: id}"` builds). What it records: connections,
//! ACKs with their times, and which messages were sent more than once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

use crate::peer_support::{Control, accept_loop, bind_local, spawn_runtime_thread};

#[derive(Default)]
struct Ledger {
    /// Every message id, in order.
    ids: Vec<String>,
    /// Ids ACKed, with the time of the first ACK.
    acked: HashMap<String, Instant>,
    /// Times each id was written to a socket.
    sends: HashMap<String, u32>,
    /// Connections accepted so far, with their open times.
    connections: Vec<Instant>,
    /// When each connection ended on the peer's side (its socket dropped), in order.
    ends: Vec<Instant>,
    /// Messages the current connection has been handed (index into `ids`).
    cursor: usize,
    /// When true, every connection is dropped right after its first message (a flapping peer;
    /// with nothing unACKed to send, a new message is appended for it).
    flap: bool,
    /// Bytes of padding in every message (to make storage grow).
    pad: usize,
}

struct Shared {
    ledger: Mutex<Ledger>,
    appended: Notify,
}

impl Shared {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running ledger peer; dropping it stops the server.
pub struct LedgerPeer {
    shared: Arc<Shared>,
    port: u16,
    _control: Control,
}

fn message(id: &str, n: usize, pad: usize) -> String {
    if pad == 0 {
        return json!({"type": "t", "id": id, "n": n}).to_string();
    }
    json!({"type": "t", "id": id, "n": n, "pad": "x".repeat(pad)}).to_string()
}

impl LedgerPeer {
    /// Starts the peer on a random loopback port.
    pub fn start() -> LedgerPeer {
        let shared = Arc::new(Shared {
            ledger: Mutex::new(Ledger::default()),
            appended: Notify::new(),
        });
        let (listener, port) = bind_local("ledger peer");
        let server = shared.clone();
        let (control, _) =
            spawn_runtime_thread("ledger peer", "ledger-peer".into(), move || async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                accept_loop(listener, move |stream| serve(server.clone(), stream)).await;
            });
        LedgerPeer {
            shared,
            port,
            _control: control,
        }
    }

    /// The loopback port the peer listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL a source connects to.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/feed", self.port)
    }

    /// Appends `n` messages with ids `<prefix><i>`; they go out to the connected client.
    pub fn append(&self, prefix: &str, n: usize) {
        {
            let mut ledger = self.shared.ledger();
            for i in 0..n {
                ledger.ids.push(format!("{prefix}{i}"));
            }
        }
        self.shared.appended.notify_waiters();
    }

    /// Appends `n` messages at `per_second` in the background (a steady stream).
    pub fn append_paced(&self, prefix: &str, n: usize, per_second: f64) {
        let shared = self.shared.clone();
        let prefix = prefix.to_owned();
        std::thread::spawn(move || {
            let period = Duration::from_secs_f64(1.0 / per_second);
            let start = Instant::now();
            for i in 0..n {
                let due = start + period.mul_f64(i as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                shared.ledger().ids.push(format!("{prefix}{i}"));
                shared.appended.notify_waiters();
            }
        });
    }

    /// Pad every message sent from now on with `bytes` of text.
    pub fn set_padding(&self, bytes: usize) {
        self.shared.ledger().pad = bytes;
    }

    /// Drop every connection right after its first message from now on.
    pub fn set_flapping(&self, flap: bool) {
        self.shared.ledger().flap = flap;
    }

    /// Messages in the ledger.
    pub fn len(&self) -> usize {
        self.shared.ledger().ids.len()
    }

    /// Messages not ACKed yet.
    pub fn unacked(&self) -> usize {
        let ledger = self.shared.ledger();
        ledger
            .ids
            .iter()
            .filter(|id| !ledger.acked.contains_key(*id))
            .count()
    }

    /// Distinct messages ACKed.
    pub fn acked(&self) -> usize {
        self.shared.ledger().acked.len()
    }

    /// The first ACK received at or after `at`, if any.
    pub fn first_ack_after(&self, at: Instant) -> Option<Instant> {
        self.shared
            .ledger()
            .acked
            .values()
            .filter(|t| **t >= at)
            .min()
            .copied()
    }

    /// Messages written more than once (redelivered).
    pub fn redelivered(&self) -> usize {
        self.shared
            .ledger()
            .sends
            .values()
            .filter(|n| **n > 1)
            .count()
    }

    /// Connections accepted so far, with their open times.
    pub fn connections(&self) -> Vec<Instant> {
        self.shared.ledger().connections.clone()
    }

    /// When connections ended on the peer's side (dropped by a flapping peer, or closed by the
    /// client), in order.
    pub fn ends(&self) -> Vec<Instant> {
        self.shared.ledger().ends.clone()
    }

    /// Waits until `cond` holds (checked every 20 ms) or `timeout` passes.
    pub async fn wait_until(&self, timeout: Duration, cond: impl Fn(&LedgerPeer) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if cond(self) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cond(self)
    }
}

/// One connection: redeliver what is unACKed, then follow the ledger; read ACKs meanwhile.
async fn serve(shared: Arc<Shared>, stream: tokio::net::TcpStream) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let flap = {
        let mut ledger = shared.ledger();
        ledger.connections.push(Instant::now());
        ledger.cursor = 0;
        if ledger.flap && ledger.ids.iter().all(|id| ledger.acked.contains_key(id)) {
            let id = format!("flap{}", ledger.connections.len());
            ledger.ids.push(id);
        }
        ledger.flap
    };
    let reader = {
        let shared = shared.clone();
        async move {
            while let Some(Ok(frame)) = source.next().await {
                if let Message::Text(text) = frame
                    && let Ok(ack) = serde_json::from_str::<Value>(&text)
                    && let Some(id) = ack["ack"].as_str()
                {
                    shared
                        .ledger()
                        .acked
                        .entry(id.to_owned())
                        .or_insert_with(Instant::now);
                }
            }
        }
    };
    let writer = async {
        let mut sent: HashSet<String> = HashSet::new();
        loop {
            let notified = shared.appended.notified();
            let (batch, pad): (Vec<(String, usize)>, usize) = {
                let mut ledger = shared.ledger();
                let batch: Vec<(String, usize)> = ledger
                    .ids
                    .iter()
                    .enumerate()
                    .skip(ledger.cursor)
                    .filter(|(_, id)| !ledger.acked.contains_key(*id) && !sent.contains(*id))
                    .map(|(n, id)| (id.clone(), n))
                    .collect();
                ledger.cursor = ledger.ids.len();
                for (id, _) in &batch {
                    *ledger.sends.entry(id.clone()).or_insert(0) += 1;
                }
                (batch, ledger.pad)
            };
            for (id, n) in batch {
                if sink
                    .send(Message::text(message(&id, n, pad)))
                    .await
                    .is_err()
                {
                    return;
                }
                sent.insert(id);
                if flap {
                    return;
                }
            }
            notified.await;
        }
    };
    tokio::select! {
        () = reader => {}
        () = writer => {}
    }
    shared.ledger().ends.push(Instant::now());
}
