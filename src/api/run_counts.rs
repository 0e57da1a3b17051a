//! `GET /v1/runs/counts`: how many of the org's runs are in each status, for the operator's
//! runs panel. Cheap on any size of runs table: every count is one range of an index, stopped at
//! [`COUNT_CAP`]; `PENDING` and `RUNNING` are counted whole (the open queue), the finished
//! statuses only over runs of events received in the last `window_s` seconds.

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::Query;
use crate::api::caller::Caller;
use crate::api::state::AppState;
use crate::db;
use crate::db::statuses::RunStatus;
use crate::error::ApiError;

/// Most runs one status is counted up to; a count that reached it is listed in `capped`.
pub const COUNT_CAP: u64 = 10_000;
/// Default window of the finished statuses: one day.
pub const DEFAULT_WINDOW_S: u64 = 86_400;
/// Bounds of `window_s`: a minute to a week.
pub const WINDOW_S_RANGE: std::ops::RangeInclusive<u64> = 60..=604_800;

/// Query of the run counts.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunCountsQuery {
    /// Seconds back the finished statuses (`SUCCEEDED`, `FAILED`, `CANCELLED`) are counted over,
    /// by their event's receive time: 60..=604800 (default 86400, a day).
    #[param(value_type = Option<u64>, minimum = 60, maximum = 604800)]
    pub window_s: Option<String>,
}

/// Runs per status.
#[derive(Debug, Default, Serialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub struct StatusCounts {
    /// Waiting for a worker (all of them).
    pub pending: u64,
    /// Claimed by a worker (all of them).
    pub running: u64,
    /// Succeeded, of events received since `finished_since`.
    pub succeeded: u64,
    /// Failed for good, of events received since `finished_since`.
    pub failed: u64,
    /// Cancelled, of events received since `finished_since`.
    pub cancelled: u64,
}

impl StatusCounts {
    fn set(&mut self, status: RunStatus, count: u64) {
        let slot = match status {
            RunStatus::Pending => &mut self.pending,
            RunStatus::Running => &mut self.running,
            RunStatus::Succeeded => &mut self.succeeded,
            RunStatus::Failed => &mut self.failed,
            RunStatus::Cancelled => &mut self.cancelled,
        };
        *slot = count;
    }
}

/// The org's runs by status.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunCountsOut {
    /// Runs per status: `PENDING` and `RUNNING` all of them, the finished statuses those of events
    /// received since `finished_since`.
    pub counts: StatusCounts,
    /// Statuses whose count stopped at `cap`: there are at least that many.
    pub capped: Vec<String>,
    /// Most runs a status is counted up to.
    pub cap: u64,
    /// The window of the finished statuses, in seconds.
    pub window_s: u64,
    /// Finished runs are counted when their event was received at or after this time.
    pub finished_since: DateTime<Utc>,
}

/// `window_s` as given (text, so that a bad one is refused naming the field), or the default.
fn window_of(text: Option<&str>) -> Result<u64, ApiError> {
    let Some(text) = text else {
        return Ok(DEFAULT_WINDOW_S);
    };
    text.parse()
        .ok()
        .filter(|s| WINDOW_S_RANGE.contains(s))
        .ok_or_else(|| {
            ApiError::field("window_s", "must be a whole number of seconds, 60..=604800")
        })
}

/// Counts the org's runs by status: open runs all, finished runs of a recent window; each
/// count is read from an index and stops at a cap.
#[utoipa::path(context_path = "/v1", tag = "runs", security(("bearer" = [])), params(RunCountsQuery),
    responses((status = 200, body = RunCountsOut), (status = 422, body = crate::error::Problem)))]
#[get("/runs/counts")]
pub async fn count_runs(
    state: web::Data<AppState>,
    caller: Caller,
    query: Query<RunCountsQuery>,
) -> Result<HttpResponse, ApiError> {
    let window_s = window_of(query.window_s.as_deref())?;
    let window = chrono::Duration::seconds(i64::try_from(window_s).unwrap_or(i64::MAX));
    let finished_since = Utc::now() - window;
    let from = db::window::first_id_at(finished_since);
    let counted =
        db::run_counts::count_runs_by_status(&state.db, caller.org_id, from, COUNT_CAP).await?;
    let mut counts = StatusCounts::default();
    let mut capped = Vec::new();
    for count in counted {
        counts.set(count.status, count.count);
        if count.capped {
            capped.push(count.status.as_str().to_owned());
        }
    }
    Ok(HttpResponse::Ok().json(RunCountsOut {
        counts,
        capped,
        cap: COUNT_CAP,
        window_s,
        finished_since,
    }))
}
