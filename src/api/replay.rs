//! `POST /v1/events/{id}/replay`: run a stored event through the current automations again, with
//! the matching function the dispatch actors use (`decide`) and the same commit of runs and
//! outcome.

use actix_web::{HttpResponse, post, web};
use std::collections::HashMap;

use serde_json::{Value, json};
use uuid::Uuid;

use super::Path;
use crate::actors::dispatch::{PendingEvent, decide};
use crate::api::body::NoBody;
use crate::api::caller::Member;
use crate::api::state::AppState;
use crate::db;
use crate::error::ApiError;

/// The runs an earlier outcome names, by automation id.
fn earlier_runs(outcome: Option<&Value>) -> HashMap<String, Value> {
    outcome
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let automation = entry.get("automation_id")?.as_str()?;
            let run = entry.get("run_id").filter(|r| !r.is_null())?;
            Some((automation.to_owned(), run.clone()))
        })
        .collect()
}

/// A run created for an earlier match stays (runs are never removed by a replay), so the new
/// outcome still names it where the automation no longer matches.
fn keep_earlier_runs(outcome: &mut Value, earlier: &HashMap<String, Value>) {
    for entry in outcome.as_array_mut().into_iter().flatten() {
        let Some(fields) = entry.as_object_mut() else {
            continue;
        };
        if fields.contains_key("run_id") {
            continue;
        }
        let run = fields
            .get("automation_id")
            .and_then(Value::as_str)
            .and_then(|automation| earlier.get(automation));
        if let Some(run) = run {
            fields.insert("run_id".to_owned(), run.clone());
        }
    }
}

/// Re-runs an event through the automations in force now. Runs that already exist for an
/// (automation, event) pair are kept, never duplicated; the outcome is replaced.
#[utoipa::path(context_path = "/v1", tag = "events", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, description = "The new outcome and how many runs were created", example = json!({"outcome": [], "runs_created": 0})),
        (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
#[post("/events/{id}/replay")]
pub async fn replay_event(
    state: web::Data<AppState>,
    caller: Member,
    id: Path<Uuid>,
    _: NoBody,
) -> Result<HttpResponse, ApiError> {
    let event = db::events::find_event(&state.db, caller.org_id, *id)
        .await?
        .ok_or(ApiError::NotFound("event"))?;
    if event.source == crate::queue::schedule::SCHEDULE_SOURCE {
        return Err(ApiError::Conflict {
            field: None,
            detail: "a schedule tick is not replayed (no event automation matches it); \
                     retry its run instead: POST /v1/runs/{id}/retry"
                .to_owned(),
        });
    }
    if !matches!(event.status.as_str(), "received" | "dispatched") {
        return Err(ApiError::Conflict {
            field: None,
            detail: format!(
                "an event with status `{}` matches no automation",
                event.status
            ),
        });
    }
    let earlier = earlier_runs(event.outcome.as_ref());
    let mut records = decide(&state.automations, &[PendingEvent::from(event)]);
    if let Some(record) = records.first_mut() {
        keep_earlier_runs(&mut record.outcome, &earlier);
    }
    let outcome = records
        .first()
        .map(|r| r.outcome.clone())
        .unwrap_or(Value::Null);
    let created = db::inbox::commit_dispatch(&state.db, &records).await?;
    Ok(HttpResponse::Ok().json(json!({"outcome": outcome, "runs_created": created.len()})))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_run_made_earlier_stays_named_in_the_new_outcome() {
        let earlier = json!([
            {"automation_id": "a", "result": "matched", "run_id": "r1"},
            {"automation_id": "b", "result": "filter_false"}
        ]);
        let mut outcome = json!([
            {"automation_id": "a", "result": "filter_false"},
            {"automation_id": "b", "result": "matched", "run_id": "r2"},
            {"automation_id": "c", "result": "on_mismatch"}
        ]);
        keep_earlier_runs(&mut outcome, &earlier_runs(Some(&earlier)));
        assert_eq!(outcome[0]["run_id"], "r1");
        assert_eq!(outcome[1]["run_id"], "r2");
        assert!(outcome[2].get("run_id").is_none());
    }
}
