//! The worker API (`worker` keys and admins): claim runs under a lease (long-polling), extend the
//! lease, complete or fail them (one at a time or in batches), all fenced by the lease token;
//! and `POST /v1/runs/{id}/retry` for people.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix_web::{HttpResponse, post, web};
use chrono::{DateTime, Utc};
use entity::automation_run;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::Path;
use super::body::Body;
use super::runs::RunOut;
use crate::actors::publisher::{Published, RunChange};
use crate::auth::{Caller, Role};
use crate::db::statuses::RunStatus;
use crate::db::{self, queue::Finish};
use crate::error::ApiError;
use crate::queue::lifecycle::{self, AfterFailure, Fenced, MAX_LEASE_S};
use crate::queue::notifier::RunNotifier;
use crate::state::AppState;
use crate::validation::Errors;

/// Largest `result` a worker may report, serialized.
pub const MAX_RESULT_BYTES: usize = 64 * 1024;
/// Longest `error` kept (longer ones are cut, keeping the end, where the cause usually is).
pub const MAX_ERROR_CHARS: usize = 8 * 1024;
/// Items per batch call.
pub const MAX_BATCH: usize = 1000;
/// How often a waiting claim looks again without a wake-up (runs whose backoff ended, runs
/// committed by another process).
const REPOLL: Duration = Duration::from_millis(250);

fn require_worker(caller: &Caller) -> Result<(), ApiError> {
    caller.require(&[Role::Worker, Role::Admin])
}

/// `POST /v1/runs/claim`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimIn {
    /// Runs at most (1..=100, default 1).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Wait up to this many seconds for a run when none is claimable (0..=30, default 0).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 30)]
    pub wait_s: Option<f64>,
    /// Lease in seconds (1..=86400; default: each automation's `lease_s`).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86400)]
    pub lease_s: Option<u32>,
    /// Only runs of these automations (at most 100).
    #[serde(default)]
    #[schema(min_items = 1, max_items = 100)]
    pub automation_ids: Option<Vec<Uuid>>,
    /// Only runs of events from these source slugs (at most 100).
    #[serde(default)]
    #[schema(min_items = 1, max_items = 100)]
    pub sources: Option<Vec<String>>,
    /// The worker's name, recorded as the lease owner (at most 200 characters).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub worker: Option<String>,
}

/// One claimed run.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimedRun {
    /// Run id.
    pub id: Uuid,
    /// The automation.
    pub automation_id: Uuid,
    /// Its name (`null` when it was deleted).
    pub automation_name: Option<String>,
    /// The event.
    pub event_id: Uuid,
    /// The event key.
    pub event_key: Option<String>,
    /// The event's source slug.
    pub source: String,
    /// `event_id`, `source`, `event_key`, `received_at` and `payload`.
    #[schema(value_type = Object)]
    pub event_payload: Value,
    /// This attempt's number (1 for the first).
    pub attempt: i32,
    /// Pass with heartbeat, complete and fail; valid for this claim only.
    pub lease_token: String,
    /// When the lease runs out unless extended.
    pub lease_expires_at: Option<DateTime<Utc>>,
}

/// Claimed runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimOut {
    /// Oldest available first; empty when nothing was claimable within `wait_s`.
    pub items: Vec<ClaimedRun>,
}

fn check_claim(input: &ClaimIn) -> Result<(u64, Duration), ApiError> {
    let mut errors = Errors::default();
    let limit = input.limit.unwrap_or(1);
    errors.range("limit", u64::from(limit), 1..=100);
    let wait = input.wait_s.unwrap_or(0.0);
    if !(0.0..=30.0).contains(&wait) {
        errors.add("wait_s", "must be between 0 and 30");
    }
    if let Some(v) = input.lease_s {
        errors.range("lease_s", u64::from(v), 1..=u64::from(MAX_LEASE_S));
    }
    if let Some(ids) = &input.automation_ids
        && (ids.is_empty() || ids.len() > 100)
    {
        errors.add("automation_ids", "must list 1 to 100 ids");
    }
    if let Some(sources) = &input.sources {
        if sources.is_empty() || sources.len() > 100 {
            errors.add("sources", "must list 1 to 100 source slugs");
        }
        for (i, slug) in sources.iter().enumerate() {
            errors.slug(&format!("sources[{i}]"), slug);
        }
    }
    if let Some(worker) = &input.worker
        && (worker.is_empty() || worker.chars().count() > 200)
    {
        errors.add("worker", "must be 1 to 200 characters");
    }
    errors.finish(()).map_err(ApiError::Validation)?;
    Ok((u64::from(limit), Duration::from_secs_f64(wait)))
}

