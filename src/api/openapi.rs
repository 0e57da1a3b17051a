//! The OpenAPI document (generated from the handlers) at `/openapi.json` and Swagger UI at
//! `/docs`, served from assets vendored into the binary.

use actix_web::{HttpResponse, get};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use super::openapi_problems::ProblemResponses;

use super::{
    automations, cluster, dry_run, events, expressions, inbound, keys, ops, replay, run_counts,
    runs, sources, stream, webhooks, worker,
};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every documented endpoint and schema.
#[derive(OpenApi)]
#[openapi(
    info(title = "Switchboard", description = "Outbound WebSocket sources and signed webhooks become events; automations turn matching events into runs."),
    modifiers(&BearerAuth, &ProblemResponses),
    paths(
        ops::healthz, ops::readyz, cluster::get_cluster, cluster::drain,
        keys::me, keys::create_api_key, keys::list_api_keys, keys::delete_api_key,
        sources::create_source, sources::list_sources, sources::get_source, sources::patch_source,
        sources::delete_source, sources::reconnect_source, sources::pause_source, sources::resume_source,
        sources::send_to_source,
        webhooks::create_webhook, webhooks::list_webhooks, webhooks::get_webhook, webhooks::patch_webhook,
        webhooks::delete_webhook, webhooks::rotate_secret,
        automations::create_automation, automations::list_automations, automations::get_automation,
        automations::patch_automation, automations::delete_automation,
        runs::list_runs, runs::list_automation_runs, runs::get_run, runs::cancel_run,
        run_counts::count_runs,
        worker::claim_runs, worker::heartbeat, worker::complete_run, worker::fail_run,
        worker::complete_runs, worker::fail_runs, worker::retry_run,
        events::list_events, events::get_event,
        expressions::evaluate, replay::replay_event, dry_run::dry_run, inbound::receive,
        stream::stream, stream::create_stream_token,
    ),
    components(schemas(crate::error::Problem, crate::validation::FieldError, sources::shapes::SourceIn, webhooks::shapes::WebhookIn,
        crate::sources::config::TlsSettings)),
    tags(
        (name = "ops"), (name = "keys"), (name = "websocket-sources"), (name = "webhooks"),
        (name = "automations"), (name = "runs"), (name = "events"), (name = "expressions"),
        (name = "stream"), (name = "workers"),
    )
)]
pub struct ApiDoc;

/// The OpenAPI document as JSON.
#[get("/openapi.json")]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

/// Swagger UI at `/docs`, reading `/openapi.json`.
pub fn swagger_ui() -> SwaggerUi {
    SwaggerUi::new("/docs/{_:.*}").url("/docs/openapi.json", ApiDoc::openapi())
}
