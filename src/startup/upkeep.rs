//! The background upkeep the application starts beside its actors: the run queue's (retention,
//! schedule ticks, the lease watchdog) and the sweep of undispatched events.

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor as _, Addr};
use sea_orm::DatabaseConnection;

use crate::actors::dispatch::DispatchPool;
use crate::actors::publisher::Publisher;
use crate::actors::registry::AutomationRegistry;
use crate::actors::run_queue::watchdog::{Stop, Watchdog};
use crate::cluster::ClusterShared;
use crate::config::Settings;
use crate::db;
use crate::metrics::Metrics;
use crate::queue::notifier::RunNotifier;

/// The background upkeep's loops and the watchdog (all on the system arbiter), stopped as the
/// application stops: a database call cut off by the runtime going away panics in the driver (it
/// returns its connection to the pool on a runtime that is gone), so each is stopped while the
/// runtime still runs. Work on other arbiters (the dispatch actors, the automation indexer) is
/// not covered here.
pub struct Upkeep {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    watchdog: Addr<Watchdog>,
}

impl Upkeep {
    /// Stops every loop (a database call in flight is dropped; its transaction's rollback runs as
    /// the connection goes back to the pool) and the watchdog; returns once they are gone.
    pub async fn stop(self) {
        let _ = self.watchdog.send(Stop).await;
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
    }

    /// Adds a loop to stop with the others.
    pub fn add(&mut self, task: tokio::task::JoinHandle<()>) {
        self.tasks.push(task);
    }
}

/// The run queue's background work: retention, schedule ticks and the lease watchdog.
pub fn spawn_queue_upkeep(
    settings: &Settings,
    db: &DatabaseConnection,
    registry: &Arc<AutomationRegistry>,
    notifier: &RunNotifier,
    metrics: &Arc<Metrics>,
    publisher: &Publisher,
    cluster: &Arc<ClusterShared>,
) -> Upkeep {
    let leadership = cluster.clone();
    let retention = crate::queue::retention::spawn(
        db.clone(),
        move || leadership.is_leader(),
        settings.retention_events_days,
        settings.retention_runs_days,
    );
    let scheduler = crate::actors::run_queue::scheduler::spawn(
        db.clone(),
        registry.clone(),
        notifier.clone(),
        metrics.clone(),
        settings.retention_events_days,
    );
    let watchdog = Watchdog::new(
        db.clone(),
        registry.clone(),
        notifier.clone(),
        metrics.clone(),
        publisher.clone(),
    )
    .start();
    Upkeep {
        tasks: retention.into_iter().chain([scheduler]).collect(),
        watchdog,
    }
}

/// Background upkeep: sweep events left undispatched for over a minute (a crash between commit
/// and dispatch), on the cluster's leader only (dispatch is exactly once either way: unique
/// indexes). The automation indexer resynchronises itself (changes made through other replicas)
/// on its own arbiter. Answers the sweep's task.
pub fn spawn_maintenance(
    db: &DatabaseConnection,
    dispatch: &DispatchPool,
    cluster: &Arc<ClusterShared>,
) -> tokio::task::JoinHandle<()> {
    let (db, dispatch, cluster) = (db.clone(), dispatch.clone(), cluster.clone());
    actix::spawn(async move {
        let period = Duration::from_secs(60);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tick.tick().await;
            if !cluster.is_leader() {
                continue;
            }
            let cutoff = db::now() - chrono::Duration::seconds(60);
            if let Err(err) = dispatch.recover(&db, Some(cutoff), None).await {
                tracing::warn!(error = %err, "sweeping undispatched events failed");
            }
        }
    })
}