/// A fresh lease token.
fn new_token() -> String {
    format!("lt_{:032x}", rand::random::<u128>())
}

/// Claims runs under a lease, long-polling up to `wait_s`.
#[utoipa::path(context_path = "/v1", tag = "workers", security(("bearer" = [])), request_body = ClaimIn,
    responses((status = 200, body = ClaimOut), (status = 403, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
#[post("/runs/claim")]
pub async fn claim_runs(
    state: web::Data<AppState>,
    caller: Caller,
    Body(input): Body<ClaimIn>,
) -> Result<HttpResponse, ApiError> {
    require_worker(&caller)?;
    let (limit, wait) = check_claim(&input)?;
    let started = Instant::now();
    let deadline = started + wait;
    let info = state.automations.info();
    let caps: db::queue::Caps = info
        .iter()
        .filter(|(id, i)| {
            i.org_id == caller.org_id
                && input
                    .automation_ids
                    .as_ref()
                    .is_none_or(|ids| ids.contains(id))
        })
        .filter_map(|(id, i)| i.policy.max_concurrency.map(|m| (*id, m)))
        .collect();
    let lease_of = |automation_id: Uuid| {
        input
            .lease_s
            .unwrap_or_else(|| state.automations.policy(automation_id).lease_s)
    };
    let mut request = db::queue::ClaimRequest {
        org_id: caller.org_id,
        limit,
        automation_ids: input.automation_ids.clone(),
        sources: input.sources.clone(),
        worker: input.worker.clone(),
        token: String::new(),
        now: db::now(),
    };
    let rows = loop {
        let waiter = state.notifier.waiter();
        tokio::pin!(waiter);
        waiter.as_mut().enable();
        request.token = new_token();
        request.now = db::now();
        let rows = db::queue::claim(&state.db, &request, &caps, lease_of).await?;
        let now = Instant::now();
        if !rows.is_empty() || now >= deadline {
            break rows;
        }
        RunNotifier::wait(waiter, (deadline - now).min(REPOLL)).await;
    };
    state.metrics.queue.observe_claim(started.elapsed(), &rows);
    if state.publisher.has_subscribers() {
        for row in &rows {
            publish(&state, RunChange::Claimed, row, "RUNNING", None);
        }
    }
    let items = claimed(&state, rows).await?;
    Ok(HttpResponse::Ok().json(ClaimOut { items }))
}

/// Publishes a run change for live observers.
fn publish(
    state: &AppState,
    kind: RunChange,
    row: &automation_run::Model,
    status: &'static str,
    error: Option<String>,
) {
    state.publisher.publish(Published::RunChanged {
        kind,
        org_id: row.org_id,
        run_id: row.id,
        automation_id: row.automation_id,
        source: row.source.clone(),
        attempt: row.attempts,
        status,
        error,
    });
}

async fn claimed(
    state: &AppState,
    rows: Vec<automation_run::Model>,
) -> Result<Vec<ClaimedRun>, ApiError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let events: HashMap<Uuid, entity::event::Model> =
        db::events::find_events_by_ids(&state.db, rows.iter().map(|r| r.event_id).collect())
            .await?
            .into_iter()
            .map(|e| (e.id, e))
            .collect();
    let info = state.automations.info();
    Ok(rows
        .into_iter()
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
        .collect())
}

/// `POST /v1/runs/{id}/heartbeat`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatIn {
    /// The token of the claim.
    pub lease_token: String,
    /// New lease from now, in seconds (1..=86400; default: the automation's `lease_s`).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86400)]
    pub lease_s: Option<u32>,
}

