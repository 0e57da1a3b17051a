//! `GET /metrics`: Prometheus metrics in the OpenMetrics text format, no authentication (bind it to a private address
//! with `SWITCHBOARD_METRICS_BIND` to serve it apart from the API). Every metric is listed in
//! `docs/operations.md`.

use actix_web::{HttpResponse, get, web};

use crate::actors::messages::CollectMetrics;
use crate::error::ApiError;
use crate::state::AppState;

/// The content type of the OpenMetrics text format (what the encoder writes; Prometheus reads it).
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics, with the per-source values read from the supervisor at scrape time.
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let sources = state
        .supervisor
        .send(CollectMetrics)
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("supervisor unavailable: {e}")))?;
    let text = state
        .metrics
        .render(sources, state.webhook_counters.totals())
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("encoding metrics: {e}")))?;
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE).body(text))
}
