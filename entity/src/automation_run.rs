//! `automation_runs`: work for workers, exactly one per (automation, event).
use sea_orm::entity::prelude::*;

/// One run.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "automation_runs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub automation_id: Uuid,
    pub event_id: Uuid,
    /// The event's source slug (copied at dispatch, so lists and claims filter without a join).
    pub source: String,
    /// `PENDING` | `RUNNING` | `SUCCEEDED` | `FAILED` | `CANCELLED`.
    pub status: String,
    /// `event_id`, `source`, `event_key`, `received_at` and the payload. `NULL` (the usual case):
    /// built from the event when read, so a run does not store a copy of its event.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub event_payload: Option<Json>,
    /// Claims so far (the attempt a worker holds is this number while RUNNING).
    pub attempts: i32,
    /// When a worker may claim it next (set at insert; later after a failed attempt's backoff).
    pub available_at: Option<DateTimeUtc>,
    /// The worker name given with the claim.
    pub lease_owner: Option<String>,
    /// The fencing token of the current (or last) claim.
    pub lease_token: Option<String>,
    pub lease_expires_at: Option<DateTimeUtc>,
    /// What the worker reported on success.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub result: Option<Json>,
    pub error_detail: Option<String>,
    pub created_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub completed_at: Option<DateTimeUtc>,
}

/// No navigable relations: queries join explicitly.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
