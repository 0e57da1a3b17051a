//! What every source actor shares: storage, the dispatch pool, the network policy, the TLS
//! configuration, the ordered status writer, the publisher and the connect pacer.

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::dispatch::DispatchPool;
use super::inbox::{SharedInbox, WriterCtx};
use super::publisher::Publisher;
use super::rate_limit::{ConnectPacer, PacingRates};
use crate::config::Settings;
use crate::db::status::{self, StateRecord};
use crate::metrics::Metrics;
use crate::netpolicy::NetworkPolicy;
use anyhow::Context as _;
use std::time::Duration;

/// Shared, read-only context of the source actors.
pub struct SourceRuntime {
    /// The connection pool.
    pub db: DatabaseConnection,
    /// Where committed events go.
    pub dispatch: DispatchPool,
    /// Outbound destinations allowed.
    pub policy: NetworkPolicy,
    /// Trusted roots and the shared client configuration for `wss://` and `https://`.
    pub tls: crate::tls::TlsContext,
    /// Writes state transitions and counters (coalesced per source).
    pub status: StatusWriter,
    /// Time between two `apps.connections.open` calls of one Slack source at the steady rate.
    pub slack_open_interval: std::time::Duration,
    /// The application's metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Live observers (state changes, received events).
    pub publisher: Publisher,
    /// How long a connection the peer asked to refresh keeps serving, once its replacement is
    /// ready, while waiting for the peer to close it.
    pub refresh_grace: std::time::Duration,
    /// The shared inbox writers every connection hands its messages to.
    pub inbox: super::inbox::SharedInbox,
    /// Connect pacing per destination host under the global cap, shared by every source actor.
    pub connects: std::sync::Mutex<ConnectPacer>,
    /// Whether sources run only where this replica holds their lease (several replicas on one
    /// PostgreSQL) instead of all of them.
    pub clustered: bool,
}

impl SourceRuntime {
    /// What every source actor shares, with the shared inbox writers started.
    pub fn build(
        settings: &Settings,
        db: &DatabaseConnection,
        dispatch: DispatchPool,
        publisher: Publisher,
        metrics: Arc<Metrics>,
        epochs: super::epochs::Epochs,
    ) -> anyhow::Result<Arc<SourceRuntime>> {
        let inbox = SharedInbox::start(WriterCtx {
            db: db.clone(),
            dispatch: dispatch.clone(),
            metrics: metrics.clone(),
            publisher: publisher.clone(),
        });
        Ok(Arc::new(SourceRuntime {
            db: db.clone(),
            dispatch: dispatch.clone(),
            policy: NetworkPolicy {
                allow_private: settings.allow_private_networks,
            },
            tls: crate::tls::TlsContext::new(crate::tls::load_roots(settings)?)
                .context("building the TLS client configuration")?,
            status: StatusWriter::start(db.clone(), epochs.clone()),
            publisher,
            slack_open_interval: Duration::from_secs_f64(1.0 / settings.slack_opens_per_second),
            metrics,
            refresh_grace: Duration::from_secs(settings.refresh_grace_s),
            inbox,
            connects: std::sync::Mutex::new(ConnectPacer::new(PacingRates {
                per_host: settings.connects_per_second_per_host,
                global: settings.connects_per_second,
            })),
            clustered: settings.cluster,
        }))
    }

    /// Admits a booked connect to `host` about to start at `now`: zero when it may start now,
    /// else how long to wait before asking again ([`ConnectPacer::admit`]).
    pub fn admit_connect(&self, host: &str, now: std::time::Instant) -> std::time::Duration {
        self.connects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .admit(host, now)
    }

    /// Books one connect to `host` at `now` under its host's rate and the global cap; answers how
    /// long to wait first.
    pub fn reserve_connect(&self, host: &str, now: std::time::Instant) -> std::time::Duration {
        self.connects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .reserve(host, now)
    }
}

/// What the status writer persists.
pub enum StatusWrite {
    /// A state transition.
    State(Uuid, StateRecord),
    /// Counters and last event time.
    Counters(
        Uuid,
        serde_json::Value,
        Option<chrono::DateTime<chrono::Utc>>,
    ),
    /// Answered once every write queued before it is written (see [`StatusWriter::flushed`]).
    Flushed(tokio::sync::oneshot::Sender<()>),
}

/// Persists status writes off the actors' paths. Whatever is queued when the writer comes round
/// is taken at once and coalesced per source (the last state, the last counters, the latest
/// event time), states are written one by one (they are rare), and every source's counters in one
/// statement. A write that fails is logged and skipped: status is advisory, the next transition
/// or flush overwrites it.
#[derive(Clone)]
pub struct StatusWriter {
    tx: mpsc::UnboundedSender<StatusWrite>,
}

/// Most writes taken at once.
const STATUS_BATCH: usize = 10_000;

