//! The `/v1/automations` endpoints (members may change automations): check, store, then have the
//! automation index apply that one change before answering.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use entity::automation;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::checks::{check_input, warnings_for};
use super::shapes::{AutomationIn, AutomationOut, Trigger, policy_columns};
use crate::api::body::{Body, parse_json};
use crate::api::caller::Caller;
use crate::api::caller::Member;
use crate::api::pagination::OffsetQuery;
use crate::api::state::AppState;
use crate::api::{ListOut, Path, Query};
use crate::cluster::AUTOMATIONS_CHANNEL;
use crate::db;
use crate::error::ApiError;

/// Creates an automation.
#[utoipa::path(context_path = "/v1", tag = "automations", security(("bearer" = [])), request_body = AutomationIn,
    responses((status = 201, body = AutomationOut), (status = 422, body = crate::error::Problem)))]
#[post("/automations")]
pub async fn create_automation(
    state: web::Data<AppState>,
    caller: Member,
    Body(input): Body<AutomationIn>,
) -> Result<HttpResponse, ApiError> {
    check_input(&input)?;
    let warnings = warnings_for(&state, caller.org_id, &input.trigger).await?;
    let now = db::now();
    let (retry, lease_s, max_concurrency) = policy_columns(&input)?;
    let row = automation::Model {
        id: db::new_id(),
        org_id: caller.org_id,
        name: input.name,
        enabled: input.enabled,
        trigger: serde_json::to_value(&input.trigger).map_err(|e| ApiError::Internal(e.into()))?,
        retry,
        lease_s,
        max_concurrency,
        created_at: now,
        updated_at: now,
    };
    let row = db::automations::insert_automation(&state.db, row).await?;
    state.automations.apply(row.id).await?;
    crate::cluster::announce(&state.db, &state.cluster, AUTOMATIONS_CHANNEL, row.id).await;
    Ok(HttpResponse::Created().json(AutomationOut::new(row, warnings)))
}

/// Lists the org's automations, oldest first.
#[utoipa::path(context_path = "/v1", tag = "automations", security(("bearer" = [])), params(OffsetQuery),
    responses((status = 200, body = ListOut<AutomationOut>)))]
#[get("/automations")]
pub async fn list_automations(
    state: web::Data<AppState>,
    caller: Caller,
    query: Query<OffsetQuery>,
) -> Result<HttpResponse, ApiError> {
    let (rows, total) =
        db::automations::list_automations(&state.db, caller.org_id, query.page()?).await?;
    Ok(HttpResponse::Ok().json(ListOut::<AutomationOut>::new(rows, total)))
}

async fn find(state: &AppState, caller: &Caller, id: Uuid) -> Result<automation::Model, ApiError> {
    db::automations::find_automation(&state.db, caller.org_id, id)
        .await?
        .ok_or(ApiError::NotFound("automation"))
}

/// Shows one automation.
#[utoipa::path(context_path = "/v1", tag = "automations", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = AutomationOut), (status = 404, body = crate::error::Problem)))]
#[get("/automations/{id}")]
pub async fn get_automation(
    state: web::Data<AppState>,
    caller: Caller,
    id: Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let row = find(&state, &caller, *id).await?;
    let trigger: Option<Trigger> = serde_json::from_value(row.trigger.clone()).ok();
    let warnings = match trigger {
        Some(t) => warnings_for(&state, caller.org_id, &t).await?,
        None => Vec::new(),
    };
    Ok(HttpResponse::Ok().json(AutomationOut::new(row, warnings)))
}

/// Changes an automation (JSON merge patch).
#[utoipa::path(context_path = "/v1", tag = "automations", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body(content = Object, description = "JSON merge patch of the automation"),
    responses((status = 200, body = AutomationOut), (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
#[patch("/automations/{id}")]
pub async fn patch_automation(
    state: web::Data<AppState>,
    caller: Member,
    id: Path<Uuid>,
    Body(patch): Body<Map<String, Value>>,
) -> Result<HttpResponse, ApiError> {
    let mut row = find(&state, &caller, *id).await?;
    let mut doc = json!({"name": row.name, "enabled": row.enabled, "trigger": row.trigger});
    if let Some(retry) = &row.retry {
        doc["retry"] = retry.clone();
    }
    if let Some(v) = row.lease_s {
        doc["lease_s"] = json!(v);
    }
    if let Some(v) = row.max_concurrency {
        doc["max_concurrency"] = json!(v);
    }
    json_patch::merge(&mut doc, &Value::Object(patch));
    let bytes = serde_json::to_vec(&doc).map_err(|e| ApiError::Internal(e.into()))?;
    let input: AutomationIn = parse_json(&bytes)?;
    check_input(&input)?;
    let warnings = warnings_for(&state, caller.org_id, &input.trigger).await?;
    (row.retry, row.lease_s, row.max_concurrency) = policy_columns(&input)?;
    row.name = input.name;
    row.enabled = input.enabled;
    row.trigger = serde_json::to_value(&input.trigger).map_err(|e| ApiError::Internal(e.into()))?;
    row.updated_at = db::now();
    let row = db::automations::update_automation(&state.db, row).await?;
    state.automations.apply(row.id).await?;
    crate::cluster::announce(&state.db, &state.cluster, AUTOMATIONS_CHANNEL, row.id).await;
    Ok(HttpResponse::Ok().json(AutomationOut::new(row, warnings)))
}

/// Deletes an automation (its runs stay).
#[utoipa::path(context_path = "/v1", tag = "automations", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem)))]
#[delete("/automations/{id}")]
pub async fn delete_automation(
    state: web::Data<AppState>,
    caller: Member,
    id: Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let row = find(&state, &caller, *id).await?;
    db::automations::delete_automation(&state.db, row.id).await?;
    state.automations.apply(row.id).await?;
    crate::cluster::announce(&state.db, &state.cluster, AUTOMATIONS_CHANNEL, row.id).await;
    Ok(HttpResponse::NoContent().finish())
}
