//! The background upkeep the application starts beside its actors: the run queue's (retention,
//! schedule ticks, the lease watchdog) and the sweep of undispatched events.

use std::sync::Arc;
use std::time::Duration;

use actix::Actor as _;
use sea_orm::DatabaseConnection;

use crate::actors::dispatch::DispatchPool;
use crate::actors::publisher::Publisher;
use crate::actors::registry::AutomationRegistry;
use crate::actors::run_queue::watchdog::Watchdog;
use crate::cluster::ClusterShared;
use crate::config::Settings;
use crate::db;
use crate::metrics::Metrics;
use crate::queue::notifier::RunNotifier;

/// The run queue's background work: retention, schedule ticks and the lease watchdog.
pub fn spawn_queue_upkeep(
    settings: &Settings,
    db: &DatabaseConnection,
    registry: &Arc<AutomationRegistry>,
    notifier: &RunNotifier,
    metrics: &Arc<Metrics>,
    publisher: &Publisher,
    cluster: &Arc<ClusterShared>,
) {
    let leadership = cluster.clone();
    crate::queue::retention::spawn(
        db.clone(),
        move || leadership.is_leader(),
        settings.retention_events_days,
        settings.retention_runs_days,
    );
    crate::actors::run_queue::scheduler::spawn(
        db.clone(),
        registry.clone(),
        notifier.clone(),
        metrics.clone(),
        settings.retention_events_days,
    );
    Watchdog::new(
        db.clone(),
        registry.clone(),
        notifier.clone(),
        metrics.clone(),
        publisher.clone(),
    )
    .start();
}

/// Background upkeep: sweep events left undispatched for over a minute (a crash between commit
/// and dispatch), on the cluster's leader only (dispatch is exactly once either way: unique
/// indexes). The automation indexer resynchronises itself (changes made through other replicas)
/// on its own arbiter.
pub fn spawn_maintenance(
    db: DatabaseConnection,
    dispatch: DispatchPool,
    cluster: Arc<ClusterShared>,
) {
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
    });
}
