//! Several replicas on one PostgreSQL (`SWITCHBOARD_CLUSTER=true`; docs/architecture.md,
//! "Replicas"). Each replica registers itself and holds sources through leases with a fencing
//! epoch ([`crate::db::cluster`]); its [`coordinator`] keeps the sources spread evenly and moves
//! them make-before-break; its [`listener`] follows the other replicas through PostgreSQL
//! `LISTEN/NOTIFY` (source changes, operator commands, new runs); [`relay`] carries a command to
//! the replica that holds its source. On a single node (SQLite, or PostgreSQL without the
//! setting) nothing here runs: every source is this process's and it is always the leader.

pub mod balance;
pub mod coordinator;
pub mod listener;
pub mod relay;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::Notify;
use uuid::Uuid;

pub use crate::actors::epochs::Epochs;

use crate::db::cluster as db_cluster;

/// The channel a committed source change is announced on (payload: the source's id).
pub const SOURCES_CHANNEL: &str = "switchboard_sources";
/// The channel a committed automation change is announced on (payload: the automation's id).
pub const AUTOMATIONS_CHANNEL: &str = "switchboard_automations";
/// The channel live-stream messages are relayed on (payload: a JSON array of messages, or
/// `@<id>` of a row of `stream_relay` when they do not fit).
pub const STREAM_CHANNEL: &str = "switchboard_stream";
/// The channel new claimable runs are announced on (no payload).
pub const RUNS_CHANNEL: &str = "switchboard_runs";

