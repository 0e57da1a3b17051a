//! What the worker endpoints do, apart from HTTP (claims are in [`super::claiming`]): extend a
//! lease, apply fenced outcomes (and explain refusals), put a run back by hand. Every run change is
//! counted and published for the live stream here.

use std::collections::HashMap;

use entity::automation_run;
use uuid::Uuid;

use super::shapes::{Ask, ItemOut, Outcome};
use crate::actors::publisher::{Published, RunChange};
use crate::api::caller::Caller;
use crate::api::state::AppState;
use crate::db;
use crate::db::queue::Finish;
use crate::db::statuses::RunStatus;
use crate::error::ApiError;
use crate::queue::lifecycle::{self, AfterFailure, Fenced};

/// A 409 naming the refusal's reason.
pub fn refused(reason: &str, detail: String) -> ApiError {
    ApiError::Conflict {
        field: Some("lease_token".to_owned()),
        detail: format!("{reason}: {detail}"),
    }
}

/// One run of the caller's org, or 404.
pub async fn find_run(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
) -> Result<automation_run::Model, ApiError> {
    db::runs::find_run(&state.db, caller.org_id, id)
        .await?
        .ok_or(ApiError::NotFound("run"))
}

fn status_of(row: &automation_run::Model) -> Result<RunStatus, ApiError> {
    RunStatus::parse(&row.status)
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("unknown run status {}", row.status)))
}

/// Extends the lease of run `id` held with `token` by `lease_s` (default: the lease its claim
/// asked for, else the automation's); returns the new expiry, or the refusal's 409.
pub async fn extend_lease(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    token: &str,
    lease_s: Option<u32>,
) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    let row = find_run(state, caller, id).await?;
    let lease_s = lease_s
        .or_else(|| super::claiming::claimed_lease_s(token))
        .unwrap_or_else(|| state.automations.policy(row.automation_id).lease_s);
    let expires = db::now() + chrono::Duration::seconds(i64::from(lease_s));
    if db::queue::heartbeat(&state.db, caller.org_id, row.id, token, expires).await? {
        return Ok(expires);
    }
    let row = find_run(state, caller, id).await?;
    let found = lifecycle::FenceState {
        status: status_of(&row)?,
        stored_token: row.lease_token.as_deref(),
        last_error: row.error_detail.as_deref(),
    };
    match lifecycle::explain_fence(found, token, lifecycle::FencedCall::Heartbeat) {
        Fenced::Refused(reason, detail) => Err(refused(reason, detail)),
        Fenced::AlreadyApplied => Err(refused("finished", "the run is finished".to_owned())),
    }
}

/// Applies fenced outcomes; one [`ItemOut`] per ask, in order.
pub async fn apply(
    state: &AppState,
    caller: &Caller,
    asks: Vec<Ask>,
) -> Result<Vec<ItemOut>, ApiError> {
    let ids: Vec<Uuid> = asks.iter().map(|a| a.id).collect();
    let rows = runs_by_id(state, caller, ids.clone()).await?;
    let now = db::now();
    // Per ask: the index of its finish, `None` when the run does not exist.
    let mut slots = Vec::with_capacity(asks.len());
    let mut finishes = Vec::with_capacity(asks.len());
    for ask in asks {
        let finish = rows
            .get(&ask.id)
            .map(|row| finish_for(state, row, ask, now));
        slots.push(finish.map(|f| {
            finishes.push(f);
            finishes.len() - 1
        }));
    }
    let applied = db::queue::finish(&state.db, caller.org_id, &finishes, now).await?;
    let refused_ids: Vec<Uuid> = finishes
        .iter()
        .zip(&applied)
        .filter(|(_, ok)| !**ok)
        .map(|(f, _)| f.id)
        .collect();
    let fresh = runs_by_id(state, caller, refused_ids).await?;
    let mut woke = false;
    let out = ids
        .iter()
        .zip(slots)
        .map(|(id, slot)| match slot {
            None => ItemOut::not_found(*id),
            Some(slot) if applied[slot] => {
                let finish = &finishes[slot];
                // Back to PENDING, or a capped automation has room again: claims may take runs.
                woke |= finish.status == RunStatus::Pending
                    || rows.get(id).is_some_and(|row| {
                        let policy = state.automations.policy(row.automation_id);
                        policy.max_concurrency.is_some()
                    });
                observe(state, finish, rows.get(id));
                ItemOut::applied(*id, finish.status.as_str())
            }
            Some(slot) => explain(fresh.get(id), &finishes[slot]),
        })
        .collect();
    if woke {
        state.notifier.signal();
    }
    Ok(out)
}

