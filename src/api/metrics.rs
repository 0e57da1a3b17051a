//! `GET /metrics`: Prometheus metrics in the OpenMetrics text format. Open by default (Prometheus
//! scrapes it as is; bind it apart from the API with `SWITCHBOARD_METRICS_BIND`); with
//! `SWITCHBOARD_METRICS_TOKEN` set it answers only `Authorization: Bearer <token>`, since its labels
//! name every org's source slugs. Every metric is listed in `docs/operations.md`.

use actix_web::{HttpRequest, HttpResponse, get, web};
use secrecy::ExposeSecret as _;
use subtle::ConstantTimeEq as _;

use crate::actors::commands::CollectMetrics;
use crate::api::caller::bearer_token;
use crate::api::state::AppState;
use crate::error::ApiError;

/// The content type of the OpenMetrics text format (what the encoder writes; Prometheus reads it).
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics, with the per-source values read from the supervisor and the open runs counted
/// at scrape time.
#[get("/metrics")]
pub async fn metrics(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if let Some(token) = &state.settings.metrics_token {
        let presented = bearer_token(&req).unwrap_or_default();
        let expected = token.expose_secret();
        if !bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
            return Err(ApiError::Unauthorized);
        }
    }
    let sources = state
        .supervisor
        .send(CollectMetrics)
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("supervisor unavailable: {e}")))?;
    // PENDING and RUNNING counts from their partial indexes; without storage the gauge keeps
    // its last values rather than failing the scrape.
    match crate::db::queue::count_open(&state.db).await {
        Ok(counts) => state.metrics.queue.set_open_runs(&counts),
        Err(err) => tracing::debug!(error = %err, "counting open runs for /metrics failed"),
    }
    let text = state
        .metrics
        .render(sources, state.webhook_counters.totals())
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("encoding metrics: {e}")))?;
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE).body(text))
}
