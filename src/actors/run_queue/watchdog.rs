//! The watchdog: every [`TICK`] it looks for RUNNING runs whose lease expired (through the
//! partial index on `lease_expires_at`, in batches of [`BATCH`]) and counts each as a failed
//! attempt (`lease expired`): back to PENDING after the automation's backoff while attempts are
//! left, else FAILED. A worker that heartbeats or finishes first keeps its run (the update is
//! fenced by the lease token and the expiry). Runs expire within a tick of their expiry.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use sea_orm::DatabaseConnection;

use crate::actors::publisher::{Published, Publisher, RunChange};
use crate::actors::registry::AutomationRegistry;
use crate::db;
use crate::db::statuses::RunStatus;
use crate::metrics::Metrics;
use crate::queue::lifecycle::{self, AfterFailure};
use crate::queue::notifier::RunNotifier;

/// How often the watchdog looks.
pub const TICK: Duration = Duration::from_millis(500);
/// Runs handled per transaction.
pub const BATCH: u64 = 500;

/// The watchdog actor.
pub struct Watchdog {
    db: DatabaseConnection,
    registry: Arc<AutomationRegistry>,
    notifier: RunNotifier,
    metrics: Arc<Metrics>,
    publisher: Publisher,
    busy: bool,
}

impl Watchdog {
    /// A watchdog over `db` (start it with `Actor::start`).
    pub fn new(
        db: DatabaseConnection,
        registry: Arc<AutomationRegistry>,
        notifier: RunNotifier,
        metrics: Arc<Metrics>,
        publisher: Publisher,
    ) -> Watchdog {
        Watchdog {
            db,
            registry,
            notifier,
            metrics,
            publisher,
            busy: false,
        }
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        self.busy = true;
        let (db, registry) = (self.db.clone(), self.registry.clone());
        let (notifier, metrics, publisher) = (
            self.notifier.clone(),
            self.metrics.clone(),
            self.publisher.clone(),
        );
        ctx.spawn(
            async move {
                let mut total = 0usize;
                loop {
                    match expire_batch(&db, &registry, &metrics, &publisher).await {
                        Ok(found) => {
                            total += found;
                            // Re-queued runs, and slots of capped automations freed by
                            // runs that failed for good: claims may take runs.
                            if found > 0 {
                                notifier.signal();
                            }
                            if (found as u64) < BATCH {
                                break;
                            }
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "re-queueing expired leases failed; retrying");
                            break;
                        }
                    }
                }
                total
            }
            .into_actor(self)
            .map(|total, act, _| {
                act.busy = false;
                if total > 0 {
                    tracing::info!(runs = total, "expired leases handled");
                }
            }),
        );
    }
}

/// One batch: returns how many expired runs were found.
async fn expire_batch(
    db: &DatabaseConnection,
    registry: &AutomationRegistry,
    metrics: &Metrics,
    publisher: &Publisher,
) -> Result<usize, sea_orm::DbErr> {
    let now = db::now();
    let rows = db::queue::expired_leases(db, now, BATCH).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let items: Vec<db::queue::Expiry> = rows
        .iter()
        .map(|row| expiry_of(registry, row, now))
        .collect();
    let changed = db::queue::expire(db, &items, now).await?;
    let changed: std::collections::HashSet<_> = changed.into_iter().collect();
    for (row, item) in rows.iter().zip(&items) {
        if !changed.contains(&item.id) {
            continue;
        }
        metrics.queue.lease_expiries.inc();
        let status = if item.retry_at.is_some() {
            RunStatus::Pending
        } else {
            RunStatus::Failed
        };
        // An attempt that ended (counts the retry too when the run goes back to PENDING).
        metrics.queue.observe_finish(status, Some(row));
        tracing::debug!(run_id = %row.id, attempt = row.attempts, requeued = item.retry_at.is_some(), "lease expired");
        if publisher.has_subscribers() {
            let error = Some(crate::queue::lifecycle::LEASE_EXPIRED_ERROR.to_owned());
            publisher.publish(Published::run_changed(
                RunChange::Expired,
                row,
                status,
                error,
            ));
        }
    }
    Ok(rows.len())
}

/// What becomes of `row`, whose lease expired: an expiry counts as a failed attempt, so it is
/// retried after the backoff while attempts are left, else failed.
fn expiry_of(
    registry: &AutomationRegistry,
    row: &entity::automation_run::Model,
    now: chrono::DateTime<chrono::Utc>,
) -> db::queue::Expiry {
    let policy = registry.policy(row.automation_id);
    let attempt = u32::try_from(row.attempts).unwrap_or(0);
    let retry_at =
        match lifecycle::after_failure(&policy, attempt, true, None, rand::random::<f64>()) {
            AfterFailure::Retry { delay } => {
                Some(now + chrono::Duration::from_std(delay).unwrap_or_default())
            }
            AfterFailure::Fail => None,
        };
    db::queue::Expiry {
        id: row.id,
        token: row.lease_token.clone(),
        retry_at,
    }
}

impl Actor for Watchdog {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(TICK, |act, ctx| act.sweep(ctx));
    }
}

/// Stops the watchdog, dropping a sweep in flight while the runtime still runs. Sent by the
/// application as it stops (`Upkeep::stop` in `startup::upkeep`); answers nothing.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

impl Handler<Stop> for Watchdog {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
