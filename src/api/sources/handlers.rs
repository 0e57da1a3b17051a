//! The `/v1/websocket-sources` endpoints: each reads its request, checks the caller's role, calls
//! one `service` function and answers.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::service::{self, find_source};
use super::shapes::{SendIn, SourceIn, SourceOut};
use crate::actors::commands::{Pause, Reconnect, Resume};
use crate::api::body::Body;
use crate::api::body::NoBody;
use crate::api::caller::Admin;
use crate::api::caller::Caller;
use crate::api::pagination::OffsetQuery;
use crate::api::state::AppState;
use crate::api::{ListOut, Path, Query};
use crate::db;
use crate::error::ApiError;

/// Creates a source.
#[utoipa::path(context_path = "/v1", tag = "websocket-sources", security(("bearer" = [])), request_body = SourceIn,
    responses((status = 201, body = SourceOut), (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
#[post("/websocket-sources")]
pub async fn create_source(
    state: web::Data<AppState>,
    caller: Admin,
    Body(input): Body<SourceIn>,
) -> Result<HttpResponse, ApiError> {
    let row = service::create_source(&state, caller.org_id, input).await?;
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
    let row = find_source(&state, caller.org_id, *id).await?;
    Ok(HttpResponse::Ok().json(SourceOut::load(&state, row).await?))
}

/// Changes a source (JSON merge patch, secrets included: a `headers` or `secrets` map given merges
/// into the stored one, `null` removes an entry or the whole map).
#[utoipa::path(context_path = "/v1", tag = "websocket-sources", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body(content = Object, description = "JSON merge patch of the source"),
    responses((status = 200, body = SourceOut), (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
#[patch("/websocket-sources/{id}")]
pub async fn patch_source(
    state: web::Data<AppState>,
    caller: Admin,
    id: Path<Uuid>,
    Body(patch): Body<Map<String, Value>>,
) -> Result<HttpResponse, ApiError> {
    let row = service::patch_source(&state, caller.org_id, *id, patch).await?;
    Ok(HttpResponse::Ok().json(SourceOut::load(&state, row).await?))
}

/// Deletes a source and frees its slug.
#[utoipa::path(context_path = "/v1", tag = "websocket-sources", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem)))]
#[delete("/websocket-sources/{id}")]
pub async fn delete_source(
    state: web::Data<AppState>,
    caller: Admin,
    id: Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    service::delete_source(&state, caller.org_id, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Drops the connection and connects again now, resetting the backoff; also brings a `failed`
/// or `paused` source back.
#[utoipa::path(context_path = "/v1", tag = "websocket-sources", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 202), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
#[post("/websocket-sources/{id}/reconnect")]
pub async fn reconnect_source(
    state: web::Data<AppState>,
    caller: Admin,
    id: Path<Uuid>,
    _: NoBody,
) -> Result<HttpResponse, ApiError> {
    let row = find_source(&state, caller.org_id, *id).await?;
    refuse_disabled(&row)?;
    service::command(&state, Reconnect { source_id: row.id }).await?;
    Ok(HttpResponse::Accepted().json(json!({"status": "reconnecting"})))
}

/// Closes the connection and keeps it closed until `resume`.
#[utoipa::path(context_path = "/v1", tag = "websocket-sources", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 202), (status = 404, body = crate::error::Problem)))]
#[post("/websocket-sources/{id}/pause")]
pub async fn pause_source(
    state: web::Data<AppState>,
    caller: Admin,
    id: Path<Uuid>,
    _: NoBody,
) -> Result<HttpResponse, ApiError> {
    let row = find_source(&state, caller.org_id, *id).await?;
    service::command(&state, Pause { source_id: row.id }).await?;
    Ok(HttpResponse::Accepted().json(json!({"status": "paused"})))
}

/// A disabled source has no connection to reconnect or resume (409): enabling it starts it.
fn refuse_disabled(row: &entity::websocket_source::Model) -> Result<(), ApiError> {
    if row.enabled {
        return Ok(());
    }
    Err(ApiError::Conflict {
        field: None,
        detail: "the source is disabled; enable it instead".into(),
    })
}

/// Connects a paused source again (409 for a disabled one).
#[utoipa::path(context_path = "/v1", tag = "websocket-sources", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 202), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
#[post("/websocket-sources/{id}/resume")]
pub async fn resume_source(
    state: web::Data<AppState>,
    caller: Admin,
    id: Path<Uuid>,
    _: NoBody,
) -> Result<HttpResponse, ApiError> {
    let row = find_source(&state, caller.org_id, *id).await?;
    refuse_disabled(&row)?;
    service::command(&state, Resume { source_id: row.id }).await?;
    Ok(HttpResponse::Accepted().json(json!({"status": "resuming"})))
}

/// Sends one text frame on the ready connection (409 when not connected).
#[utoipa::path(context_path = "/v1", tag = "websocket-sources", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = SendIn,
    responses((status = 202), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
#[post("/websocket-sources/{id}/send")]
pub async fn send_to_source(
    state: web::Data<AppState>,
    caller: Admin,
    id: Path<Uuid>,
    Body(input): Body<SendIn>,
) -> Result<HttpResponse, ApiError> {
    let row = find_source(&state, caller.org_id, *id).await?;
    let text = match input.message {
        Value::String(text) => text,
        other => other.to_string(),
    };
    service::send_frame(&state, row.id, text).await?;
    Ok(HttpResponse::Accepted().json(json!({"status": "sent"})))
}
