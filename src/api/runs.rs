//! `/v1/runs` and `/v1/automations/{id}/runs`: the work queue as seen by people.

use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use entity::automation_run;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::pagination;
use super::{CursorOut, Path, Query};
use crate::actors::publisher::{Published, RunChange};
use crate::api::body::NoBody;
use crate::api::caller::Caller;
use crate::api::caller::Member;
use crate::api::state::AppState;
use crate::db::statuses::RunStatus;
use crate::db::{self, runs::RunFilter, window::IdWindow};
use crate::error::ApiError;

/// Query of the run lists.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunQuery {
    /// Only this status.
    #[param(pattern = "^(PENDING|RUNNING|SUCCEEDED|FAILED|CANCELLED)$")]
    pub status: Option<String>,
    /// Only runs of this event.
    pub event_id: Option<Uuid>,
    /// Only runs of this automation (`/v1/runs` only).
    pub automation_id: Option<Uuid>,
    /// Only runs of events of this source slug. A value that is not a slug is refused (422).
    #[serde(default, deserialize_with = "crate::validation::optional_slug")]
    #[param(pattern = "^[a-z0-9]([a-z0-9-]{0,48}[a-z0-9])?$")]
    pub source: Option<String>,
    /// Only runs of events received at or after this time (RFC 3339; millisecond precision: the
    /// bound is the time in the run's id, which is its event's receive time).
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<String>,
    /// Only runs of events received at or before this time (RFC 3339, not before `since`).
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<String>,
    /// Page size, 1..=200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[A-Za-z0-9_-]{21}[AQgw]$")]
    pub cursor: Option<String>,
}

/// One run.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunOut {
    /// Id.
    pub id: Uuid,
    /// The automation that matched.
    pub automation_id: Uuid,
    /// The event it matched.
    pub event_id: Uuid,
    /// `PENDING`, `RUNNING`, `SUCCEEDED`, `FAILED` or `CANCELLED`.
    pub status: String,
    /// `event_id`, `source`, `event_key`, `received_at` and `payload`.
    #[schema(value_type = Object)]
    pub event_payload: Value,
    /// Attempts so far (claims).
    pub attempts: i32,
    /// When a worker may claim it (PENDING runs).
    pub available_at: Option<DateTime<Utc>>,
    /// The worker holding (or that last held) it.
    pub lease_owner: Option<String>,
    /// When the current lease runs out (RUNNING runs).
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// What the worker reported on success (any JSON value).
    #[schema(value_type = Option<serde_json::Value>)]
    pub result: Option<Value>,
    /// Last failure.
    pub error_detail: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Started by a worker.
    pub started_at: Option<DateTime<Utc>>,
    /// Finished or cancelled.
    pub completed_at: Option<DateTime<Utc>>,
}

impl RunOut {
    /// A run with what it carries (read from its event unless stored on the run).
    pub fn new(m: automation_run::Model, event: Option<&entity::event::Model>) -> Self {
        let event_payload = m
            .event_payload
            .or_else(|| event.map(db::events::run_payload))
            .unwrap_or(Value::Null);
        Self {
            id: m.id,
            automation_id: m.automation_id,
            event_id: m.event_id,
            status: m.status,
            event_payload,
            attempts: m.attempts,
            available_at: m.available_at,
            lease_owner: m.lease_owner,
            lease_expires_at: m.lease_expires_at,
            result: m.result,
            error_detail: m.error_detail,
            created_at: m.created_at,
            started_at: m.started_at,
            completed_at: m.completed_at,
        }
    }
}

/// Shapes runs, reading their events in one query.
async fn with_events(
    state: &AppState,
    rows: Vec<automation_run::Model>,
) -> Result<Vec<RunOut>, ApiError> {
    let ids = rows.iter().map(|r| r.event_id).collect();
    let events: std::collections::HashMap<Uuid, entity::event::Model> =
        db::events::find_events_by_ids(&state.db, ids)
            .await?
            .into_iter()
            .map(|e| (e.id, e))
            .collect();
    Ok(rows
        .into_iter()
        .map(|r| {
            let event = events.get(&r.event_id);
            RunOut::new(r, event)
        })
        .collect())
}

/// One run, shaped.
pub async fn shaped(state: &AppState, row: automation_run::Model) -> Result<RunOut, ApiError> {
    let mut all = with_events(state, vec![row]).await?;
    all.pop().ok_or(ApiError::NotFound("run"))
}

