//! The worker API (`worker` keys and admins): claim runs under a lease (long-polling), extend the
//! lease, complete or fail them (one at a time or in batches), all fenced by the lease token;
//! and `POST /v1/runs/{id}/retry` for people. The handlers only check the caller and the body;
//! `service` does the work, `shapes` holds the bodies.

mod checks;
mod claiming;
mod service;
mod shapes;

use std::time::Duration;

use actix_web::{HttpResponse, post, web};
use uuid::Uuid;

use super::Path;
use super::body::{Body, OptionalBody};
use super::runs::RunOut;
use crate::api::body::NoBody;
use crate::api::caller::Caller;
use crate::api::caller::{Member, Worker};
use crate::api::state::AppState;
use crate::error::ApiError;
use checks::{check_asks, check_batch_len};
use shapes::Ask;
pub use shapes::{
    BatchOut, ClaimIn, ClaimOut, ClaimedRun, CompleteBatchIn, CompleteIn, CompleteItem,
    FailBatchIn, FailIn, FailItem, HeartbeatIn, HeartbeatOut, ItemOut,
};

/// Largest `result` a worker may report, serialized.
pub const MAX_RESULT_BYTES: usize = 64 * 1024;
/// Longest `error` kept, in bytes of UTF-8 (longer ones are cut, keeping the end, where the cause
/// usually is).
pub const MAX_ERROR_BYTES: usize = 8 * 1024;
/// Items per batch call.
pub const MAX_BATCH: usize = 1000;
/// How often a waiting claim looks again without a wake-up (runs whose backoff ended, runs
/// committed by another process).
const REPOLL: Duration = Duration::from_millis(250);