/// The extended lease.
#[derive(Debug, Serialize, ToSchema)]
pub struct HeartbeatOut {
    /// Run id.
    pub id: Uuid,
    /// The new expiry.
    pub lease_expires_at: DateTime<Utc>,
}

fn refused(reason: &str, detail: String) -> ApiError {
    ApiError::Conflict {
        field: Some("lease_token".to_owned()),
        detail: format!("{reason}: {detail}"),
    }
}

async fn find_run(
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

/// Extends a claimed run's lease (409 with the reason when the token is stale or the run was
/// cancelled).
#[utoipa::path(context_path = "/v1", tag = "workers", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = HeartbeatIn,
    responses((status = 200, body = HeartbeatOut), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
#[post("/runs/{id}/heartbeat")]
pub async fn heartbeat(
    state: web::Data<AppState>,
    caller: Caller,
    id: Path<Uuid>,
    Body(input): Body<HeartbeatIn>,
) -> Result<HttpResponse, ApiError> {
    require_worker(&caller)?;
    if let Some(v) = input.lease_s {
        let mut errors = Errors::default();
        errors.range("lease_s", u64::from(v), 1..=u64::from(MAX_LEASE_S));
        errors.finish(()).map_err(ApiError::Validation)?;
    }
    let row = find_run(&state, &caller, *id).await?;
    let lease_s = input
        .lease_s
        .unwrap_or_else(|| state.automations.policy(row.automation_id).lease_s);
    let expires = db::now() + chrono::Duration::seconds(i64::from(lease_s));
    if db::queue::heartbeat(
        &state.db,
        caller.org_id,
        row.id,
        &input.lease_token,
        expires,
    )
    .await?
    {
        return Ok(HttpResponse::Ok().json(HeartbeatOut {
            id: row.id,
            lease_expires_at: expires,
        }));
    }
    let row = find_run(&state, &caller, *id).await?;
    match lifecycle::explain_fence(
        status_of(&row)?,
        row.lease_token.as_deref(),
        &input.lease_token,
        false,
    ) {
        Fenced::Refused(reason, detail) => Err(refused(reason, detail)),
        Fenced::AlreadyApplied => Err(refused("finished", "the run is finished".to_owned())),
    }
}

/// `POST /v1/runs/{id}/complete`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteIn {
    /// The token of the claim.
    pub lease_token: String,
    /// What the run produced (any JSON, at most 64 KiB).
    #[serde(default)]
    pub result: Option<Value>,
}

/// `POST /v1/runs/{id}/fail`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailIn {
    /// The token of the claim.
    pub lease_token: String,
    /// What went wrong (kept up to 8 KiB, the end).
    pub error: String,
    /// Whether to retry while attempts are left (default true).
    #[serde(default)]
    pub retry: Option<bool>,
    /// Retry after this many seconds instead of the automation's backoff (0..=604800).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 604800)]
    pub retry_after_s: Option<u32>,
}

/// One item of `POST /v1/runs/complete`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteItem {
    /// Run id.
    pub id: Uuid,
    /// The token of the claim.
    pub lease_token: String,
    /// What the run produced.
    #[serde(default)]
    pub result: Option<Value>,
}

/// One item of `POST /v1/runs/fail`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailItem {
    /// Run id.
    pub id: Uuid,
    /// The token of the claim.
    pub lease_token: String,
    /// What went wrong.
    pub error: String,
    /// Whether to retry while attempts are left (default true).
    #[serde(default)]
    pub retry: Option<bool>,
    /// Retry after this many seconds instead of the backoff.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 604800)]
    pub retry_after_s: Option<u32>,
}

/// A batch of completions.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteBatchIn {
    /// 1..=1000 items.
    #[schema(min_items = 1, max_items = 1000)]
    pub items: Vec<CompleteItem>,
}

/// A batch of failures.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailBatchIn {
    /// 1..=1000 items.
    #[schema(min_items = 1, max_items = 1000)]
    pub items: Vec<FailItem>,
}

