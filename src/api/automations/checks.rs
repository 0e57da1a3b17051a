//! Checks of an automation request: every bad field named in one 422, and the warnings about
//! things that are allowed but probably not meant.

use uuid::Uuid;

use super::shapes::{AutomationIn, Trigger};
use crate::api::state::AppState;
use crate::db;
use crate::error::ApiError;
use crate::pipeline::glob::OnPatterns;
use crate::queue::lifecycle;
use crate::queue::schedule::{Schedule, standard_cron_problem};
use crate::validation::Errors;

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
    match Schedule::parse(
        t.cron.as_deref(),
        t.timezone.as_deref(),
        t.catch_up.as_deref(),
    ) {
        Err(problems) => {
            for (field, message) in problems {
                errors.add(field, message);
            }
        }
        Ok(_) => {
            if let Some(problem) = t.cron.as_deref().and_then(standard_cron_problem) {
                errors.add("trigger.cron", problem);
            }
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
    if t.source == crate::queue::schedule::SCHEDULE_SOURCE {
        errors.add(
            "trigger.source",
            "`schedule` is reserved for schedule triggers' ticks: use {\"type\": \"schedule\", \"cron\": …}",
        );
    } else {
        errors.slug("trigger.source", &t.source);
    }
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

/// Warnings about a trigger: an event trigger naming a slug nothing has yet.
pub async fn warnings_for(
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
