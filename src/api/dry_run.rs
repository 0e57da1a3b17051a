//! `POST /v1/automations/test`: a dry run. A sample message goes through a source's expressions
//! (`prepare`, as ingest does) and one trigger (`automations::evaluate`, as dispatch does);
//! nothing is stored. A schedule trigger shows its next ticks instead.

use actix_web::{HttpResponse, post, web};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::automations::{Trigger, check_trigger};
use super::body::Body;
use crate::api::caller::Caller;
use crate::api::state::AppState;
use crate::db;
use crate::error::ApiError;
use crate::pipeline::automations;
use crate::pipeline::expr::{Limits, to_value};
use crate::pipeline::ingest::{Prepared, SourceExprs, prepare};
use crate::queue::schedule::Schedule;
use crate::webhooks::verifier::Verifier;

/// A dry run.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"trigger": {"type": "event", "source": "orders", "on": "order.*", "filter": "data.amount > `100`"},
    "message": {"type": "order.created", "id": "o1", "data": {"amount": 150}}}))]
pub struct DryRunIn {
    /// A trigger to try (or give `automation_id`).
    #[serde(default)]
    pub trigger: Option<Trigger>,
    /// A stored automation to try.
    #[serde(default)]
    pub automation_id: Option<Uuid>,
    /// Source slug whose expressions apply (default: the trigger's source).
    #[serde(default)]
    pub source: Option<String>,
    /// A sample message as the source would receive it (not used for a schedule trigger).
    #[serde(default)]
    pub message: Value,
}

/// What would happen.
#[derive(Debug, Serialize, ToSchema)]
pub struct DryRunOut {
    /// Whether the source's pre-filter rejects the message (nothing else applies then).
    pub filtered: bool,
    /// The event's status (`received`, `no_key`, `error`).
    pub status: Option<String>,
    /// Why the status is `error` or `no_key`.
    pub error: Option<String>,
    /// The event key.
    pub event_key: Option<String>,
    /// The payload: any JSON value.
    pub payload: Option<Value>,
    /// The dedup key.
    pub dedup_key: Option<String>,
    /// The trigger's verdict: `matched`, `on_mismatch`, `filter_false`, `filter_error` (+ message);
    /// `null` when no trigger applies (the message was filtered or produced no event).
    #[schema(value_type = Option<Object>)]
    pub r#match: Option<Value>,
    /// A schedule trigger's next five ticks (UTC); the other fields are then empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_ticks: Option<Vec<chrono::DateTime<chrono::Utc>>>,
}

impl DryRunOut {
    /// Nothing applies: the message was filtered, or (with `next_ticks`) the trigger is a schedule.
    fn empty(filtered: bool, next_ticks: Option<Vec<chrono::DateTime<chrono::Utc>>>) -> Self {
        Self {
            filtered,
            status: None,
            error: None,
            event_key: None,
            payload: None,
            dedup_key: None,
            r#match: None,
            next_ticks,
        }
    }
}

/// Runs a sample message through a source's expressions and a trigger; nothing is stored.
#[utoipa::path(context_path = "/v1", tag = "automations", security(("bearer" = [])), request_body = DryRunIn,
    responses((status = 200, body = DryRunOut), (status = 422, body = crate::error::Problem)))]
#[post("/automations/test")]
pub async fn dry_run(
    state: web::Data<AppState>,
    caller: Caller,
    Body(input): Body<DryRunIn>,
) -> Result<HttpResponse, ApiError> {
    let trigger = trigger_to_try(&state, caller.org_id, input.trigger, input.automation_id).await?;
    check_trigger(&trigger)?;
    let out = if trigger.kind == "schedule" {
        schedule_preview(&trigger)?
    } else {
        let slug = input.source.unwrap_or_else(|| trigger.source.clone());
        try_message(&state, caller.org_id, &trigger, slug, input.message).await?
    };
    Ok(HttpResponse::Ok().json(out))
}

/// The trigger given, or that of the stored automation named (exactly one of the two).
async fn trigger_to_try(
    state: &AppState,
    org_id: Uuid,
    trigger: Option<Trigger>,
    automation_id: Option<Uuid>,
) -> Result<Trigger, ApiError> {
    match (trigger, automation_id) {
        (Some(trigger), None) => Ok(trigger),
        (None, Some(id)) => {
            let row = db::automations::find_automation(&state.db, org_id, id)
                .await?
                .ok_or_else(|| ApiError::field("automation_id", "no such automation"))?;
            serde_json::from_value(row.trigger).map_err(|e| ApiError::Internal(e.into()))
        }
        _ => Err(ApiError::field(
            "trigger",
            "give exactly one of `trigger` and `automation_id`",
        )),
    }
}