/// How one item of a batch ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemOut {
    /// Run id.
    pub id: Uuid,
    /// Whether it took effect.
    pub ok: bool,
    /// The run's status afterwards (`null` when the run does not exist).
    pub status: Option<String>,
    /// Why not (`cancelled`, `lease_expired`, `lease_lost`, `finished`, `not_found`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The explanation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The items of a batch, in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchOut {
    /// One per request item.
    pub items: Vec<ItemOut>,
}

/// A fenced outcome as asked for.
enum Ask {
    Complete(Option<Value>),
    Fail {
        error: String,
        retry: bool,
        retry_after_s: Option<u32>,
    },
}

fn keep_tail(error: String) -> String {
    let count = error.chars().count();
    if count <= MAX_ERROR_CHARS {
        return error;
    }
    error.chars().skip(count - MAX_ERROR_CHARS).collect()
}

fn check_items(
    asks: &[(Uuid, String, Ask)],
    prefix: &dyn Fn(usize) -> String,
) -> Result<(), ApiError> {
    let mut errors = Errors::default();
    for (i, (_, _, ask)) in asks.iter().enumerate() {
        match ask {
            Ask::Complete(Some(result)) => {
                let size = serde_json::to_vec(result)
                    .map(|v| v.len())
                    .unwrap_or(usize::MAX);
                if size > MAX_RESULT_BYTES {
                    errors.add(
                        format!("{}result", prefix(i)),
                        format!("must be at most {MAX_RESULT_BYTES} bytes of JSON"),
                    );
                }
            }
            Ask::Complete(None) => {}
            Ask::Fail { retry_after_s, .. } => {
                if let Some(v) = retry_after_s {
                    errors.range(
                        &format!("{}retry_after_s", prefix(i)),
                        u64::from(*v),
                        0..=604_800,
                    );
                }
            }
        }
    }
    errors.finish(()).map_err(ApiError::Validation)
}