/// What the coordinator shares with the rest of the replica.
#[derive(Debug)]
pub struct ClusterShared {
    /// Whether replicas coordinate at all.
    pub enabled: bool,
    /// This replica's id (new at every start).
    pub replica_id: Uuid,
    /// Where this replica serves its API (shown by `GET /v1/cluster`).
    pub address: String,
    /// How long a lease lasts without renewal.
    pub lease: Duration,
    /// Most sources taken over from one replica per turn.
    pub handover_batch: i64,
    /// The sources held here with their epochs.
    pub epochs: Epochs,
    /// Whether this replica runs the once-per-cluster upkeep.
    pub leader: AtomicBool,
    /// Set when the replica starts handing its sources over before it stops.
    pub draining: AtomicBool,
    /// Set while the process stops its sources after draining: the coordinator only renews (no
    /// hand-over is confirmed while connections are still closing).
    pub stopping: AtomicBool,
    /// Set once nothing runs here any more while draining (or nobody could take over).
    pub drained_flag: AtomicBool,
    /// Woken when `drained_flag` is set.
    pub drained: Notify,
    /// Live-stream subscribers in this replica (reported with the heartbeat).
    pub local_streams: std::sync::atomic::AtomicUsize,
    /// Whether another replica serves live-stream clients (this one then relays what it
    /// publishes).
    pub others_streaming: AtomicBool,
    /// Set when the replica left: the coordinator stops.
    pub left: AtomicBool,
    /// Raised when a source changed: the coordinator takes new sources before its next turn.
    pub nudge: Notify,
    /// Raised by `POST /v1/cluster/drain`: the process hands its sources over and stops.
    pub stop_requested: Notify,
    /// The coordinator's, the listener's and the announcer's tasks, stopped when the replica
    /// leaves (inside the runtime: their database connections must not outlive it).
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl ClusterShared {
    /// Registers a background task to stop when the replica leaves.
    pub fn track(&self, task: tokio::task::JoinHandle<()>) {
        self.tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(task);
    }

    /// The replica's state as the settings ask: clustered (`SWITCHBOARD_CLUSTER`) or a single
    /// node.
    pub fn for_settings(settings: &crate::config::Settings) -> ClusterShared {
        if !settings.cluster {
            return ClusterShared::single();
        }
        ClusterShared::new(
            true,
            settings.public_base_url(),
            Duration::from_secs_f64(settings.cluster_lease_s),
            i64::from(settings.cluster_handover_batch),
        )
    }

    /// A single node: no coordination, always the leader.
    pub fn single() -> ClusterShared {
        ClusterShared::new(false, String::new(), Duration::from_secs(10), 250)
    }

    /// A replica's shared cluster state.
    pub fn new(enabled: bool, address: String, lease: Duration, batch: i64) -> ClusterShared {
        ClusterShared {
            enabled,
            replica_id: Uuid::new_v4(),
            address,
            lease,
            handover_batch: batch,
            epochs: Epochs::default(),
            leader: AtomicBool::new(!enabled),
            draining: AtomicBool::new(false),
            drained_flag: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            drained: Notify::new(),
            local_streams: std::sync::atomic::AtomicUsize::new(0),
            others_streaming: AtomicBool::new(false),
            left: AtomicBool::new(false),
            stop_requested: Notify::new(),
            nudge: Notify::new(),
            tasks: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Whether this replica runs the cluster's once-only upkeep now (always on a single node).
    pub fn is_leader(&self) -> bool {
        !self.enabled || self.leader.load(Ordering::Acquire)
    }

    /// Whether a command for `source_id` is executed here (else it is relayed to its holder).
    pub fn runs_here(&self, source_id: Uuid) -> bool {
        !self.enabled || self.epochs.holds(source_id)
    }

    /// Nothing runs here any more while draining (or nothing can be handed over): the stop
    /// goes on.
    pub fn mark_drained(&self) {
        self.drained_flag.store(true, Ordering::Release);
        self.drained.notify_waiters();
    }

    /// Hands every source over to the other replicas (make-before-break) and waits until none
    /// runs here, at most `timeout`. At once on a single node or when no other replica is alive.
    pub async fn drain(&self, timeout: Duration) {
        if !self.enabled {
            return;
        }
        self.draining.store(true, Ordering::Release);
        let drained = async {
            while !self.drained_flag.load(Ordering::Acquire) {
                let woken = self.drained.notified();
                if self.drained_flag.load(Ordering::Acquire) {
                    break;
                }
                let _ = tokio::time::timeout(Duration::from_millis(200), woken).await;
            }
        };
        if tokio::time::timeout(timeout, drained).await.is_err() {
            tracing::warn!("not every source was handed over before the stop");
        }
    }

    /// Leaves the cluster once this replica's sources are closed: its remaining leases are let go
    /// (the others take them at their next turn) and its registration removed.
    pub async fn leave(&self, db: &DatabaseConnection) {
        if !self.enabled {
            return;
        }
        self.left.store(true, Ordering::Release);
        let tasks = std::mem::take(
            &mut *self
                .tasks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
        // Bounded: with the database gone the leases expire by themselves.
        let bound = Duration::from_secs(5);
        let released =
            tokio::time::timeout(bound, db_cluster::leases::release(db, self.replica_id));
        if !matches!(released.await, Ok(Ok(()))) {
            tracing::warn!("letting this replica's leases go failed; they expire");
        }
        let removed =
            tokio::time::timeout(bound, db_cluster::replicas::deregister(db, self.replica_id));
        if !matches!(removed.await, Ok(Ok(()))) {
            tracing::warn!("removing this replica's registration failed; it is forgotten later");
        }
    }

    /// The sources are about to be closed for the stop: from now on the coordinator only renews
    /// this replica's leases (it confirms no hand-over while connections are still closing).
    pub fn stop_coordinating(&self) {
        self.stopping.store(true, Ordering::Release);
    }
}

/// Announces a committed change of a source to every replica (a no-op on a single node).
pub async fn announce_source(db: &DatabaseConnection, shared: &ClusterShared, source_id: Uuid) {
    announce(db, shared, SOURCES_CHANNEL, source_id).await;
}

/// Announces a committed change of the row `id` on `channel` to every replica (a no-op on a
/// single node). The others also resynchronise by themselves, so a lost announcement only
/// delays the change.
pub async fn announce(db: &DatabaseConnection, shared: &ClusterShared, channel: &str, id: Uuid) {
    if !shared.enabled {
        return;
    }
    let stmt = sea_orm::Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        "SELECT pg_notify($1, $2)",
        vec![channel.into(), id.to_string().into()],
    );
    if let Err(err) = sea_orm::ConnectionTrait::execute_raw(db, stmt).await {
        tracing::warn!(error = %err, id = %id, channel, "announcing a change failed");
    }
}

/// Starts this replica's coordinator, its listener and the announcer of new runs to the other
/// replicas (on the current arbiter).
pub fn spawn(listener: listener::Listener, dispatch: crate::actors::dispatch::DispatchPool) {
    let coordinator = coordinator::Coordinator::new(
        listener.db.clone(),
        listener.shared.clone(),
        listener.supervisor.clone(),
        dispatch,
    );
    let shared = listener.shared.clone();
    let (db, notifier) = (listener.db.clone(), listener.notifier.clone());
    let coordinating = actix::spawn(coordinator.run());
    let listening = actix::spawn(listener.run());
    let announcing = actix::spawn(async move {
        loop {
            notifier.signalled().await;
            let stmt = sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                format!("SELECT pg_notify('{RUNS_CHANNEL}', '')"),
            );
            if let Err(err) = sea_orm::ConnectionTrait::execute_raw(&db, stmt).await {
                tracing::warn!(error = %err, "announcing new runs to the other replicas failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // At most 200 announcements a second: the signals raised meanwhile are one.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    for task in [coordinating, listening, announcing] {
        shared.track(task);
    }
}

/// This process's cluster state, after checking that it may start beside what else uses the
/// database ([`refuse_beside_replicas`]).
pub async fn join(
    settings: &crate::config::Settings,
    db: &DatabaseConnection,
) -> anyhow::Result<std::sync::Arc<ClusterShared>> {
    refuse_beside_replicas(settings, db).await?;
    Ok(std::sync::Arc::new(ClusterShared::for_settings(settings)))
}

/// A process without `SWITCHBOARD_CLUSTER` runs every source: it must not start on a PostgreSQL
/// database that replicas are using (each source would run twice).
pub async fn refuse_beside_replicas(
    settings: &crate::config::Settings,
    db: &DatabaseConnection,
) -> anyhow::Result<()> {
    if settings.cluster || settings.is_sqlite() {
        return Ok(());
    }
    let alive = db_cluster::replicas::alive(db, 3.0 * settings.cluster_lease_s)
        .await
        .map_err(|err| anyhow::anyhow!("reading the replica registry: {err}"))?;
    anyhow::ensure!(
        alive.is_empty(),
        "{} replica(s) with SWITCHBOARD_CLUSTER=true use this database; set SWITCHBOARD_CLUSTER=true \
         here too (without it this process would run every source a second time)",
        alive.len()
    );
    Ok(())
}
