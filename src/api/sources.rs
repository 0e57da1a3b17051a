//! `/v1/websocket-sources`: configuration of outbound WebSocket sources (admin only to change).
//! Secrets in `config` (`headers`, `secrets`, `app_token`) are write-only: they are sealed and
//! shown back only as names and `has_…` flags.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::body::Body;
use super::source_destination::check_destination;
use super::source_dto::{SourceIn, SourceOut, apply_patch, build_row, input_of};
use super::{ListOut, Path, Query};
use std::sync::Arc;

use crate::actors::commands::{Pause, Reconnect, Remove, Resume, SendFrame, Update};
use crate::actors::spec::SourceSpec;
use crate::auth::Caller;
use crate::db::{self, pagination::OffsetQuery};
use crate::error::ApiError;
use crate::state::AppState;

/// Creates a source.
#[utoipa::path(context_path = "/v1", tag = "websocket-sources", security(("bearer" = [])), request_body = SourceIn,
    responses((status = 201, body = SourceOut), (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
#[post("/websocket-sources")]
pub async fn create_source(
    state: web::Data<AppState>,
    caller: Caller,
    Body(input): Body<SourceIn>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let id = db::new_id();
    let row = build_row(&state, caller.org_id, id, input, None)?;
    check_destination(&state, &row, None).await?;
    let gate = db::write_gate(&state.db).await;
    let txn = db::begin_write(&state.db).await?;
    db::slugs::claim_slug(&txn, caller.org_id, &row.source, "websocket", id).await?;
    let row = db::sources::insert_source(&txn, row).await?;
    txn.commit().await?;
    drop(gate);
    notify_supervisor(&state, &row)?;
    tracing::info!(source_id = %id, slug = %row.source, "source created");
    let out = SourceOut::load(&state, row).await?;
    Ok(HttpResponse::Created().json(out))
}

/// Lists the org's sources, oldest first.
#[utoipa::path(context_path = "/v1", tag = "websocket-sources", security(("bearer" = [])), params(OffsetQuery),
    responses((status = 200, body = ListOut<SourceOut>)))]
#[get("/websocket-sources")]
pub async fn list_sources(
    state: web::Data<AppState>,
    caller: Caller,
    query: Query<OffsetQuery>,
) -> Result<HttpResponse, ApiError> {
    let (rows, total) = db::sources::list_sources(&state.db, caller.org_id, query.page()?).await?;
    let items = SourceOut::load_many(&state, rows).await?;
    Ok(HttpResponse::Ok().json(ListOut { items, total }))
}

/// Shows one source with its live status.
#[utoipa::path(context_path = "/v1", tag = "websocket-sources", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = SourceOut), (status = 404, body = crate::error::Problem)))]
#[get("/websocket-sources/{id}")]
pub async fn get_source(
    state: web::Data<AppState>,
    caller: Caller,
    id: Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let row = db::sources::find_source(&state.db, caller.org_id, *id)
        .await?
        .ok_or(ApiError::NotFound("source"))?;
    Ok(HttpResponse::Ok().json(SourceOut::load(&state, row).await?))
}