/// Claims runs under a lease, long-polling up to `wait_s`.
#[utoipa::path(context_path = "/v1", tag = "workers", security(("bearer" = [])), request_body(content = Option<ClaimIn>, description = "Optional; an empty body claims one run without waiting"),
    responses((status = 200, body = ClaimOut), (status = 403, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
#[post("/runs/claim")]
pub async fn claim_runs(
    state: web::Data<AppState>,
    caller: Worker,
    OptionalBody(input): OptionalBody<ClaimIn>,
) -> Result<HttpResponse, ApiError> {
    // Every field is optional, so is the body: none claims one run without waiting.
    let input = input.unwrap_or_default();
    let (limit, wait) = input.check()?;
    let items = claiming::claim(&state, &caller, &input, limit, wait).await?;
    let mut answer = HttpResponse::Ok();
    if state.notifier.is_closing() {
        // Stopping: close the connection, so that a keep-alive worker does not claim again on
        // it (and spin) while the server waits for its connections to end.
        answer.force_close();
    }
    Ok(answer.json(ClaimOut { items }))
}

/// Extends a claimed run's lease (409 with the reason when the token is stale or the run was
/// cancelled).
#[utoipa::path(context_path = "/v1", tag = "workers", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = HeartbeatIn,
    responses((status = 200, body = HeartbeatOut), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
#[post("/runs/{id}/heartbeat")]
pub async fn heartbeat(
    state: web::Data<AppState>,
    caller: Worker,
    id: Path<Uuid>,
    Body(input): Body<HeartbeatIn>,
) -> Result<HttpResponse, ApiError> {
    input.check()?;
    let lease_expires_at =
        service::extend_lease(&state, &caller, *id, &input.lease_token, input.lease_s).await?;
    Ok(HttpResponse::Ok().json(HeartbeatOut {
        id: *id,
        lease_expires_at,
    }))
}

/// Applies one ask and answers as the single-run endpoints do: the run, or 404/409.
async fn single(state: &AppState, caller: &Caller, ask: Ask) -> Result<HttpResponse, ApiError> {
    let asks = vec![ask];
    check_asks(&asks, &|_| String::new())?;
    let item = service::apply(state, caller, asks)
        .await?
        .pop()
        .ok_or(ApiError::NotFound("run"))?;
    if !item.ok {
        return match item.reason.as_deref() {
            Some("not_found") | None => Err(ApiError::NotFound("run")),
            Some(reason) => Err(service::refused(reason, item.detail.unwrap_or_default())),
        };
    }
    let row = service::find_run(state, caller, item.id).await?;
    Ok(HttpResponse::Ok().json(super::runs::shaped(state, row).await?))
}

/// Completes a claimed run (`SUCCEEDED`; repeating it with the same token changes nothing).
#[utoipa::path(context_path = "/v1", tag = "workers", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = CompleteIn,
    responses((status = 200, body = RunOut), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
#[post("/runs/{id}/complete")]
pub async fn complete_run(
    state: web::Data<AppState>,
    caller: Worker,
    id: Path<Uuid>,
    Body(input): Body<CompleteIn>,
) -> Result<HttpResponse, ApiError> {
    single(&state, &caller, input.ask(*id)).await
}

/// Fails a claimed run's attempt: back to `PENDING` after the backoff while attempts are left
/// (and `retry` is not false), else `FAILED`.
#[utoipa::path(context_path = "/v1", tag = "workers", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = FailIn,
    responses((status = 200, body = RunOut), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
#[post("/runs/{id}/fail")]
pub async fn fail_run(
    state: web::Data<AppState>,
    caller: Worker,
    id: Path<Uuid>,
    Body(input): Body<FailIn>,
) -> Result<HttpResponse, ApiError> {
    single(&state, &caller, input.ask(*id)).await
}

/// Applies a batch of asks, checking each item's bounds first.
async fn batch(
    state: &AppState,
    caller: &Caller,
    asks: Vec<Ask>,
) -> Result<HttpResponse, ApiError> {
    check_asks(&asks, &|i| format!("items[{i}]."))?;
    let items = service::apply(state, caller, asks).await?;
    Ok(HttpResponse::Ok().json(BatchOut { items }))
}

/// Completes many claimed runs in one call; each item succeeds or is refused on its own.
#[utoipa::path(context_path = "/v1", tag = "workers", security(("bearer" = [])), request_body = CompleteBatchIn,
    responses((status = 200, body = BatchOut), (status = 422, body = crate::error::Problem)))]
#[post("/runs/complete")]
pub async fn complete_runs(
    state: web::Data<AppState>,
    caller: Worker,
    Body(input): Body<CompleteBatchIn>,
) -> Result<HttpResponse, ApiError> {
    check_batch_len(input.items.len())?;
    let asks = input.items.into_iter().map(|item| {
        let (id, body) = item.split();
        body.ask(id)
    });
    batch(&state, &caller, asks.collect()).await
}

/// Fails many claimed runs' attempts in one call; each item succeeds or is refused on its own.
#[utoipa::path(context_path = "/v1", tag = "workers", security(("bearer" = [])), request_body = FailBatchIn,
    responses((status = 200, body = BatchOut), (status = 422, body = crate::error::Problem)))]
#[post("/runs/fail")]
pub async fn fail_runs(
    state: web::Data<AppState>,
    caller: Worker,
    Body(input): Body<FailBatchIn>,
) -> Result<HttpResponse, ApiError> {
    check_batch_len(input.items.len())?;
    let asks = input.items.into_iter().map(|item| {
        let (id, body) = item.split();
        body.ask(id)
    });
    batch(&state, &caller, asks.collect()).await
}

/// Puts a FAILED or CANCELLED run back to PENDING with a fresh set of attempts (409 otherwise).
#[utoipa::path(context_path = "/v1", tag = "runs", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = RunOut), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
#[post("/runs/{id}/retry")]
pub async fn retry_run(
    state: web::Data<AppState>,
    caller: Member,
    id: Path<Uuid>,
    _: NoBody,
) -> Result<HttpResponse, ApiError> {
    let row = service::retry(&state, &caller, *id).await?;
    Ok(HttpResponse::Ok().json(super::runs::shaped(&state, row).await?))
}
