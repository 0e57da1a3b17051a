//! The scheduler loop: once a second it looks at every enabled schedule automation (from the
//! automation registry) and stores the ticks that are due. A schedule seen for the first time
//! (after a start, or once created or changed) fires its latest missed tick when `catch_up` is
//! `latest`; afterwards each tick fires once it is due. Storing a tick is idempotent (its dedup
//! key), so restarts and replicas never create a second run for it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use crate::actors::registry::AutomationRegistry;
use crate::db;
use crate::metrics::Metrics;
use crate::queue::notifier::RunNotifier;
use crate::queue::schedule::catch_up_tick;

/// How often the scheduler looks.
pub const TICK: Duration = Duration::from_secs(1);

/// One schedule as the loop tracks it.
struct Tracked {
    /// The trigger's text and `updated_at` it was planned from (a change re-plans it).
    signature: String,
    /// The next tick to fire.
    next: Option<DateTime<Utc>>,
}

/// Starts the loop on the current actix system; answers its task.
pub fn spawn(
    db: DatabaseConnection,
    registry: Arc<AutomationRegistry>,
    notifier: RunNotifier,
    metrics: Arc<Metrics>,
    events_retention_days: u32,
) -> tokio::task::JoinHandle<()> {
    // A missed tick older than the events' retention is not caught up: its event (the proof it
    // already ran) may have been pruned.
    let max_catch_up = (events_retention_days > 0)
        .then(|| chrono::Duration::days(i64::from(events_retention_days)));
    actix::spawn(async move {
        let mut tracked: HashMap<Uuid, Tracked> = HashMap::new();
        let mut interval = tokio::time::interval(TICK);
        loop {
            interval.tick().await;
            round(
                &db,
                &registry,
                &notifier,
                &metrics,
                max_catch_up,
                &mut tracked,
            )
            .await;
        }
    })
}

async fn round(
    db: &DatabaseConnection,
    registry: &AutomationRegistry,
    notifier: &RunNotifier,
    metrics: &Metrics,
    max_catch_up: Option<chrono::Duration>,
    tracked: &mut HashMap<Uuid, Tracked>,
) {
    let info = registry.info();
    let now = db::now();
    tracked.retain(|id, _| info.get(id).is_some_and(|i| i.schedule.is_some()));
    for (id, automation) in info.iter() {
        let Some(schedule) = &automation.schedule else {
            continue;
        };
        let signature = automation.schedule_signature.clone();
        let due = match tracked.get_mut(id) {
            Some(t) if t.signature == signature => match t.next {
                Some(next) if next <= now => {
                    t.next = schedule.next_after(now);
                    // Several ticks passed at once (a stall): the latest one stands for them.
                    schedule.latest_until(now)
                }
                _ => None,
            },
            _ => {
                tracked.insert(
                    *id,
                    Tracked {
                        signature,
                        next: schedule.next_after(now),
                    },
                );
                catch_up_tick(schedule, automation.updated_at, now)
                    .filter(|t| max_catch_up.is_none_or(|age| *t > now - age))
            }
        };
        let Some(tick) = due else { continue };
        let payload = schedule.payload(*id, tick);
        match db::schedule::insert_tick(db, automation.org_id, *id, tick, payload).await {
            Ok(Some(run_id)) => {
                metrics.queue.schedule_ticks.inc();
                metrics.runs_created.inc();
                notifier.signal();
                tracing::debug!(automation_id = %id, %tick, %run_id, "schedule tick stored");
            }
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(automation_id = %id, %tick, error = %err, "storing a schedule tick failed; retrying");
                // Due again next round (whatever `catch_up` says: this tick came due while the
                // service ran); if more ticks pass meanwhile, the latest stands for them.
                if let Some(t) = tracked.get_mut(id) {
                    t.next = Some(tick);
                }
            }
        }
    }
}
