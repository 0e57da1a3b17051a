//! `/v1/websocket-sources`: configuration of outbound WebSocket sources (admin only to change).
//! Secrets in `config` (`headers`, `secrets`, `app_token`) are write-only: they are sealed and
//! shown back only as names and `has_…` flags.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::body::Body;
use super::source_dto::{SourceIn, SourceOut, apply_patch, build_row, input_of};
use super::{ListOut, Path, Query};
use crate::auth::Caller;
use crate::db::{self, pagination::OffsetQuery, slugs::ClaimError};
use crate::error::ApiError;
use crate::state::AppState;

fn slug_conflict(err: ClaimError) -> ApiError {
    match err {
        ClaimError::Taken(owner) => ApiError::Conflict {
            field: Some("source".to_owned()),
            detail: format!("slug is already used by a {owner} of this org"),
        },
        ClaimError::Db(err) => err.into(),
    }
}

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
    let txn = sea_orm::TransactionTrait::begin(&state.db).await?;
    db::slugs::claim_slug(&txn, caller.org_id, &row.source, "websocket", id)
        .await
        .map_err(slug_conflict)?;
    let row = db::sources::insert_source(&txn, row).await?;
    txn.commit().await?;
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
    row.revision = current.revision + 1;
    row.created_at = current.created_at;
    let txn = sea_orm::TransactionTrait::begin(&state.db).await?;
    if row.source != current.source {
        db::slugs::claim_slug(&txn, caller.org_id, &row.source, "websocket", row.id)
            .await
            .map_err(slug_conflict)?;
        db::slugs::release_slug(&txn, caller.org_id, &current.source, row.id).await?;
    }
    let enabled_changed = row.enabled != current.enabled;
    let row = db::sources::update_source(&txn, row).await?;
    if enabled_changed {
        let state_name = if row.enabled {
            "connecting"
        } else {
            "disabled"
        };
        db::sources::set_state(&txn, row.id, state_name, None).await?;
    }
    txn.commit().await?;
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
    let txn = sea_orm::TransactionTrait::begin(&state.db).await?;
    db::slugs::release_slug(&txn, caller.org_id, &row.source, row.id).await?;
    db::sources::delete_source(&txn, row.id).await?;
    txn.commit().await?;
    tracing::info!(source_id = %row.id, "source deleted");
    Ok(HttpResponse::NoContent().finish())
}

/// Operator actions that need running connections.
#[utoipa::path(context_path = "/v1", tag = "websocket-sources", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("action" = String, Path, description = "reconnect | pause | resume | send")),
    responses((status = 202), (status = 404, body = crate::error::Problem), (status = 501, body = crate::error::Problem)))]
#[post("/websocket-sources/{id}/{action}")]
pub async fn source_action(
    state: web::Data<AppState>,
    caller: Caller,
    path: Path<(Uuid, String)>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let (id, action) = path.into_inner();
    if !matches!(action.as_str(), "reconnect" | "pause" | "resume" | "send") {
        return Err(ApiError::NotFound("action"));
    }
    db::sources::find_source(&state.db, caller.org_id, id)
        .await?
        .ok_or(ApiError::NotFound("source"))?;
    Err(ApiError::NotImplemented(
        "connections are not run by this version yet; the source's configuration is stored",
    ))
}