/// Changes a source (JSON merge patch; secrets given in `config` replace the stored ones).
#[utoipa::path(context_path = "/v1", tag = "websocket-sources", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body(content = Object, description = "JSON merge patch of the source"),
    responses((status = 200, body = SourceOut), (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
#[patch("/websocket-sources/{id}")]
pub async fn patch_source(
    state: web::Data<AppState>,
    caller: Caller,
    id: Path<Uuid>,
    Body(patch): Body<Map<String, Value>>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let current = db::sources::find_source(&state.db, caller.org_id, *id)
        .await?
        .ok_or(ApiError::NotFound("source"))?;
    let input = apply_patch(input_of(&current), patch)?;
    let mut row = build_row(&state, caller.org_id, current.id, input, Some(&current))?;
    check_destination(&state, &row, Some(&current)).await?;
    row.revision = current.revision + 1;
    row.created_at = current.created_at;
    let gate = db::write_gate(&state.db).await;
    let txn = db::begin_write(&state.db).await?;
    if row.source != current.source {
        db::slugs::claim_slug(&txn, caller.org_id, &row.source, "websocket", row.id).await?;
        db::slugs::release_slug(&txn, caller.org_id, &current.source, row.id).await?;
    }
    let row = db::sources::update_source(&txn, row).await?;
    txn.commit().await?;
    drop(gate);
    notify_supervisor(&state, &row)?;
    tracing::info!(source_id = %row.id, revision = row.revision, "source updated");
    Ok(HttpResponse::Ok().json(SourceOut::load(&state, row).await?))
}

/// Deletes a source and frees its slug.
#[utoipa::path(context_path = "/v1", tag = "websocket-sources", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem)))]
#[delete("/websocket-sources/{id}")]
pub async fn delete_source(
    state: web::Data<AppState>,
    caller: Caller,
    id: Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let row = db::sources::find_source(&state.db, caller.org_id, *id)
        .await?
        .ok_or(ApiError::NotFound("source"))?;
    let gate = db::write_gate(&state.db).await;
    let txn = db::begin_write(&state.db).await?;
    db::slugs::release_slug(&txn, caller.org_id, &row.source, row.id).await?;
    db::sources::delete_source(&txn, row.id).await?;
    txn.commit().await?;
    drop(gate);
    state.supervisor.do_send(Remove { source_id: row.id });
    tracing::info!(source_id = %row.id, "source deleted");
    Ok(HttpResponse::NoContent().finish())
}

/// Body of `send`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendIn {
    /// Text to send as one frame; a JSON value is sent as its JSON text.
    pub message: Value,
}

async fn find(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
) -> Result<entity::websocket_source::Model, ApiError> {
    db::sources::find_source(&state.db, caller.org_id, id)
        .await?
        .ok_or(ApiError::NotFound("source"))
}

/// Sends an operator command (admin only); a source the supervisor does not know is a 409.
async fn command<M>(
    state: &AppState,
    caller: &Caller,
    source_id: Uuid,
    message: impl FnOnce(Uuid) -> M,
) -> Result<(), ApiError>
where
    M: actix::Message<Result = bool> + std::marker::Send + 'static,
    crate::actors::supervisor::SourceSupervisor: actix::Handler<M>,
{
    caller.require_admin()?;
    let known = state
        .supervisor
        .send(message(source_id))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    if known {
        Ok(())
    } else {
        Err(unknown_to_supervisor())
    }
}

fn unknown_to_supervisor() -> ApiError {
    ApiError::Conflict {
        field: None,
        detail: "the source cannot run: its stored configuration does not compile (see the logs)"
            .into(),
    }
}

/// Drops the connection and connects again now, resetting the backoff; also brings a `failed`
/// or `paused` source back.
#[utoipa::path(context_path = "/v1", tag = "websocket-sources", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 202), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
#[post("/websocket-sources/{id}/reconnect")]
pub async fn reconnect_source(
    state: web::Data<AppState>,
    caller: Caller,
    id: Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let row = find(&state, &caller, *id).await?;
    if !row.enabled {
        return Err(ApiError::Conflict {
            field: None,
            detail: "the source is disabled; enable it instead".into(),
        });
    }
    command(&state, &caller, row.id, |source_id| Reconnect { source_id }).await?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({"status": "reconnecting"})))
}

/// Closes the connection and keeps it closed until `resume`.
#[utoipa::path(context_path = "/v1", tag = "websocket-sources", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 202), (status = 404, body = crate::error::Problem)))]
#[post("/websocket-sources/{id}/pause")]
pub async fn pause_source(
    state: web::Data<AppState>,
    caller: Caller,
    id: Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let row = find(&state, &caller, *id).await?;
    command(&state, &caller, row.id, |source_id| Pause { source_id }).await?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({"status": "paused"})))
}

/// Connects a paused source again.
#[utoipa::path(context_path = "/v1", tag = "websocket-sources", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 202), (status = 404, body = crate::error::Problem)))]
#[post("/websocket-sources/{id}/resume")]
pub async fn resume_source(
    state: web::Data<AppState>,
    caller: Caller,
    id: Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let row = find(&state, &caller, *id).await?;
    command(&state, &caller, row.id, |source_id| Resume { source_id }).await?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({"status": "resuming"})))
}

/// Sends one text frame on the ready connection (409 when not connected).
#[utoipa::path(context_path = "/v1", tag = "websocket-sources", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = SendIn,
    responses((status = 202), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
#[post("/websocket-sources/{id}/send")]
pub async fn send_to_source(
    state: web::Data<AppState>,
    caller: Caller,
    id: Path<Uuid>,
    Body(input): Body<SendIn>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let row = find(&state, &caller, *id).await?;
    let text = match input.message {
        Value::String(text) => text,
        other => other.to_string(),
    };
    let sent = state
        .supervisor
        .send(SendFrame {
            source_id: row.id,
            text,
        })
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    match sent {
        Ok(()) => Ok(HttpResponse::Accepted().json(serde_json::json!({"status": "sent"}))),
        Err(err) => Err(ApiError::Conflict {
            field: None,
            detail: err.to_string(),
        }),
    }
}

/// Tells the supervisor about a committed row.
fn notify_supervisor(
    state: &AppState,
    row: &entity::websocket_source::Model,
) -> Result<(), ApiError> {
    let spec = SourceSpec::from_row(row, &state.keyring, &state.settings.slack_api_base)
        .map_err(ApiError::Internal)?;
    state.supervisor.do_send(Update {
        spec: Arc::new(spec),
    });
    Ok(())
}
