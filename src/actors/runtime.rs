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
    /// Ordered writer of state transitions.
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
}

impl SourceRuntime {
    /// What every source actor shares, with the shared inbox writers started.
    pub fn build(
        settings: &Settings,
        db: &DatabaseConnection,
        dispatch: DispatchPool,
        publisher: Publisher,
        metrics: Arc<Metrics>,
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
            status: StatusWriter::start(db.clone()),
            publisher,
            slack_open_interval: Duration::from_secs_f64(1.0 / settings.slack_opens_per_second),
            metrics,
            refresh_grace: Duration::from_secs(settings.refresh_grace_s),
            inbox,
            connects: std::sync::Mutex::new(ConnectPacer::new(PacingRates {
                per_host: settings.connects_per_second_per_host,
                global: settings.connects_per_second,
            })),
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
}

/// Persists status writes in the order they were made, off the actors' paths. A write that fails
/// is logged and skipped: status is advisory, the next transition or flush overwrites it.
#[derive(Clone)]
pub struct StatusWriter {
    tx: mpsc::UnboundedSender<StatusWrite>,
}

impl StatusWriter {
    /// Starts the writer task on the current arbiter.
    pub fn start(db: DatabaseConnection) -> StatusWriter {
        let (tx, mut rx) = mpsc::unbounded_channel::<StatusWrite>();
        actix::spawn(async move {
            while let Some(write) = rx.recv().await {
                // In line with the inbox and dispatch writers for SQLite's write lock.
                let result = match write {
                    StatusWrite::State(id, record) => {
                        crate::db::gated(&db, status::write_state(&db, id, record)).await
                    }
                    StatusWrite::Counters(id, counters, at) => {
                        crate::db::gated(&db, status::write_counters(&db, id, counters, at)).await
                    }
                };
                if let Err(err) = result {
                    tracing::warn!(error = %err, "status write failed");
                }
            }
        });
        StatusWriter { tx }
    }

    /// Queues a write.
    pub fn write(&self, write: StatusWrite) {
        let _ = self.tx.send(write);
    }
}