/// A schedule trigger's next five ticks.
fn schedule_preview(trigger: &Trigger) -> Result<DryRunOut, ApiError> {
    let schedule = Schedule::parse(
        trigger.cron.as_deref(),
        trigger.timezone.as_deref(),
        trigger.catch_up.as_deref(),
    )
    .map_err(|e| {
        ApiError::Validation(
            e.into_iter()
                .map(|(f, m)| crate::error::FieldError::new(f, m))
                .collect(),
        )
    })?;
    Ok(DryRunOut::empty(
        false,
        Some(schedule.next_ticks(db::now(), 5)),
    ))
}

/// The sample message through the expressions of the source `slug`, then through the trigger.
async fn try_message(
    state: &AppState,
    org_id: Uuid,
    trigger: &Trigger,
    slug: String,
    message: Value,
) -> Result<DryRunOut, ApiError> {
    let (exprs, webhook) = source_exprs(state, org_id, &slug).await?;
    // A webhook's events never hold credential headers nor its provider's body token; the
    // sample is read the same way.
    let message = match webhook {
        Some(verifier) => {
            let mut message = crate::webhooks::inbound::without_private_headers(message);
            if let Some(body) = message.get_mut("body") {
                let taken = std::mem::take(body);
                *body = crate::webhooks::inbound::without_provider_token(&verifier, taken);
            }
            message
        }
        None => message,
    };
    let value = to_value(&message);
    let limits = Limits::for_input(state.settings.max_body_bytes);
    let event = match prepare(&exprs, message, &value, limits) {
        Prepared::Filtered => return Ok(DryRunOut::empty(true, None)),
        Prepared::Event(event) => event,
    };
    let compiled = automations::compile(
        Uuid::nil(),
        &json!({"source": slug, "on": trigger.on, "filter": trigger.filter}),
        None,
    )
    .ok()
    .map(|(_, automation)| [std::sync::Arc::new(automation)]);
    let shown_payload = event.payload().cloned();
    let payload = shown_payload.as_ref().map(to_value);
    let verdict = payload
        .as_ref()
        .zip(compiled.as_ref())
        .and_then(|(p, automation)| {
            automations::evaluate(automation, event.event_key.as_deref(), p)
                .into_iter()
                .next()
        })
        .map(|o| json!(o.result));
    Ok(DryRunOut {
        filtered: false,
        status: Some(event.status.as_str().to_owned()),
        error: event.error,
        event_key: event.event_key,
        payload: shown_payload,
        dedup_key: event.dedup_key,
        r#match: verdict,
        next_ticks: None,
    })
}

/// The expressions of the org's source or webhook named `slug` (422 naming `source` if none),
/// and the webhook's verifier when it is one.
async fn source_exprs(
    state: &AppState,
    org_id: Uuid,
    slug: &str,
) -> Result<(SourceExprs, Option<Verifier>), ApiError> {
    let webhook;
    let (key, payload, filter, dedup) = if let Some(s) =
        db::sources::find_source_by_slug(&state.db, org_id, slug).await?
    {
        webhook = None;
        (
            s.event_key_expr,
            s.payload_expr,
            s.filter_expr,
            s.dedup_key_expr,
        )
    } else if let Some(w) = db::webhooks::find_webhook_by_slug(&state.db, org_id, slug).await? {
        webhook = serde_json::from_value::<Verifier>(w.verifier.clone()).ok();
        // What a delivery gets: the preset's defaults where the webhook sets none.
        let (key, payload, dedup) = webhook
            .as_ref()
            .map_or((None, None, None), crate::webhooks::inbound::default_exprs);
        let or = |own: Option<String>, default: Option<&str>| own.or(default.map(str::to_owned));
        (
            or(w.event_key_expr, key),
            or(w.payload_expr, payload),
            w.filter_expr,
            or(w.dedup_key_expr, dedup),
        )
    } else {
        return Err(ApiError::field(
            "source",
            format!("no source or webhook named `{slug}`"),
        ));
    };
    SourceExprs::compile(
        key.as_deref(),
        payload.as_deref(),
        filter.as_deref(),
        dedup.as_deref(),
    )
    .map(|exprs| (exprs, webhook))
    .map_err(|(field, e)| {
        ApiError::Internal(anyhow::anyhow!("stored {field} does not compile: {e}"))
    })
}
