//! The worker API's request and response bodies, and their checks (bounds as the OpenAPI
//! document states them).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::MAX_ERROR_BYTES;
use crate::error::ApiError;
use crate::queue::lifecycle::MAX_LEASE_S;
use crate::validation::Errors;

/// `POST /v1/runs/claim` (the body may be absent: every field has its default).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimIn {
    /// Runs at most (1..=100, default 1).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Wait up to this many seconds for a run when none is claimable (0..=30, default 0).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 30)]
    pub wait_s: Option<f64>,
    /// Lease in seconds (1..=86400; default: each automation's `lease_s`).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86400)]
    pub lease_s: Option<u32>,
    /// Only runs of these automations (at most 100).
    #[serde(default)]
    #[schema(min_items = 1, max_items = 100)]
    pub automation_ids: Option<Vec<Uuid>>,
    /// Only runs of events from these source slugs (at most 100).
    #[serde(default)]
    #[schema(min_items = 1, max_items = 100)]
    pub sources: Option<Vec<String>>,
    /// The worker's name, recorded as the lease owner (at most 200 characters).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub worker: Option<String>,
}

impl ClaimIn {
    /// Checks every bound; returns the limit and how long to wait.
    pub fn check(&self) -> Result<(u64, Duration), ApiError> {
        let mut errors = Errors::default();
        let limit = self.limit.unwrap_or(1);
        errors.range("limit", u64::from(limit), 1..=100);
        let wait = self.wait_s.unwrap_or(0.0);
        if !(0.0..=30.0).contains(&wait) {
            errors.add("wait_s", "must be between 0 and 30");
        }
        check_lease(&mut errors, self.lease_s);
        if let Some(ids) = &self.automation_ids
            && (ids.is_empty() || ids.len() > 100)
        {
            errors.add("automation_ids", "must list 1 to 100 ids");
        }
        if let Some(sources) = &self.sources {
            if sources.is_empty() || sources.len() > 100 {
                errors.add("sources", "must list 1 to 100 source slugs");
            }
            for (i, slug) in sources.iter().enumerate() {
                errors.slug(&format!("sources[{i}]"), slug);
            }
        }
        if let Some(worker) = &self.worker
            && (worker.is_empty() || worker.chars().count() > 200)
        {
            errors.add("worker", "must be 1 to 200 characters");
        }
        errors.finish(()).map_err(ApiError::Validation)?;
        Ok((u64::from(limit), Duration::from_secs_f64(wait)))
    }
}

fn check_lease(errors: &mut Errors, lease_s: Option<u32>) {
    if let Some(v) = lease_s {
        errors.range("lease_s", u64::from(v), 1..=u64::from(MAX_LEASE_S));
    }
}

/// One claimed run.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimedRun {
    /// Run id.
    pub id: Uuid,
    /// The automation.
    pub automation_id: Uuid,
    /// Its name (`null` when it was deleted).
    pub automation_name: Option<String>,
    /// The event.
    pub event_id: Uuid,
    /// The event key.
    pub event_key: Option<String>,
    /// The event's source slug.
    pub source: String,
    /// `event_id`, `source`, `event_key`, `received_at` and `payload`.
    #[schema(value_type = Object)]
    pub event_payload: Value,
    /// This attempt's number (1 for the first).
    pub attempt: i32,
    /// Pass with heartbeat, complete and fail; valid for this claim only.
    pub lease_token: String,
    /// When the lease runs out unless extended.
    pub lease_expires_at: Option<DateTime<Utc>>,
}

/// Claimed runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimOut {
    /// Oldest available first; empty when nothing was claimable within `wait_s`.
    pub items: Vec<ClaimedRun>,
}

/// `POST /v1/runs/{id}/heartbeat`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatIn {
    /// The token of the claim.
    pub lease_token: String,
    /// New lease from now, in seconds (1..=86400; default: the claim's, else the automation's).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86400)]
    pub lease_s: Option<u32>,
}

impl HeartbeatIn {
    /// Checks the lease bound.
    pub fn check(&self) -> Result<(), ApiError> {
        let mut errors = Errors::default();
        check_lease(&mut errors, self.lease_s);
        errors.finish(()).map_err(ApiError::Validation)
    }
}

/// The extended lease.
#[derive(Debug, Serialize, ToSchema)]
pub struct HeartbeatOut {
    /// Run id.
    pub id: Uuid,
    /// The new expiry.
    pub lease_expires_at: DateTime<Utc>,
}

