//! `/v1/automations`: triggers that turn matching events into runs.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use entity::automation;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::body::{Body, parse_json};
use super::pagination::OffsetQuery;
use super::{ListOut, Path, Query};
use crate::auth::Caller;
use crate::db;
use crate::error::ApiError;
use crate::pipeline::glob::OnPatterns;
use crate::queue::lifecycle::{self, PolicyIn, RetryIn, RunPolicy};
use crate::queue::schedule::Schedule;
use crate::state::AppState;
use crate::validation::Errors;

/// One glob or a list of globs.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single pattern.
    One(String),
    /// Several patterns; any may match.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The patterns as a list.
    pub fn patterns(&self) -> Vec<String> {
        match self {
            Self::One(p) => vec![p.clone()],
            Self::Many(ps) => ps.clone(),
        }
    }
}

/// `{"type": "event", "source", "on", "filter"?}` or `{"type": "schedule", "cron", "timezone"?,
/// "catch_up"?}`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// `event` (matching events) or `schedule` (a run per cron tick).
    #[serde(rename = "type")]
    pub kind: String,
    /// Source slug (WebSocket source or webhook); `event` triggers.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// fnmatch glob(s) over the event key; `event` triggers.
    #[serde(default, skip_serializing_if = "OneOrMany::is_empty")]
    pub on: OneOrMany,
    /// JMESPath over the payload; truthy means match; `event` triggers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Standard 5-field cron pattern (or `@hourly`, `@daily`, …); `schedule` triggers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// IANA time zone the cron fields are read in (default `UTC`); `schedule` triggers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Ticks missed while the service was down: `latest` (default; one run for the latest) or
    /// `none`; `schedule` triggers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<String>,
}

impl Default for OneOrMany {
    fn default() -> Self {
        Self::Many(Vec::new())
    }
}

impl OneOrMany {
    /// Whether no pattern is given.
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::Many(ps) if ps.is_empty())
    }
}

fn yes() -> bool {
    true
}

/// An automation as created (and, after merging a PATCH, as replaced).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Big orders", "trigger": {"type": "event", "source": "orders",
    "on": ["order.*"], "filter": "data.amount > `100`"}}))]
pub struct AutomationIn {
    /// Display name.
    pub name: String,
    /// Whether it creates runs (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// What it reacts to.
    pub trigger: Trigger,
    /// Retries of its runs (any field left out: its default; 3 attempts, 10 s → 600 s, full
    /// jitter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryIn>,
    /// Lease of a claimed run in seconds (1..=86400; default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_s: Option<u32>,
    /// RUNNING runs at once (1..=100000; default unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
}

impl AutomationIn {
    fn policy(&self) -> PolicyIn {
        PolicyIn {
            retry: self.retry,
            lease_s: self.lease_s,
            max_concurrency: self.max_concurrency,
        }
    }
}

/// An automation's queue settings as stored: `(retry, lease_s, max_concurrency)` columns.
type PolicyColumns = (Option<Value>, Option<i32>, Option<i32>);

fn policy_columns(input: &AutomationIn) -> Result<PolicyColumns, ApiError> {
    let retry = input
        .retry
        .map(serde_json::to_value)
        .transpose()
        .map_err(|e| ApiError::Internal(e.into()))?;
    let int = |v: Option<u32>| v.map(|v| i32::try_from(v).unwrap_or(i32::MAX));
    Ok((retry, int(input.lease_s), int(input.max_concurrency)))
}

/// An automation's queue settings, defaults applied.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyOut {
    /// Retries.
    pub retry: lifecycle::Retry,
    /// Lease of a claimed run in seconds.
    pub lease_s: u32,
    /// RUNNING runs at once (`null`: unlimited).
    pub max_concurrency: Option<u32>,
}