/// Applies fenced outcomes; one [`ItemOut`] per ask, in order.
async fn apply(
    state: &AppState,
    caller: &Caller,
    asks: Vec<(Uuid, String, Ask)>,
) -> Result<Vec<ItemOut>, ApiError> {
    let ids: Vec<Uuid> = asks.iter().map(|(id, _, _)| *id).collect();
    let rows: HashMap<Uuid, automation_run::Model> =
        db::runs::find_runs(&state.db, caller.org_id, ids.clone())
            .await?
            .into_iter()
            .map(|r| (r.id, r))
            .collect();
    let now = db::now();
    let mut finishes = Vec::with_capacity(asks.len());
    let mut slots = Vec::with_capacity(asks.len());
    let mut completing = Vec::with_capacity(asks.len());
    for (id, token, ask) in asks {
        let Some(row) = rows.get(&id) else {
            slots.push(None);
            completing.push(false);
            continue;
        };
        completing.push(matches!(ask, Ask::Complete(_)));
        let finish = match ask {
            Ask::Complete(result) => Finish {
                id,
                token,
                status: RunStatus::Succeeded,
                result,
                error: None,
                available_at: None,
            },
            Ask::Fail {
                error,
                retry,
                retry_after_s,
            } => {
                let policy = state.automations.policy(row.automation_id);
                let attempt = u32::try_from(row.attempts).unwrap_or(0);
                let next = lifecycle::after_failure(
                    &policy,
                    attempt,
                    retry,
                    retry_after_s,
                    rand::random::<f64>(),
                );
                let (status, available_at) = match next {
                    AfterFailure::Retry { delay } => (
                        RunStatus::Pending,
                        Some(now + chrono::Duration::from_std(delay).unwrap_or_default()),
                    ),
                    AfterFailure::Fail => (RunStatus::Failed, None),
                };
                Finish {
                    id,
                    token,
                    status,
                    result: None,
                    error: Some(keep_tail(error)),
                    available_at,
                }
            }
        };
        slots.push(Some(finishes.len()));
        finishes.push(finish);
    }
    let applied = db::queue::finish(&state.db, caller.org_id, &finishes, now).await?;
    let refused_ids: Vec<Uuid> = finishes
        .iter()
        .zip(&applied)
        .filter(|(_, ok)| !**ok)
        .map(|(f, _)| f.id)
        .collect();
    let fresh: HashMap<Uuid, automation_run::Model> = if refused_ids.is_empty() {
        HashMap::new()
    } else {
        db::runs::find_runs(&state.db, caller.org_id, refused_ids)
            .await?
            .into_iter()
            .map(|r| (r.id, r))
            .collect()
    };
    let mut woke = false;
    let out = ids
        .iter()
        .zip(slots)
        .zip(completing)
        .map(|((id, slot), completing)| {
            let Some(slot) = slot else {
                return ItemOut {
                    id: *id,
                    ok: false,
                    status: None,
                    reason: Some("not_found".to_owned()),
                    detail: Some("run not found".to_owned()),
                };
            };
            let finish = &finishes[slot];
            if applied[slot] {
                woke |= finish.status == RunStatus::Pending;
                state
                    .metrics
                    .queue
                    .observe_finish(finish.status, rows.get(id));
                return ItemOut {
                    id: *id,
                    ok: true,
                    status: Some(finish.status.as_str().to_owned()),
                    reason: None,
                    detail: None,
                };
            }
            let Some(row) = fresh.get(id) else {
                return ItemOut {
                    id: *id,
                    ok: false,
                    status: None,
                    reason: Some("not_found".to_owned()),
                    detail: Some("run not found".to_owned()),
                };
            };
            let status = RunStatus::parse(&row.status).unwrap_or(RunStatus::Failed);
            let fenced = lifecycle::explain_fence(
                status,
                row.lease_token.as_deref(),
                &finish.token,
                completing,
            );
            match fenced {
                Fenced::AlreadyApplied => ItemOut {
                    id: *id,
                    ok: true,
                    status: Some(row.status.clone()),
                    reason: None,
                    detail: None,
                },
                Fenced::Refused(reason, detail) => ItemOut {
                    id: *id,
                    ok: false,
                    status: Some(row.status.clone()),
                    reason: Some(reason.to_owned()),
                    detail: Some(detail),
                },
            }
        })
        .collect();
    if woke {
        state.notifier.signal();
    }
    Ok(out)
}

/// One item's outcome as the single-run endpoints answer it.
async fn single(
    state: &AppState,
    caller: &Caller,
    item: ItemOut,
) -> Result<HttpResponse, ApiError> {
    if !item.ok {
        return match item.reason.as_deref() {
            Some("not_found") | None => Err(ApiError::NotFound("run")),
            Some(reason) => Err(refused(reason, item.detail.unwrap_or_default())),
        };
    }
    let row = find_run(state, caller, item.id).await?;
    Ok(HttpResponse::Ok().json(super::runs::shaped(state, row).await?))
}

