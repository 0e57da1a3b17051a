//! `POST /v1/events/{id}/replay` (run a stored event through the current automations again) and
//! `POST /v1/automations/test` (a dry run: nothing is stored).

use actix_web::{HttpResponse, post, web};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::Path;
use super::automations::{Trigger, check_trigger};
use super::body::Body;
use crate::actors::dispatch::{PendingEvent, decide};
use crate::auth::Caller;
use crate::db;
use crate::error::ApiError;
use crate::pipeline::automations::AutomationSet;
use crate::pipeline::expr::{Limits, to_value};
use crate::pipeline::ingest::{Prepared, SourceExprs, prepare};
use crate::state::AppState;

/// Re-runs an event through the automations in force now. Runs that already exist for an
/// (automation, event) pair are kept, never duplicated; the outcome is replaced.
#[utoipa::path(context_path = "/v1", tag = "events", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, description = "The new outcome and how many runs were created", example = json!({"outcome": [], "runs_created": 0})),
        (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
#[post("/events/{id}/replay")]
pub async fn replay_event(
    state: web::Data<AppState>,
    caller: Caller,
    id: Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    caller.require_member()?;
    let event = db::events::find_event(&state.db, caller.org_id, *id)
        .await?
        .ok_or(ApiError::NotFound("event"))?;
    if !matches!(event.status.as_str(), "received" | "dispatched") {
        return Err(ApiError::Conflict {
            field: None,
            detail: format!(
                "an event with status `{}` matches no automation",
                event.status
            ),
        });
    }
    let records = decide(&state.automations, &[PendingEvent::from(event)]);
    let outcome = records
        .first()
        .map(|r| r.outcome.clone())
        .unwrap_or(Value::Null);
    let created = db::inbox::commit_dispatch(&state.db, &records).await?;
    Ok(HttpResponse::Ok().json(json!({"outcome": outcome, "runs_created": created.len()})))
}

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

/// Runs a sample message through a source's expressions and a trigger; nothing is stored.
#[utoipa::path(context_path = "/v1", tag = "automations", security(("bearer" = [])), request_body = DryRunIn,
    responses((status = 200, body = DryRunOut), (status = 422, body = crate::error::Problem)))]
#[post("/automations/test")]
pub async fn dry_run(
    state: web::Data<AppState>,
    caller: Caller,
    Body(input): Body<DryRunIn>,
) -> Result<HttpResponse, ApiError> {
    let trigger = match (input.trigger, input.automation_id) {
        (Some(trigger), None) => trigger,
        (None, Some(id)) => {
            let row = db::automations::find_automation(&state.db, caller.org_id, id)
                .await?
                .ok_or_else(|| ApiError::field("automation_id", "no such automation"))?;
            serde_json::from_value(row.trigger).map_err(|e| ApiError::Internal(e.into()))?
        }
        _ => {
            return Err(ApiError::field(
                "trigger",
                "give exactly one of `trigger` and `automation_id`",
            ));
        }
    };
    check_trigger(&trigger)?;
    if trigger.kind == "schedule" {
        let schedule = crate::queue::schedule::Schedule::parse(
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
        return Ok(HttpResponse::Ok().json(DryRunOut {
            filtered: false,
            status: None,
            error: None,
            event_key: None,
            payload: None,
            dedup_key: None,
            r#match: None,
            next_ticks: Some(schedule.next_ticks(db::now(), 5)),
        }));
    }
    let slug = input.source.unwrap_or_else(|| trigger.source.clone());
    let exprs = source_exprs(&state, caller.org_id, &slug).await?;
    let value = to_value(&input.message);
    let limits = Limits::for_input(state.settings.max_body_bytes);
    let event = match prepare(&exprs, input.message, &value, limits) {
        Prepared::Filtered => {
            return Ok(HttpResponse::Ok().json(DryRunOut {
                filtered: true,
                status: None,
                error: None,
                event_key: None,
                payload: None,
                dedup_key: None,
                r#match: None,
                next_ticks: None,
            }));
        }
        Prepared::Event(event) => event,
    };
    let set = AutomationSet::build([(
        Uuid::nil(),
        caller.org_id,
        json!({"source": slug, "on": trigger.on, "filter": trigger.filter}),
    )]);
    let shown_payload = event.payload().cloned();
    let payload = shown_payload.as_ref().map(to_value);
    let verdict = payload
        .as_ref()
        .and_then(|p| {
            set.evaluate(caller.org_id, &slug, event.event_key.as_deref(), p)
                .into_iter()
                .next()
        })
        .map(|o| json!(o.result));
    Ok(HttpResponse::Ok().json(DryRunOut {
        filtered: false,
        status: Some(event.status.as_str().to_owned()),
        error: event.error,
        event_key: event.event_key,
        payload: shown_payload,
        dedup_key: event.dedup_key,
        r#match: verdict,
        next_ticks: None,
    }))
}

/// The expressions of the org's source or webhook named `slug` (422 naming `source` if none).
async fn source_exprs(state: &AppState, org_id: Uuid, slug: &str) -> Result<SourceExprs, ApiError> {
    let (key, payload, filter, dedup) =
        if let Some(s) = db::sources::find_source_by_slug(&state.db, org_id, slug).await? {
            (
                s.event_key_expr,
                s.payload_expr,
                s.filter_expr,
                s.dedup_key_expr,
            )
        } else if let Some(w) = db::webhooks::find_webhook_by_slug(&state.db, org_id, slug).await? {
            (
                w.event_key_expr,
                w.payload_expr,
                w.filter_expr,
                w.dedup_key_expr,
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
    .map_err(|(field, e)| {
        ApiError::Internal(anyhow::anyhow!("stored {field} does not compile: {e}"))
    })
}
