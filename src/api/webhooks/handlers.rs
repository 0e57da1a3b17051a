//! The `/v1/webhooks` endpoints: each reads its request, checks the caller's role, calls one
//! `service` function and answers.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::service::{self, find_webhook};
use super::shapes::{RotateIn, WebhookIn, WebhookOut};
use crate::api::body::{Body, OptionalBody};
use crate::api::caller::Admin;
use crate::api::caller::Caller;
use crate::api::pagination::OffsetQuery;
use crate::api::state::AppState;
use crate::api::{ListOut, Path, Query};
use crate::db;
use crate::error::ApiError;

/// Creates a webhook; without `secret` one is generated and returned once.
#[utoipa::path(context_path = "/v1", tag = "webhooks", security(("bearer" = [])), request_body = WebhookIn,
    responses((status = 201, body = WebhookOut), (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
#[post("/webhooks")]
pub async fn create_webhook(
    state: web::Data<AppState>,
    caller: Admin,
    Body(input): Body<WebhookIn>,
) -> Result<HttpResponse, ApiError> {
    let (row, generated) = service::create_webhook(&state, caller.org_id, input).await?;
    let mut out = WebhookOut::new(&state, row);
    out.secret = generated;
    Ok(HttpResponse::Created().json(out))
}

/// Lists the org's webhooks, oldest first.
#[utoipa::path(context_path = "/v1", tag = "webhooks", security(("bearer" = [])), params(OffsetQuery),
    responses((status = 200, body = ListOut<WebhookOut>)))]
#[get("/webhooks")]
pub async fn list_webhooks(
    state: web::Data<AppState>,
    caller: Caller,
    query: Query<OffsetQuery>,
) -> Result<HttpResponse, ApiError> {
    let (rows, total) =
        db::webhooks::list_webhooks(&state.db, caller.org_id, query.page()?).await?;
    let items = rows
        .into_iter()
        .map(|m| WebhookOut::new(&state, m))
        .collect();
    Ok(HttpResponse::Ok().json(ListOut { items, total }))
}

/// Shows one webhook.
#[utoipa::path(context_path = "/v1", tag = "webhooks", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = WebhookOut), (status = 404, body = crate::error::Problem)))]
#[get("/webhooks/{id}")]
pub async fn get_webhook(
    state: web::Data<AppState>,
    caller: Caller,
    id: Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let row = find_webhook(&state, caller.org_id, *id).await?;
    Ok(HttpResponse::Ok().json(WebhookOut::new(&state, row)))
}

/// Changes a webhook (JSON merge patch; a given `secret` replaces the current one at once).
#[utoipa::path(context_path = "/v1", tag = "webhooks", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body(content = Object, description = "JSON merge patch of the webhook"),
    responses((status = 200, body = WebhookOut), (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
#[patch("/webhooks/{id}")]
pub async fn patch_webhook(
    state: web::Data<AppState>,
    caller: Admin,
    id: Path<Uuid>,
    Body(patch): Body<Map<String, Value>>,
) -> Result<HttpResponse, ApiError> {
    let (row, generated) = service::patch_webhook(&state, caller.org_id, *id, patch).await?;
    let mut out = WebhookOut::new(&state, row);
    out.secret = generated;
    Ok(HttpResponse::Ok().json(out))
}

/// Deletes a webhook and frees its slug.
#[utoipa::path(context_path = "/v1", tag = "webhooks", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem)))]
#[delete("/webhooks/{id}")]
pub async fn delete_webhook(
    state: web::Data<AppState>,
    caller: Admin,
    id: Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    service::delete_webhook(&state, caller.org_id, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Replaces the secret; the previous one keeps verifying for `grace_period_s` (default 24 h).
/// The new secret is in the response, once.
#[utoipa::path(context_path = "/v1", tag = "webhooks", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body(content = Option<RotateIn>, description = "Optional; an empty body keeps the previous secret valid for the default grace period"),
    responses((status = 200, body = WebhookOut), (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
#[post("/webhooks/{id}/rotate-secret")]
pub async fn rotate_secret(
    state: web::Data<AppState>,
    caller: Admin,
    id: Path<Uuid>,
    OptionalBody(body): OptionalBody<RotateIn>,
) -> Result<HttpResponse, ApiError> {
    let input = body.unwrap_or_default();
    let (row, secret) = service::rotate_secret(&state, caller.org_id, *id, input).await?;
    let mut out = WebhookOut::new(&state, row);
    out.secret = Some(secret);
    Ok(HttpResponse::Ok().json(out))
}