/// The runs of the caller's org with these ids, by id (none asked: none read).
async fn runs_by_id(
    state: &AppState,
    caller: &Caller,
    ids: Vec<Uuid>,
) -> Result<HashMap<Uuid, automation_run::Model>, ApiError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(db::runs::find_runs(&state.db, caller.org_id, ids)
        .await?
        .into_iter()
        .map(|r| (r.id, r))
        .collect())
}

/// The fenced update an ask leads to for `row`.
fn finish_for(
    state: &AppState,
    row: &automation_run::Model,
    ask: Ask,
    now: chrono::DateTime<chrono::Utc>,
) -> Finish {
    let (status, result, error, available_at) = match ask.outcome {
        Outcome::Complete(result) => (RunStatus::Succeeded, result, None, None),
        Outcome::Fail {
            error,
            retry,
            retry_after_s,
        } => {
            let policy = state.automations.policy(row.automation_id);
            let attempt = u32::try_from(row.attempts).unwrap_or(0);
            let unit = rand::random::<f64>();
            match lifecycle::after_failure(&policy, attempt, retry, retry_after_s, unit) {
                AfterFailure::Retry { delay } => {
                    let delay = chrono::Duration::from_std(delay).unwrap_or_default();
                    (RunStatus::Pending, None, Some(error), Some(now + delay))
                }
                AfterFailure::Fail => (RunStatus::Failed, None, Some(error), None),
            }
        }
    };
    Finish {
        id: ask.id,
        token: ask.token,
        status,
        result,
        error,
        available_at,
    }
}

/// Counts an applied outcome and publishes it (`run.completed`, `run.retrying`, `run.failed`).
fn observe(state: &AppState, finish: &Finish, row: Option<&automation_run::Model>) {
    state.metrics.queue.observe_finish(finish.status, row);
    let (Some(row), true) = (row, state.publisher.has_subscribers()) else {
        return;
    };
    let kind = match finish.status {
        RunStatus::Succeeded => RunChange::Completed,
        RunStatus::Pending => RunChange::Retrying,
        _ => RunChange::Failed,
    };
    let change = Published::run_changed(kind, row, finish.status, finish.error.clone());
    state.publisher.publish(change);
}

/// Why a fenced update matched nothing, from the run as it is now (`None`: it is gone).
fn explain(row: Option<&automation_run::Model>, finish: &Finish) -> ItemOut {
    let Some(row) = row else {
        return ItemOut::not_found(finish.id);
    };
    let found = lifecycle::FenceState {
        status: RunStatus::parse(&row.status).unwrap_or(RunStatus::Failed),
        stored_token: row.lease_token.as_deref(),
        last_error: row.error_detail.as_deref(),
    };
    // Only a completion ends in SUCCEEDED; a fail ends in PENDING or FAILED.
    let call = if finish.status == RunStatus::Succeeded {
        lifecycle::FencedCall::Complete
    } else {
        lifecycle::FencedCall::Fail
    };
    match lifecycle::explain_fence(found, &finish.token, call) {
        Fenced::AlreadyApplied => ItemOut::applied(row.id, &row.status),
        Fenced::Refused(reason, detail) => {
            ItemOut::refused(row.id, Some(&row.status), reason, detail)
        }
    }
}

/// Puts a FAILED or CANCELLED run back to PENDING (409 otherwise); returns it.
pub async fn retry(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
) -> Result<automation_run::Model, ApiError> {
    let row = find_run(state, caller, id).await?;
    if !db::queue::retry_run(&state.db, caller.org_id, row.id, db::now()).await? {
        let row = find_run(state, caller, id).await?;
        let detail = if RunStatus::parse(&row.status)
            .is_some_and(|s| RunStatus::RETRYABLE_BY_HAND.contains(&s))
        {
            "the run's event was deleted by retention (SWITCHBOARD_RETENTION_EVENTS_DAYS); \
             without it there is nothing to hand a worker"
                .to_owned()
        } else {
            format!(
                "run is {}; only FAILED or CANCELLED runs can be retried",
                row.status
            )
        };
        return Err(ApiError::Conflict {
            field: None,
            detail,
        });
    }
    state.notifier.signal();
    state.metrics.queue.retries.inc();
    let retried = find_run(state, caller, id).await?;
    if state.publisher.has_subscribers() {
        let change = Published::run_changed(RunChange::Retried, &row, RunStatus::Pending, None);
        state.publisher.publish(change);
    }
    Ok(retried)
}
