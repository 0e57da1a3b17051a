//! Matching at the inbox: an inbox writer matches its batch against the automation index before
//! it stores it, so that the events and their runs commit in one transaction (see
//! `db::inbox::insert_matched`), then tells claims, metrics and live observers what that commit
//! created, as a dispatch actor does after its own commits.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::PendingEvent;
use super::decide::{decide, observed_dispatches, observed_runs, publish_created};
use crate::actors::publisher::{Published, Publisher};
use crate::actors::registry::AutomationRegistry;
use crate::db::inbox::RowOutcome;
use crate::db::statuses::EventStatus;
use crate::metrics::Metrics;
use crate::queue::notifier::RunNotifier;

/// What matching needs and what it tells (cheap to clone; one per dispatch pool).
#[derive(Clone)]
pub struct Matcher {
    pub(super) registry: Arc<AutomationRegistry>,
    pub(super) publisher: Publisher,
    pub(super) metrics: Arc<Metrics>,
    pub(super) notifier: RunNotifier,
}

/// A batch matched before its commit.
pub struct Matched {
    /// Per row, the runs to create should the row be stored.
    pub runs: Vec<Vec<entity::automation_run::Model>>,
    /// Per matched row: its event id, when it was received, and whether it makes runs.
    received: Vec<(Uuid, DateTime<Utc>, bool)>,
    /// The runs with what they carry, for live observers (empty without subscribers).
    observed: Vec<(entity::automation_run::Model, Arc<serde_json::Value>)>,
    /// The `event.dispatched` message of each matched row (empty without subscribers).
    dispatched: Vec<(Uuid, Published)>,
}

impl Matcher {
    /// The wake-up of waiting claims (and ingest's priority over them).
    pub fn notifier(&self) -> &RunNotifier {
        &self.notifier
    }

    /// Matches every row not settled yet (`dispatched_at` unset) and marks it dispatched in
    /// place, with its outcome: the rows are then stored as they will stay.
    pub fn prepare(&self, rows: &mut [entity::event::Model]) -> Matched {
        let (at, batch): (Vec<usize>, Vec<PendingEvent>) = rows
            .iter()
            .enumerate()
            .filter(|(_, row)| row.dispatched_at.is_none())
            .map(|(i, row)| (i, pending(row)))
            .unzip();
        let records = decide(&self.registry, &batch);
        let (observed, dispatched) = if self.publisher.has_subscribers() {
            let dispatched = observed_dispatches(&records, &batch);
            let ids = batch.iter().map(|e| e.id);
            (
                observed_runs(&records, &batch),
                ids.zip(dispatched).collect(),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        let now = crate::db::now();
        let mut runs = vec![Vec::new(); rows.len()];
        let mut received = Vec::with_capacity(batch.len());
        for ((i, record), event) in at.into_iter().zip(records).zip(&batch) {
            let row = &mut rows[i];
            row.status = EventStatus::Dispatched.as_str().to_owned();
            row.outcome = Some(record.outcome);
            row.dispatched_at = Some(now);
            received.push((event.id, event.received_at, !record.runs.is_empty()));
            runs[i] = record.runs;
        }
        Matched {
            runs,
            received,
            observed,
            dispatched,
        }
    }

    /// After the commit of a prepared batch (`outcomes` per row of `ids`): wakes waiting claims,
    /// counts, and tells live observers about the dispatched events and the runs `created`.
    pub fn committed(
        &self,
        matched: Matched,
        ids: &[Uuid],
        outcomes: &[RowOutcome],
        created: &[Uuid],
    ) {
        if !created.is_empty() {
            self.notifier.signal();
        }
        let stored: HashSet<Uuid> = ids
            .iter()
            .zip(outcomes)
            .filter(|(_, outcome)| **outcome == RowOutcome::Stored)
            .map(|(id, _)| *id)
            .collect();
        let metrics = &self.metrics;
        let now = Utc::now();
        let mut dispatched: u32 = 0;
        for (id, at, has_runs) in &matched.received {
            if stored.contains(id) {
                dispatched += 1;
                if *has_runs {
                    let latency = (now - *at).to_std().unwrap_or_default();
                    metrics.ingest_to_run.observe(latency.as_secs_f64());
                }
            }
        }
        if dispatched > 0 {
            metrics.dispatch_batch.observe(f64::from(dispatched));
        }
        metrics.runs_created.inc_by(created.len() as u64);
        publish_created(&self.publisher, matched.observed, created);
        for (id, message) in matched.dispatched {
            if stored.contains(&id) {
                self.publisher.publish(message);
            }
        }
    }
}

/// The event a row holds, as matching reads it (the payload as stored, else the raw message).
fn pending(row: &entity::event::Model) -> PendingEvent {
    PendingEvent {
        id: row.id,
        org_id: row.org_id,
        source: row.source.clone(),
        event_key: row.event_key.clone(),
        payload: row.payload.clone().unwrap_or_else(|| row.raw.clone()),
        received_at: row.received_at,
        route: row.source_id.unwrap_or(row.org_id),
    }
}
