//! `/v1/webhooks`: inbound webhook configuration (admin only to change). Secrets are write-only;
//! a generated secret is returned once, at creation or rotation.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::body::{Body, OptionalBody};
use super::webhook_dto::{
    RotateIn, WebhookIn, WebhookOut, apply_patch, build_row, open_secrets, seal_secrets,
};
use super::{ListOut, Path, Query};
use crate::auth::Caller;
use crate::db::{self, pagination::OffsetQuery};
use crate::error::ApiError;
use crate::state::AppState;
use crate::webhooks::verifier::WebhookSecrets;

async fn find(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
) -> Result<entity::webhook::Model, ApiError> {
    db::webhooks::find_webhook(&state.db, caller.org_id, id)
        .await?
        .ok_or(ApiError::NotFound("webhook"))
}

/// Creates a webhook; without `secret` one is generated and returned once.
#[utoipa::path(context_path = "/v1", tag = "webhooks", security(("bearer" = [])), request_body = WebhookIn,
    responses((status = 201, body = WebhookOut), (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
#[post("/webhooks")]
pub async fn create_webhook(
    state: web::Data<AppState>,
    caller: Caller,
    Body(input): Body<WebhookIn>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let id = db::new_id();
    let (row, generated) = build_row(&state, caller.org_id, id, input, None)?;
    let txn = db::WriteTxn::begin(&state.db).await?;
    db::slugs::claim_slug(&txn, caller.org_id, &row.source, "webhook", id).await?;
    let row = db::webhooks::insert_webhook(&txn, row).await?;
    txn.commit().await?;
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
    let row = find(&state, &caller, *id).await?;
    Ok(HttpResponse::Ok().json(WebhookOut::new(&state, row)))
}

/// Changes a webhook (JSON merge patch; a given `secret` replaces the current one at once).
#[utoipa::path(context_path = "/v1", tag = "webhooks", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body(content = Object, description = "JSON merge patch of the webhook"),
    responses((status = 200, body = WebhookOut), (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
#[patch("/webhooks/{id}")]
pub async fn patch_webhook(
    state: web::Data<AppState>,
    caller: Caller,
    id: Path<Uuid>,
    Body(patch): Body<Map<String, Value>>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let current = find(&state, &caller, *id).await?;
    let input = apply_patch(&current, patch)?;
    let (mut row, generated) = build_row(&state, caller.org_id, current.id, input, Some(&current))?;
    row.created_at = current.created_at;
    let txn = db::WriteTxn::begin(&state.db).await?;
    if row.source != current.source {
        db::slugs::claim_slug(&txn, caller.org_id, &row.source, "webhook", row.id).await?;
        db::slugs::release_slug(&txn, caller.org_id, &current.source, row.id).await?;
    }
    let row = db::webhooks::update_webhook(&txn, row).await?;
    txn.commit().await?;
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
    caller: Caller,
    id: Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let row = find(&state, &caller, *id).await?;
    let txn = db::WriteTxn::begin(&state.db).await?;
    db::slugs::release_slug(&txn, caller.org_id, &row.source, row.id).await?;
    db::webhooks::delete_webhook(&txn, row.id).await?;
    txn.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Replaces the secret; the previous one keeps verifying for `grace_period_s` (default 24 h).
/// The new secret is in the response, once.
#[utoipa::path(context_path = "/v1", tag = "webhooks", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body(content = Option<RotateIn>, description = "Optional; an empty body keeps the previous secret valid for the default grace period"),
    responses((status = 200, body = WebhookOut), (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
#[post("/webhooks/{id}/rotate-secret")]
pub async fn rotate_secret(
    state: web::Data<AppState>,
    caller: Caller,
    id: Path<Uuid>,
    OptionalBody(body): OptionalBody<RotateIn>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let input = body.unwrap_or_default();
    let grace = input.grace_period_s.unwrap_or(86_400);
    if grace > 30 * 86_400 {
        return Err(ApiError::field(
            "grace_period_s",
            "must be at most 2592000 (30 days)",
        ));
    }
    let mut row = find(&state, &caller, *id).await?;
    if row.insecure {
        return Err(ApiError::Conflict {
            field: None,
            detail: "an insecure webhook has no secret to rotate".into(),
        });
    }
    let verifier = WebhookOut::verifier_of(&row)?;
    let old = open_secrets(&state, &row)?;
    let new_secret = verifier.generate_secret();
    let now = db::now();
    let secrets = WebhookSecrets {
        current: new_secret.clone(),
        previous: old.map(|s| s.current).filter(|_| grace > 0),
        previous_expires_at: (grace > 0).then(|| now + chrono::Duration::seconds(grace.into())),
    };
    row.secrets = Some(seal_secrets(&state, row.id, &secrets)?);
    row.secret_rotated_at = Some(now);
    row.updated_at = now;
    let row = db::webhooks::update_webhook(&state.db, row).await?;
    let mut out = WebhookOut::new(&state, row);
    out.secret = Some(new_secret);
    Ok(HttpResponse::Ok().json(out))
}
