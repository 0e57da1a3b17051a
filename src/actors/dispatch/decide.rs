//! What a batch of committed events becomes: its runs and outcomes (matched against the automation
//! set in force), and what live observers are told about it.

use std::sync::Arc;

use serde_json::json;
use uuid::Uuid;

use super::PendingEvent;
use crate::actors::publisher::{Published, Publisher};
use crate::actors::registry::AutomationRegistry;
use crate::db::inbox::{self, DispatchRecord};
use crate::pipeline::automations::{MatchResult, Outcome};
use crate::pipeline::expr::to_value;

/// Matches a batch against the automation index in force.
pub fn decide(registry: &AutomationRegistry, batch: &[PendingEvent]) -> Vec<DispatchRecord> {
    let set = registry.current();
    // One creation time for the batch's runs: in id order they are then also in claim order
    // (`available_at`, then id), and storage adds each to the claim index after the one before.
    let now = crate::db::now();
    batch
        .iter()
        .map(|event| {
            let payload = to_value(&event.payload);
            let mut outcomes = set.evaluate(
                event.org_id,
                &event.source,
                event.event_key.as_deref(),
                &payload,
            );
            let millis = u64::try_from(event.received_at.timestamp_millis()).unwrap_or(0);
            let runs = outcomes
                .iter_mut()
                .filter(|o| o.result == MatchResult::Matched)
                .map(|o| {
                    let id = inbox::run_id(o.automation_id, event.id, millis);
                    o.run_id = Some(id);
                    run_row(id, o, event, now)
                })
                .collect();
            DispatchRecord {
                event_id: event.id,
                outcome: json!(outcomes),
                runs,
            }
        })
        .collect()
}

fn run_row(
    id: Uuid,
    outcome: &Outcome,
    event: &PendingEvent,
    now: chrono::DateTime<chrono::Utc>,
) -> entity::automation_run::Model {
    inbox::pending_run_at(
        id,
        event.org_id,
        outcome.automation_id,
        (event.id, &event.source),
        now,
    )
}

/// The runs of a batch with what each carries, for live observers.
pub(super) fn observed_runs(
    records: &[DispatchRecord],
    batch: &[PendingEvent],
) -> Vec<(entity::automation_run::Model, Arc<serde_json::Value>)> {
    records
        .iter()
        .zip(batch)
        .flat_map(|(record, event)| {
            let carried = Arc::new(json!({
                "event_id": event.id,
                "source": event.source,
                "event_key": event.event_key,
                "received_at": event.received_at,
                "payload": event.payload,
            }));
            record
                .runs
                .iter()
                .map(move |run| (run.clone(), carried.clone()))
        })
        .collect()
}

/// The `event.dispatched` messages of a batch (published once it is committed).
pub(super) fn observed_dispatches(
    records: &[DispatchRecord],
    batch: &[PendingEvent],
) -> Vec<Published> {
    records
        .iter()
        .zip(batch)
        .map(|(record, event)| Published::EventDispatched {
            org_id: event.org_id,
            event_id: event.id,
            source: event.source.clone(),
            event_key: event.event_key.clone(),
            outcome: record.outcome.clone(),
        })
        .collect()
}

pub(super) fn publish_created(
    publisher: &Publisher,
    runs: Vec<(entity::automation_run::Model, Arc<serde_json::Value>)>,
    created: &[Uuid],
) {
    if created.is_empty() || !publisher.has_subscribers() {
        return;
    }
    let created: std::collections::HashSet<&Uuid> = created.iter().collect();
    for (run, carried) in runs.into_iter().filter(|(r, _)| created.contains(&r.id)) {
        publisher.publish(Published::RunCreated {
            org_id: run.org_id,
            run_id: run.id,
            automation_id: run.automation_id,
            event_id: run.event_id,
            event_payload: carried,
        });
    }
}