impl StatusWriter {
    /// Starts the writer task on the current arbiter; every write carries its source's fencing
    /// epoch from `epochs`.
    pub fn start(db: DatabaseConnection, epochs: super::epochs::Epochs) -> StatusWriter {
        let (tx, mut rx) = mpsc::unbounded_channel::<StatusWrite>();
        actix::spawn(async move {
            let mut taken = Vec::new();
            while rx.recv_many(&mut taken, STATUS_BATCH).await > 0 {
                let (states, counters, flushed) = coalesce(taken.drain(..));
                for (id, record) in states {
                    // In line with the inbox and dispatch writers for SQLite's write lock.
                    let epoch = epochs.get(id);
                    let written =
                        crate::db::gated(&db, status::write_state(&db, id, record, epoch));
                    if let Err(err) = written.await {
                        tracing::warn!(error = %err, "status write failed");
                    }
                }
                // A chunk per turn of SQLite's write lock, so the inbox writers get theirs in
                // between (five thousand sources' counters at once would hold it for 100+ ms).
                for chunk in counters.chunks(status::COUNTERS_CHUNK) {
                    let epoch_of = |id: Uuid| epochs.get(id);
                    let written =
                        crate::db::gated(&db, status::write_counters_batch(&db, chunk, &epoch_of));
                    if let Err(err) = written.await {
                        tracing::warn!(error = %err, sources = chunk.len(), "status counters write failed");
                    }
                }
                for waiter in flushed {
                    let _ = waiter.send(());
                }
            }
        });
        StatusWriter { tx }
    }

    /// Resolves once every write queued before this call is written (or failed and was logged);
    /// at once when the writer is gone. The application awaits it before the process ends.
    pub async fn flushed(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(StatusWrite::Flushed(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Queues a write.
    pub fn write(&self, write: StatusWrite) {
        let _ = self.tx.send(write);
    }
}

/// What a batch of status writes comes to: per source its last state and last counters.
type Coalesced = (
    Vec<(Uuid, StateRecord)>,
    Vec<status::CountersWrite>,
    Vec<tokio::sync::oneshot::Sender<()>>,
);

/// Per source, the last state and the last counters of `writes` (in the order each source first
/// appeared), with the latest event time any of its counter writes carried; and the flush waiters
/// to answer once they are written.
fn coalesce(writes: impl Iterator<Item = StatusWrite>) -> Coalesced {
    let mut flushed = Vec::new();
    let mut states: Vec<(Uuid, StateRecord)> = Vec::new();
    let mut counters: Vec<status::CountersWrite> = Vec::new();
    let mut state_at: std::collections::HashMap<Uuid, usize> = std::collections::HashMap::new();
    let mut counters_at: std::collections::HashMap<Uuid, usize> = std::collections::HashMap::new();
    for write in writes {
        match write {
            StatusWrite::State(id, record) => match state_at.get(&id) {
                Some(&i) => states[i].1 = record,
                None => {
                    state_at.insert(id, states.len());
                    states.push((id, record));
                }
            },
            StatusWrite::Counters(id, values, at) => match counters_at.get(&id) {
                Some(&i) => {
                    let earlier = counters[i].2;
                    counters[i] = (id, values, at.max(earlier));
                }
                None => {
                    counters_at.insert(id, counters.len());
                    counters.push((id, values, at));
                }
            },
            StatusWrite::Flushed(waiter) => flushed.push(waiter),
        }
    }
    (states, counters, flushed)
}

#[cfg(test)]
mod coalesce_tests {
    use super::*;

    fn record(state: &str) -> StateRecord {
        StateRecord {
            state: state.to_owned(),
            detail: None,
            connected_at: None,
            next_retry_at: None,
            consecutive_failures: 0,
        }
    }

    #[test]
    fn the_last_write_of_each_source_wins_and_event_times_only_move_forward() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let t1 = chrono::Utc::now();
        let t2 = t1 + chrono::Duration::seconds(1);
        let writes = vec![
            StatusWrite::State(a, record("connecting")),
            StatusWrite::Counters(a, serde_json::json!({"n": 1}), Some(t2)),
            StatusWrite::State(b, record("connecting")),
            StatusWrite::State(a, record("connected")),
            StatusWrite::Counters(a, serde_json::json!({"n": 2}), None),
            StatusWrite::Counters(b, serde_json::json!({"n": 5}), Some(t1)),
        ];
        let (tx, _rx) = tokio::sync::oneshot::channel();
        let mut writes = writes;
        writes.push(StatusWrite::Flushed(tx));
        let (states, counters, flushed) = coalesce(writes.into_iter());
        assert_eq!(flushed.len(), 1);
        assert_eq!(
            states,
            vec![(a, record("connected")), (b, record("connecting"))]
        );
        assert_eq!(
            counters,
            vec![
                (a, serde_json::json!({"n": 2}), Some(t2)),
                (b, serde_json::json!({"n": 5}), Some(t1))
            ]
        );
    }
}
