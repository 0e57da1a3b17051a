//! What the registry takes from one stored automation row: its queue facts, and whether and how
//! it belongs in the automation index.

use entity::automation;

use crate::pipeline::automation_index::IndexedRow;
use crate::queue::lifecycle::RunPolicy;
use crate::queue::schedule::Schedule;

/// What the run queue needs to know of an automation (enabled or not: its runs outlive that).
#[derive(Debug, Clone)]
pub struct AutomationInfo {
    /// Its org.
    pub org_id: uuid::Uuid,
    /// Its name (claims show it).
    pub name: String,
    /// Its queue policy, defaults applied.
    pub policy: RunPolicy,
    /// Its schedule, when it is an enabled schedule automation that parses.
    pub schedule: Option<Schedule>,
    /// What its schedule was planned from (the trigger's text and `updated_at`).
    pub schedule_signature: String,
    /// Last changed (also what the resync compares with storage).
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// The queue facts of a row.
pub(super) fn info_of(row: &automation::Model) -> AutomationInfo {
    let policy = RunPolicy::from_columns(row.retry.as_ref(), row.lease_s, row.max_concurrency);
    let schedule = match Schedule::from_trigger(&row.trigger) {
        Some(Ok(s)) if row.enabled => Some(s),
        Some(Err(why)) => {
            tracing::warn!(automation_id = %row.id, error = %why, "schedule skipped: it does not parse");
            None
        }
        _ => None,
    };
    AutomationInfo {
        org_id: row.org_id,
        name: row.name.clone(),
        policy,
        schedule,
        schedule_signature: format!("{}|{}", row.trigger, row.updated_at),
        updated_at: row.updated_at,
    }
}

/// The row as the index takes it: only an enabled event (not schedule) automation is matched.
pub(super) fn indexed_row(row: &automation::Model) -> Option<IndexedRow> {
    (row.enabled && Schedule::from_trigger(&row.trigger).is_none()).then(|| IndexedRow {
        id: row.id,
        org_id: row.org_id,
        trigger: row.trigger.clone(),
    })
}