/// An automation as shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct AutomationOut {
    /// Id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Whether it creates runs.
    pub enabled: bool,
    /// What it reacts to.
    #[schema(value_type = Trigger)]
    pub trigger: Value,
    /// Retries of its runs, defaults applied.
    pub retry: lifecycle::Retry,
    /// Lease of a claimed run in seconds.
    pub lease_s: u32,
    /// RUNNING runs at once (`null`: unlimited).
    pub max_concurrency: Option<u32>,
    /// Things that are allowed but probably not meant (e.g. an unknown source slug).
    pub warnings: Vec<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl AutomationOut {
    fn new(m: automation::Model, warnings: Vec<String>) -> Self {
        let policy = RunPolicy::from_columns(m.retry.as_ref(), m.lease_s, m.max_concurrency);
        Self {
            id: m.id,
            name: m.name,
            enabled: m.enabled,
            trigger: m.trigger,
            retry: policy.retry,
            lease_s: policy.lease_s,
            max_concurrency: policy.max_concurrency,
            warnings,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

impl From<automation::Model> for AutomationOut {
    fn from(m: automation::Model) -> Self {
        Self::new(m, Vec::new())
    }
}

/// Validates a trigger (422 naming every bad field).
pub fn check_trigger(t: &Trigger) -> Result<(), ApiError> {
    let mut errors = Errors::default();
    trigger_errors(t, &mut errors);
    errors.finish(()).map_err(ApiError::Validation)
}

fn trigger_errors(t: &Trigger, errors: &mut Errors) {
    match t.kind.as_str() {
        "event" => event_trigger_errors(t, errors),
        "schedule" => schedule_trigger_errors(t, errors),
        _ => errors.add("trigger.type", "must be `event` or `schedule`"),
    }
}

fn schedule_trigger_errors(t: &Trigger, errors: &mut Errors) {
    for (field, given) in [
        ("trigger.source", !t.source.is_empty()),
        ("trigger.on", !t.on.is_empty()),
        ("trigger.filter", t.filter.is_some()),
    ] {
        if given {
            errors.add(field, "is not used by a schedule trigger");
        }
    }
    if let Err(problems) = Schedule::parse(
        t.cron.as_deref(),
        t.timezone.as_deref(),
        t.catch_up.as_deref(),
    ) {
        for (field, message) in problems {
            errors.add(field, message);
        }
    }
}

fn event_trigger_errors(t: &Trigger, errors: &mut Errors) {
    for (field, given) in [
        ("trigger.cron", t.cron.is_some()),
        ("trigger.timezone", t.timezone.is_some()),
        ("trigger.catch_up", t.catch_up.is_some()),
    ] {
        if given {
            errors.add(field, "is only used by a schedule trigger");
        }
    }
    errors.slug("trigger.source", &t.source);
    if t.on.is_empty() {
        errors.add("trigger.on", "give at least one pattern");
    } else if let Err(err) = OnPatterns::compile(&t.on.patterns()) {
        errors.add("trigger.on", err.to_string());
    }
    errors.expr("trigger.filter", t.filter.as_deref());
}

/// Validates an automation input (422 naming every bad field).
pub fn check_input(input: &AutomationIn) -> Result<(), ApiError> {
    let mut errors = Errors::default();
    errors.name("name", &input.name);
    trigger_errors(&input.trigger, &mut errors);
    lifecycle::check_policy(&input.policy(), &mut errors);
    errors.finish(()).map_err(ApiError::Validation)
}

async fn warnings_for(
    state: &AppState,
    org_id: Uuid,
    trigger: &Trigger,
) -> Result<Vec<String>, ApiError> {
    if trigger.kind != "event" || db::slugs::slug_exists(&state.db, org_id, &trigger.source).await?
    {
        Ok(Vec::new())
    } else {
        Ok(vec![format!(
            "trigger.source: no source or webhook named `{}` exists yet; the automation matches once one does",
            trigger.source
        )])
    }
}

/// Creates an automation.
#[utoipa::path(context_path = "/v1", tag = "automations", security(("bearer" = [])), request_body = AutomationIn,
    responses((status = 201, body = AutomationOut), (status = 422, body = crate::error::Problem)))]
#[post("/automations")]
pub async fn create_automation(
    state: web::Data<AppState>,
    caller: Caller,
    Body(input): Body<AutomationIn>,
) -> Result<HttpResponse, ApiError> {
    caller.require_member()?;
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
    state.automations.reload().await?;
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
    caller: Caller,
    id: Path<Uuid>,
    Body(patch): Body<Map<String, Value>>,
) -> Result<HttpResponse, ApiError> {
    caller.require_member()?;
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
    state.automations.reload().await?;
    Ok(HttpResponse::Ok().json(AutomationOut::new(row, warnings)))
}

/// Deletes an automation (its runs stay).
#[utoipa::path(context_path = "/v1", tag = "automations", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem)))]
#[delete("/automations/{id}")]
pub async fn delete_automation(
    state: web::Data<AppState>,
    caller: Caller,
    id: Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    caller.require_member()?;
    let row = find(&state, &caller, *id).await?;
    db::automations::delete_automation(&state.db, row.id).await?;
    state.automations.reload().await?;
    Ok(HttpResponse::NoContent().finish())
}
