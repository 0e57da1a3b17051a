//! The retention loop: every [`EVERY`] it deletes finished runs older than
//! `SWITCHBOARD_RETENTION_RUNS_DAYS` and events older than `SWITCHBOARD_RETENTION_EVENTS_DAYS`
//! (0: keep forever), [`BATCH`] rows per statement with a pause between batches, so ingest and
//! claims never wait long behind it. An event is kept while any of its runs is not finished.

use std::time::Duration;

use sea_orm::DatabaseConnection;

use crate::db;

/// How often the loop runs (its first pass comes [`FIRST_PASS`] after start).
pub const EVERY: Duration = Duration::from_secs(60);
/// Delay of the first pass.
pub const FIRST_PASS: Duration = Duration::from_secs(1);
/// Rows deleted per statement.
pub const BATCH: u64 = 500;
/// Pause between two batches.
const PAUSE: Duration = Duration::from_millis(50);

/// Starts the loop on the current actix system (nothing when both retentions are 0); it prunes
/// only while `is_leader` says so (with replicas, one of them prunes). Answers the loop's task.
pub fn spawn(
    db: DatabaseConnection,
    is_leader: impl Fn() -> bool + 'static,
    events_days: u32,
    runs_days: u32,
) -> Option<tokio::task::JoinHandle<()>> {
    if events_days == 0 && runs_days == 0 {
        return None;
    }
    Some(actix::spawn(async move {
        tokio::time::sleep(FIRST_PASS).await;
        loop {
            // With replicas, the leader prunes (pruning twice at once would only cost twice).
            if !is_leader() {
                tokio::time::sleep(EVERY).await;
                continue;
            }
            if runs_days > 0 {
                drain("runs", || {
                    let cutoff = db::now() - chrono::Duration::days(i64::from(runs_days));
                    db::retention::prune_runs(&db, cutoff, BATCH)
                })
                .await;
            }
            if events_days > 0 {
                drain("events", || {
                    let cutoff = db::now() - chrono::Duration::days(i64::from(events_days));
                    db::retention::prune_events(&db, cutoff, BATCH)
                })
                .await;
            }
            tokio::time::sleep(EVERY).await;
        }
    }))
}

/// Runs `batch` until it deletes less than a full batch.
async fn drain<F, Fut>(what: &str, mut batch: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, sea_orm::DbErr>>,
{
    let mut total = 0;
    loop {
        match batch().await {
            Ok(n) => {
                total += n;
                if n < BATCH {
                    break;
                }
                tokio::time::sleep(PAUSE).await;
            }
            Err(err) => {
                tracing::warn!(what, error = %err, "retention pruning failed; retrying later");
                break;
            }
        }
    }
    if total > 0 {
        tracing::info!(what, rows = total, "retention pruned");
    }
}
