//! `POST /v1/events/{id}/replay`: run a stored event through the current automations again, with
//! the matching function the dispatch actors use (`decide`) and the same commit of runs and
//! outcome.

use actix_web::{HttpResponse, post, web};
use serde_json::{Value, json};
use uuid::Uuid;

use super::Path;
use crate::actors::dispatch::{PendingEvent, decide};
use crate::api::body::NoBody;
use crate::api::caller::Member;
use crate::api::state::AppState;
use crate::db;
use crate::error::ApiError;

/// Re-runs an event through the automations in force now. Runs that already exist for an
/// (automation, event) pair are kept, never duplicated; the outcome is replaced.
#[utoipa::path(context_path = "/v1", tag = "events", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, description = "The new outcome and how many runs were created", example = json!({"outcome": [], "runs_created": 0})),
        (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
#[post("/events/{id}/replay")]
pub async fn replay_event(
    state: web::Data<AppState>,
    caller: Member,
    id: Path<Uuid>,
    _: NoBody,
) -> Result<HttpResponse, ApiError> {
    let event = db::events::find_event(&state.db, caller.org_id, *id)
        .await?
        .ok_or(ApiError::NotFound("event"))?;
    if event.source == crate::queue::schedule::SCHEDULE_SOURCE {
        return Err(ApiError::Conflict {
            field: None,
            detail: "a schedule tick is not replayed (no event automation matches it); \
                     retry its run instead: POST /v1/runs/{id}/retry"
                .to_owned(),
        });
    }
    if !matches!(event.status.as_str(), "received" | "dispatched") {
        return Err(ApiError::Conflict {
            field: None,
            detail: format!(
                "an event with status `{}` matches no automation",
                event.status
            ),
        });
    }
    let records = decide(&state.automations, &[PendingEvent::from(event)]);
    let outcome = records
        .first()
        .map(|r| r.outcome.clone())
        .unwrap_or(Value::Null);
    let created = db::inbox::commit_dispatch(&state.db, &records).await?;
    Ok(HttpResponse::Ok().json(json!({"outcome": outcome, "runs_created": created.len()})))
}
