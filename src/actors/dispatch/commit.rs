//! Committing a dispatched batch (retrying while storage fails) and its metrics.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::CommitSignal;
use crate::db::inbox::{self, DispatchRecord};
use crate::metrics::Metrics;

/// Dispatch metrics of one committed batch: its size, the commit's latency, the runs created and,
/// for each event that created runs, the time from its arrival to now.
pub(super) fn observe_commit(
    metrics: &Metrics,
    took: Duration,
    received: &[(DateTime<Utc>, bool)],
    created: usize,
) {
    metrics.db_write("dispatch", took);
    metrics.dispatch_batch.observe(received.len() as f64);
    metrics.runs_created.inc_by(created as u64);
    let now = Utc::now();
    for (at, has_runs) in received {
        if *has_runs {
            let latency = (now - *at).to_std().unwrap_or_default();
            metrics.ingest_to_run.observe(latency.as_secs_f64());
        }
    }
}

/// Commits, retrying with capped backoff while storage fails: the events stay undispatched in
/// storage meanwhile, so even a crash here loses nothing (recovery dispatches them).
pub(super) async fn commit_with_retry(
    db: &DatabaseConnection,
    records: Vec<DispatchRecord>,
    previous: Option<CommitSignal>,
) -> Vec<Uuid> {
    let mut delay = Duration::from_millis(100);
    loop {
        let previous = previous.clone();
        let after = async move {
            if let Some(previous) = previous {
                // An error means the earlier batch was abandoned: nothing left to wait for.
                let _ = previous.await;
            }
        };
        match inbox::commit_dispatch_after(db, &records, after).await {
            Ok(created) => {
                tracing::debug!(events = records.len(), runs = created.len(), "dispatched");
                return created;
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "dispatch commit failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}