async fn page(
    state: &AppState,
    caller: &Caller,
    q: RunQuery,
    automation_id: Option<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let limit = pagination::check_limit(q.limit)?;
    let before = q
        .cursor
        .as_deref()
        .map(|c| pagination::decode_cursor(pagination::Listing::Runs, c))
        .transpose()?;
    let status = q
        .status
        .as_deref()
        .map(|s| {
            RunStatus::parse(s).ok_or_else(|| {
                ApiError::field(
                    "status",
                    "must be PENDING, RUNNING, SUCCEEDED, FAILED or CANCELLED",
                )
            })
        })
        .transpose()?;
    if automation_id.is_some() && q.automation_id.is_some() {
        return Err(ApiError::field(
            "automation_id",
            "not a parameter of an automation's runs (the path names the automation)",
        ));
    }
    let filter = RunFilter {
        automation_id: automation_id.or(q.automation_id),
        event_id: q.event_id,
        status,
        source: q.source,
        window: IdWindow::parse(q.since.as_deref(), q.until.as_deref())?,
    };
    let rows = db::runs::list_runs(&state.db, caller.org_id, &filter, before, limit + 1).await?;
    let (rows, next_cursor) =
        pagination::split_page(pagination::Listing::Runs, rows, limit, |m| m.id);
    let items = with_events(state, rows).await?;
    Ok(HttpResponse::Ok().json(CursorOut { items, next_cursor }))
}

/// Lists runs, newest first.
#[utoipa::path(context_path = "/v1", tag = "runs", security(("bearer" = [])), params(RunQuery),
    responses((status = 200, body = CursorOut<RunOut>), (status = 422, body = crate::error::Problem)))]
#[get("/runs")]
pub async fn list_runs(
    state: web::Data<AppState>,
    caller: Caller,
    query: Query<RunQuery>,
) -> Result<HttpResponse, ApiError> {
    page(&state, &caller, query.into_inner(), None).await
}

/// Lists one automation's runs, newest first.
#[utoipa::path(context_path = "/v1", tag = "automations", security(("bearer" = [])), params(("id" = Uuid, Path), RunQuery),
    responses((status = 200, body = CursorOut<RunOut>), (status = 404, body = crate::error::Problem)))]
#[get("/automations/{id}/runs")]
pub async fn list_automation_runs(
    state: web::Data<AppState>,
    caller: Caller,
    id: Path<Uuid>,
    query: Query<RunQuery>,
) -> Result<HttpResponse, ApiError> {
    db::automations::find_automation(&state.db, caller.org_id, *id)
        .await?
        .ok_or(ApiError::NotFound("automation"))?;
    page(&state, &caller, query.into_inner(), Some(*id)).await
}

/// Shows one run.
#[utoipa::path(context_path = "/v1", tag = "runs", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = RunOut), (status = 404, body = crate::error::Problem)))]
#[get("/runs/{id}")]
pub async fn get_run(
    state: web::Data<AppState>,
    caller: Caller,
    id: Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let row = db::runs::find_run(&state.db, caller.org_id, *id)
        .await?
        .ok_or(ApiError::NotFound("run"))?;
    Ok(HttpResponse::Ok().json(shaped(&state, row).await?))
}

/// Cancels a PENDING or RUNNING run (409 otherwise) and publishes `run.cancelled`. A RUNNING
/// run's worker learns it at its next heartbeat (409 `cancelled`).
#[utoipa::path(context_path = "/v1", tag = "runs", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = RunOut), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
#[post("/runs/{id}/cancel")]
pub async fn cancel_run(
    state: web::Data<AppState>,
    caller: Member,
    id: Path<Uuid>,
    _: NoBody,
) -> Result<HttpResponse, ApiError> {
    let row = db::runs::find_run(&state.db, caller.org_id, *id)
        .await?
        .ok_or(ApiError::NotFound("run"))?;
    if !db::runs::cancel_run(&state.db, caller.org_id, row.id).await? {
        return Err(ApiError::Conflict {
            field: None,
            detail: format!("run is {} and can no longer be cancelled", row.status),
        });
    }
    if row.status == RunStatus::Running.as_str() {
        // A slot of a capped automation is free again.
        state.notifier.signal();
    }
    let cancelled = db::runs::find_run(&state.db, caller.org_id, row.id)
        .await?
        .ok_or(ApiError::NotFound("run"))?;
    if state.publisher.has_subscribers() {
        // `row` is the run before: its attempt is the one concerned.
        let change = Published::run_changed(RunChange::Cancelled, &row, RunStatus::Cancelled, None);
        state.publisher.publish(change);
    }
    Ok(HttpResponse::Ok().json(shaped(&state, cancelled).await?))
}