/// Completes a claimed run (`SUCCEEDED`; repeating it with the same token changes nothing).
#[utoipa::path(context_path = "/v1", tag = "workers", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = CompleteIn,
    responses((status = 200, body = RunOut), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
#[post("/runs/{id}/complete")]
pub async fn complete_run(
    state: web::Data<AppState>,
    caller: Caller,
    id: Path<Uuid>,
    Body(input): Body<CompleteIn>,
) -> Result<HttpResponse, ApiError> {
    require_worker(&caller)?;
    let asks = vec![(*id, input.lease_token, Ask::Complete(input.result))];
    check_items(&asks, &|_| String::new())?;
    let mut out = apply(&state, &caller, asks).await?;
    let item = out.pop().ok_or(ApiError::NotFound("run"))?;
    single(&state, &caller, item).await
}

/// Fails a claimed run's attempt: back to `PENDING` after the backoff while attempts are left
/// (and `retry` is not false), else `FAILED`.
#[utoipa::path(context_path = "/v1", tag = "workers", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = FailIn,
    responses((status = 200, body = RunOut), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
#[post("/runs/{id}/fail")]
pub async fn fail_run(
    state: web::Data<AppState>,
    caller: Caller,
    id: Path<Uuid>,
    Body(input): Body<FailIn>,
) -> Result<HttpResponse, ApiError> {
    require_worker(&caller)?;
    let asks = vec![(
        *id,
        input.lease_token,
        Ask::Fail {
            error: input.error,
            retry: input.retry.unwrap_or(true),
            retry_after_s: input.retry_after_s,
        },
    )];
    check_items(&asks, &|_| String::new())?;
    let mut out = apply(&state, &caller, asks).await?;
    let item = out.pop().ok_or(ApiError::NotFound("run"))?;
    single(&state, &caller, item).await
}

fn check_batch_len(len: usize) -> Result<(), ApiError> {
    if len == 0 || len > MAX_BATCH {
        return Err(ApiError::field(
            "items",
            format!("must hold 1 to {MAX_BATCH} items"),
        ));
    }
    Ok(())
}

/// Completes many claimed runs in one call; each item succeeds or is refused on its own.
#[utoipa::path(context_path = "/v1", tag = "workers", security(("bearer" = [])), request_body = CompleteBatchIn,
    responses((status = 200, body = BatchOut), (status = 422, body = crate::error::Problem)))]
#[post("/runs/complete")]
pub async fn complete_runs(
    state: web::Data<AppState>,
    caller: Caller,
    Body(input): Body<CompleteBatchIn>,
) -> Result<HttpResponse, ApiError> {
    require_worker(&caller)?;
    check_batch_len(input.items.len())?;
    let asks: Vec<_> = input
        .items
        .into_iter()
        .map(|i| (i.id, i.lease_token, Ask::Complete(i.result)))
        .collect();
    check_items(&asks, &|i| format!("items[{i}]."))?;
    let items = apply(&state, &caller, asks).await?;
    Ok(HttpResponse::Ok().json(BatchOut { items }))
}

/// Fails many claimed runs' attempts in one call; each item succeeds or is refused on its own.
#[utoipa::path(context_path = "/v1", tag = "workers", security(("bearer" = [])), request_body = FailBatchIn,
    responses((status = 200, body = BatchOut), (status = 422, body = crate::error::Problem)))]
#[post("/runs/fail")]
pub async fn fail_runs(
    state: web::Data<AppState>,
    caller: Caller,
    Body(input): Body<FailBatchIn>,
) -> Result<HttpResponse, ApiError> {
    require_worker(&caller)?;
    check_batch_len(input.items.len())?;
    let asks: Vec<_> = input
        .items
        .into_iter()
        .map(|i| {
            (
                i.id,
                i.lease_token,
                Ask::Fail {
                    error: i.error,
                    retry: i.retry.unwrap_or(true),
                    retry_after_s: i.retry_after_s,
                },
            )
        })
        .collect();
    check_items(&asks, &|i| format!("items[{i}]."))?;
    let items = apply(&state, &caller, asks).await?;
    Ok(HttpResponse::Ok().json(BatchOut { items }))
}

/// Puts a FAILED or CANCELLED run back to PENDING with a fresh set of attempts (409 otherwise).
#[utoipa::path(context_path = "/v1", tag = "runs", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = RunOut), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
#[post("/runs/{id}/retry")]
pub async fn retry_run(
    state: web::Data<AppState>,
    caller: Caller,
    id: Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    caller.require_member()?;
    let row = find_run(&state, &caller, *id).await?;
    if !db::queue::retry_run(&state.db, caller.org_id, row.id, db::now()).await? {
        let row = find_run(&state, &caller, *id).await?;
        return Err(ApiError::Conflict {
            field: None,
            detail: format!(
                "run is {}; only FAILED or CANCELLED runs can be retried",
                row.status
            ),
        });
    }
    state.notifier.signal();
    state.metrics.queue.retries.inc();
    let row = find_run(&state, &caller, *id).await?;
    Ok(HttpResponse::Ok().json(super::runs::shaped(&state, row).await?))
}
