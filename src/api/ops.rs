//! Operational endpoints: liveness and readiness.

use actix_web::{HttpResponse, get, web};
use sea_orm::ConnectionTrait;
use serde_json::json;

use crate::api::state::AppState;

/// Liveness: the process answers.
#[utoipa::path(tag = "ops", responses((status = 200, description = "Alive", example = json!({"status": "ok"}))))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Readiness: the database answers a query.
#[utoipa::path(tag = "ops", responses(
    (status = 200, description = "Ready", example = json!({"status": "ready"})),
    (status = 503, description = "Database unreachable")
))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.db.execute_unprepared("SELECT 1").await {
        Ok(_) => HttpResponse::Ok().json(json!({"status": "ready"})),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check failed");
            HttpResponse::ServiceUnavailable()
                .insert_header(("Retry-After", "5"))
                .json(json!({"status": "unavailable", "detail": "database unreachable"}))
        }
    }
}
