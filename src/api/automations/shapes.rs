//! Request and response shapes of `/v1/automations`: the trigger, the automation as given and as
//! shown, and its queue settings as stored.

use chrono::{DateTime, Utc};
use entity::automation;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;
use crate::queue::lifecycle::{self, PolicyIn, RetryIn, RunPolicy};

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
    /// The queue settings as given.
    pub fn policy(&self) -> PolicyIn {
        PolicyIn {
            retry: self.retry,
            lease_s: self.lease_s,
            max_concurrency: self.max_concurrency,
        }
    }
}

/// An automation's queue settings as stored: `(retry, lease_s, max_concurrency)` columns.
pub type PolicyColumns = (Option<Value>, Option<i32>, Option<i32>);

/// The queue settings of `input` as the columns store them.
pub fn policy_columns(input: &AutomationIn) -> Result<PolicyColumns, ApiError> {
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
    /// A stored row as shown, with the warnings about it.
    pub fn new(m: automation::Model, warnings: Vec<String>) -> Self {
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
