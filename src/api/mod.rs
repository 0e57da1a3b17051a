//! The HTTP API: the whole route table, the list envelopes, and the error handlers that make
//! path and query problems answer in problem+json too.

pub mod automations;
pub mod body;
pub mod caller;
pub mod cluster;
pub mod dry_run;
pub mod events;
pub mod expressions;
pub mod fallback;
pub mod inbound;
pub mod key_uses;
pub mod keys;
pub mod metrics;
mod nul_guard;
pub mod openapi;
mod openapi_problems;
pub mod ops;
pub mod page;
pub mod pagination;
pub mod query;
pub mod replay;
pub mod run_counts;
pub mod runs;
pub(crate) mod server;
pub mod sources;
pub mod state;
pub mod stream;
pub mod webhooks;
pub mod worker;

pub use actix_web::web::Path;
use actix_web::{HttpRequest, error::InternalError, web};
pub use query::Query;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;

/// A page of a configuration resource.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListOut<T> {
    /// The page.
    pub items: Vec<T>,
    /// Items in all pages.
    pub total: u64,
}

impl<T> ListOut<T> {
    /// Converts rows into their response shape.
    pub fn new<M: Into<T>>(rows: Vec<M>, total: u64) -> Self {
        Self {
            items: rows.into_iter().map(Into::into).collect(),
            total,
        }
    }
}

/// A page of events or runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct CursorOut<T> {
    /// The page, newest first.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

impl<T> CursorOut<T> {
    /// Converts rows into their response shape.
    pub fn new<M: Into<T>>(rows: Vec<M>, next_cursor: Option<String>) -> Self {
        Self {
            items: rows.into_iter().map(Into::into).collect(),
            next_cursor,
        }
    }
}

fn path_error(err: actix_web::error::PathError, req: &HttpRequest) -> actix_web::Error {
    // A malformed id can name nothing that exists; but `PATCH /v1/automations/test` is the
    // documented `/v1/automations/test` under a method it does not have (405), not an id.
    let answer = match fallback::unrouted_error(req.method().as_str(), req.path()) {
        ApiError::NotFound(_) => ApiError::NotFound("resource"),
        other => other,
    };
    InternalError::from_response(err, actix_web::ResponseError::error_response(&answer)).into()
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PathConfig::default().error_handler(path_error))
        .service(page::index)
        .service(page::script)
        .service(page::stylesheet)
        .service(ops::healthz)
        .service(ops::readyz)
        .service(openapi::openapi_json)
        .service(openapi::swagger_ui())
        .service(
            web::scope("/v1")
                .wrap(actix_web::middleware::from_fn(nul_guard::refuse_nul))
                .wrap(actix_web::middleware::from_fn(caller::authenticate_first))
                .service(keys::me)
                .service(cluster::get_cluster)
                .service(cluster::drain)
                .service(keys::create_api_key)
                .service(keys::list_api_keys)
                .service(keys::delete_api_key)
                .service(sources::create_source)
                .service(sources::list_sources)
                .service(sources::get_source)
                .service(sources::patch_source)
                .service(sources::delete_source)
                .service(sources::reconnect_source)
                .service(sources::pause_source)
                .service(sources::resume_source)
                .service(sources::send_to_source)
                .service(webhooks::create_webhook)
                .service(webhooks::list_webhooks)
                .service(webhooks::get_webhook)
                .service(webhooks::patch_webhook)
                .service(webhooks::delete_webhook)
                .service(webhooks::rotate_secret)
                .service(dry_run::dry_run)
                .service(replay::replay_event)
                .service(automations::create_automation)
                .service(automations::list_automations)
                .service(automations::get_automation)
                .service(automations::patch_automation)
                .service(automations::delete_automation)
                .service(worker::claim_runs)
                .service(worker::complete_runs)
                .service(worker::fail_runs)
                .service(worker::heartbeat)
                .service(worker::complete_run)
                .service(worker::fail_run)
                .service(worker::retry_run)
                .service(runs::list_automation_runs)
                .service(runs::list_runs)
                .service(run_counts::count_runs)
                .service(runs::get_run)
                .service(runs::cancel_run)
                .service(events::list_events)
                .service(events::get_event)
                .service(expressions::evaluate)
                .service(stream::stream)
                .service(stream::create_stream_token)
                .service(inbound::receive),
        )
        .default_service(web::to(fallback::unrouted));
}