/// Declares the body of a single-run call and its batch item from one list of fields: the item
/// is the same fields plus the run's `id`, so both stay one shape on the wire and in the OpenAPI
/// document (a `#[serde(flatten)]` would lose `deny_unknown_fields` and turn the item schema into
/// an `allOf`).
macro_rules! body_and_item {
    (
        $(#[$body_meta:meta])* $body:ident,
        $(#[$item_meta:meta])* $item:ident,
        { $($(#[$field_meta:meta])* $field:ident: $ty:ty,)* }
    ) => {
        $(#[$body_meta])*
        #[derive(Debug, Deserialize, ToSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $body {
            $($(#[$field_meta])* pub $field: $ty,)*
        }

        $(#[$item_meta])*
        #[derive(Debug, Deserialize, ToSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $item {
            /// Run id.
            pub id: Uuid,
            $($(#[$field_meta])* pub $field: $ty,)*
        }

        impl $item {
            /// The run id and the body of the single-run call.
            pub fn split(self) -> (Uuid, $body) {
                (self.id, $body { $($field: self.$field,)* })
            }
        }
    };
}

body_and_item!(
    /// `POST /v1/runs/{id}/complete`.
    CompleteIn,
    /// One item of `POST /v1/runs/complete`.
    CompleteItem,
    {
        /// The token of the claim.
        lease_token: String,
        /// What the run produced (any JSON, at most 64 KiB).
        #[serde(default)]
        result: Option<Value>,
    }
);

body_and_item!(
    /// `POST /v1/runs/{id}/fail`.
    FailIn,
    /// One item of `POST /v1/runs/fail`.
    FailItem,
    {
        /// The token of the claim.
        lease_token: String,
        /// What went wrong (kept up to 8 KiB, the end).
        error: String,
        /// Whether to retry while attempts are left (default true).
        #[serde(default)]
        retry: Option<bool>,
        /// Retry after this many seconds instead of the automation's backoff (0..=604800).
        #[serde(default)]
        #[schema(minimum = 0, maximum = 604800)]
        retry_after_s: Option<u32>,
    }
);

/// A batch of completions.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteBatchIn {
    /// 1..=1000 items.
    #[schema(min_items = 1, max_items = 1000)]
    pub items: Vec<CompleteItem>,
}

/// A batch of failures.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailBatchIn {
    /// 1..=1000 items.
    #[schema(min_items = 1, max_items = 1000)]
    pub items: Vec<FailItem>,
}

/// How one item of a batch ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemOut {
    /// Run id.
    pub id: Uuid,
    /// Whether it took effect.
    pub ok: bool,
    /// The run's status afterwards (`null` when the run does not exist).
    pub status: Option<String>,
    /// Why not (`cancelled`, `lease_expired`, `lease_lost`, `finished`, `not_found`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The explanation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ItemOut {
    /// Took effect; the run is now `status`.
    pub fn applied(id: Uuid, status: &str) -> ItemOut {
        ItemOut {
            id,
            ok: true,
            status: Some(status.to_owned()),
            reason: None,
            detail: None,
        }
    }

    /// Refused: the run is `status` (`None`: there is no such run) for `reason`.
    pub fn refused(id: Uuid, status: Option<&str>, reason: &str, detail: String) -> ItemOut {
        ItemOut {
            id,
            ok: false,
            status: status.map(str::to_owned),
            reason: Some(reason.to_owned()),
            detail: Some(detail),
        }
    }

    /// No such run in the caller's org.
    pub fn not_found(id: Uuid) -> ItemOut {
        ItemOut::refused(id, None, "not_found", "run not found".to_owned())
    }
}

/// The items of a batch, in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchOut {
    /// One per request item.
    pub items: Vec<ItemOut>,
}

/// A fenced outcome as a worker asked for it.
#[derive(Debug)]
pub struct Ask {
    /// The run.
    pub id: Uuid,
    /// The lease token given.
    pub token: String,
    /// Complete or fail.
    pub outcome: Outcome,
}

/// What a worker reports.
#[derive(Debug)]
pub enum Outcome {
    /// Succeeded, with this result.
    Complete(Option<Value>),
    /// The attempt failed.
    Fail {
        /// What went wrong (its tail kept).
        error: String,
        /// Whether to retry while attempts are left.
        retry: bool,
        /// Retry after this long instead of the backoff.
        retry_after_s: Option<u32>,
    },
}

impl CompleteIn {
    /// The ask for run `id`.
    pub fn ask(self, id: Uuid) -> Ask {
        Ask {
            id,
            token: self.lease_token,
            outcome: Outcome::Complete(self.result),
        }
    }
}

impl FailIn {
    /// The ask for run `id`.
    pub fn ask(self, id: Uuid) -> Ask {
        Ask {
            id,
            token: self.lease_token,
            outcome: Outcome::Fail {
                error: keep_tail(self.error),
                retry: self.retry.unwrap_or(true),
                retry_after_s: self.retry_after_s,
            },
        }
    }
}

/// The last [`MAX_ERROR_BYTES`] bytes of an error, whole characters (the end holds the cause).
fn keep_tail(error: String) -> String {
    if error.len() <= MAX_ERROR_BYTES {
        return error;
    }
    let mut start = error.len() - MAX_ERROR_BYTES;
    while !error.is_char_boundary(start) {
        start += 1;
    }
    error[start..].to_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_error_keeps_its_last_8_kib_whole_characters() {
        let long = format!("{}END", "\u{1F600}".repeat(9000));
        let kept = keep_tail(long);
        assert!(kept.len() <= MAX_ERROR_BYTES && kept.len() > MAX_ERROR_BYTES - 4);
        assert!(kept.ends_with("END"));
        let short = "é".repeat(100);
        assert_eq!(keep_tail(short.clone()), short);
    }
}
