//! Claiming runs over HTTP: long-polling (waking as [`RunNotifier`] says), the claim's scope
//! (caps and leases of the automations it may take), the lease tokens, and the claimed runs as a
//! worker gets them.

use std::collections::HashMap;
use std::time::Instant;

use entity::automation_run;
use serde_json::Value;
use uuid::Uuid;

use super::REPOLL;
use super::shapes::{ClaimIn, ClaimedRun};
use crate::actors::publisher::{Published, RunChange};
use crate::api::caller::Caller;
use crate::api::state::AppState;
use crate::db;
use crate::db::queue::Leases;
use crate::db::statuses::RunStatus;
use crate::error::ApiError;
use crate::queue::lifecycle::DEFAULT_LEASE_S;
use crate::queue::notifier::RunNotifier;

/// A new lease token. A claim that asked for its own `lease_s` carries it in its tokens
/// (`lt_<random>.<seconds>`), so that a heartbeat without `lease_s` extends by the lease the claim
/// asked for rather than by the automation's (which may be shorter).
fn new_token(lease_s: Option<u32>) -> String {
    let random = rand::random::<u128>();
    match lease_s {
        Some(seconds) => format!("lt_{random:032x}.{seconds}"),
        None => format!("lt_{random:032x}"),
    }
}

/// The lease a token's claim asked for (see [`new_token`]).
pub(super) fn claimed_lease_s(token: &str) -> Option<u32> {
    let (_, seconds) = token.strip_prefix("lt_")?.split_once('.')?;
    seconds.parse().ok()
}

/// Claims up to `limit` runs, waiting up to `wait` for one when none is claimable.
pub async fn claim(
    state: &AppState,
    caller: &Caller,
    input: &ClaimIn,
    limit: u64,
    wait: std::time::Duration,
) -> Result<Vec<ClaimedRun>, ApiError> {
    let started = Instant::now();
    let deadline = started + wait;
    let (caps, leases) = scope(state, caller, input);
    let mut request = db::queue::ClaimRequest {
        org_id: caller.org_id,
        limit,
        automation_ids: input.automation_ids.clone(),
        sources: input.sources.clone(),
        worker: input.worker.clone(),
        token: String::new(),
        leases,
        now: db::now(),
    };
    let waiters = state.notifier.waiters(caller.org_id);
    let filtered = input.automation_ids.is_some() || input.sources.is_some();
    // Armed while this claim may hold a wake-up it has not acted on: dropped then (its client
    // gone), it passes the wake on to the next waiting claim.
    let mut woken = waiters.wake_guard();
    let (rows, events) = loop {
        if state.notifier.is_closing() {
            // Stopping: answer without looking (the process is going away).
            break (Vec::new(), HashMap::new());
        }
        let waiter = waiters.waiter(filtered);
        tokio::pin!(waiter);
        waiter.as_mut().enable();
        // While ingest is saturated, claims take paced turns (`queue::ingest_first`).
        let turn = state.notifier.ingest().claim_turn(deadline).await;
        request.token = new_token(input.lease_s);
        request.now = db::now();
        let (rows, events) = db::queue::claim_with_events(&state.db, &request, &caps).await?;
        drop(turn);
        woken.disarm();
        let now = Instant::now();
        if !rows.is_empty() || now >= deadline {
            // A full page, or a page a cap cut short: more runs may be waiting for the next
            // open claim (each such hand-over takes at least one run, so it ends).
            let more = rows.len() as u64 == limit || (!caps.is_empty() && !rows.is_empty());
            if !filtered && more {
                waiters.pass_on();
            }
            break (rows, events);
        }
        RunNotifier::wait(waiter, (deadline - now).min(REPOLL)).await;
        woken.arm();
    };
    state.metrics.queue.observe_claim(started.elapsed(), &rows);
    if state.publisher.has_subscribers() {
        for row in &rows {
            let change = Published::run_changed(RunChange::Claimed, row, RunStatus::Running, None);
            state.publisher.publish(change);
        }
    }
    Ok(claimed(state, rows, &events))
}

/// The concurrency caps of the caller's automations the claim may take runs of, and how long
/// their runs are leased (the claim's `lease_s`, else each automation's).
fn scope(state: &AppState, caller: &Caller, input: &ClaimIn) -> (db::queue::Caps, Leases) {
    let info = state.automations.info();
    let in_scope = info.iter().filter(|(id, i)| {
        i.org_id == caller.org_id
            && input
                .automation_ids
                .as_ref()
                .is_none_or(|ids| ids.contains(id))
    });
    let mut caps = Vec::new();
    let mut leases = Leases::uniform(input.lease_s.unwrap_or(DEFAULT_LEASE_S));
    for (id, i) in in_scope {
        if let Some(max) = i.policy.max_concurrency {
            caps.push((*id, max));
        }
        if input.lease_s.is_none() && i.policy.lease_s != DEFAULT_LEASE_S {
            leases.by_automation.push((*id, i.policy.lease_s));
        }
    }
    (caps, leases)
}

/// Claimed rows as a worker gets them: with the event payload, key and automation name.
fn claimed(
    state: &AppState,
    rows: Vec<automation_run::Model>,
    events: &HashMap<Uuid, entity::event::Model>,
) -> Vec<ClaimedRun> {
    let info = state.automations.info();
    rows.into_iter()
        .map(|r| {
            let event = events.get(&r.event_id);
            let event_payload = r
                .event_payload
                .clone()
                .or_else(|| event.map(db::events::run_payload))
                .unwrap_or(Value::Null);
            ClaimedRun {
                id: r.id,
                automation_id: r.automation_id,
                automation_name: info.get(&r.automation_id).map(|i| i.name.clone()),
                event_id: r.event_id,
                event_key: event.and_then(|e| e.event_key.clone()),
                source: r.source,
                event_payload,
                attempt: r.attempts,
                lease_token: r.lease_token.unwrap_or_default(),
                lease_expires_at: r.lease_expires_at,
            }
        })
        .collect()
}
