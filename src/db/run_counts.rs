//! An org's runs counted by status for the operator's view, at a cost bounded whatever the size
//! of the runs table: each status is one range of `ix_runs_org_status` (`org_id, status, id`)
//! read in the index, stopping after `cap + 1` entries; the finished statuses (`SUCCEEDED`,
//! `FAILED`, `CANCELLED`) count only runs whose id is at or above a bound, that is runs of events
//! received since a time (a run's id carries its event's receive time), so that no count walks
//! the whole history.

use sea_orm::{
    ColumnTrait as _, ConnectionTrait, DbBackend, DbErr, EntityTrait as _, QueryFilter as _,
    QueryOrder as _, QuerySelect as _, QueryTrait as _, Statement,
};
use uuid::Uuid;

use super::statuses::RunStatus;
use super::window::id_bound;
use entity::automation_run;

/// How many runs of one status there are, as far as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusCount {
    /// The status.
    pub status: RunStatus,
    /// Runs counted (at most the cap).
    pub count: u64,
    /// Whether counting stopped at the cap (there are at least `count`).
    pub capped: bool,
}

/// Counts the org's runs of every status: all `PENDING` and `RUNNING` runs, and finished runs
/// with an id at or above `finished_from`; each count stops at `cap`. Planned with its values on
/// PostgreSQL ([`super::planned`]).
pub async fn count_runs_by_status(
    db: &sea_orm::DatabaseConnection,
    org_id: Uuid,
    finished_from: Uuid,
    cap: u64,
) -> Result<Vec<StatusCount>, DbErr> {
    let backend = db.get_database_backend();
    let txn = super::planned::planned_read(db).await?;
    let counts = count_each(&txn, backend, org_id, finished_from, cap).await?;
    txn.commit().await?;
    Ok(counts)
}

async fn count_each(
    db: &impl ConnectionTrait,
    backend: DbBackend,
    org_id: Uuid,
    finished_from: Uuid,
    cap: u64,
) -> Result<Vec<StatusCount>, DbErr> {
    let mut counts = Vec::with_capacity(RunStatus::ALL.len());
    for status in RunStatus::ALL {
        let from = status.is_terminal().then_some(finished_from);
        let statement = count_statement(backend, org_id, status, from, cap);
        let seen = match db.query_one_raw(statement).await? {
            Some(row) => row.try_get::<i64>("", "n")?,
            None => 0,
        };
        let seen = u64::try_from(seen).unwrap_or(0);
        counts.push(StatusCount {
            status,
            count: seen.min(cap),
            capped: seen > cap,
        });
    }
    Ok(counts)
}

/// The count of one status (public so plan tests can `EXPLAIN` it): the org's runs of `status`
/// with an id at or above `from` when given, at most `cap + 1` of them read.
pub fn count_statement(
    backend: DbBackend,
    org_id: Uuid,
    status: RunStatus,
    from: Option<Uuid>,
    cap: u64,
) -> Statement {
    let mut inner = automation_run::Entity::find()
        .select_only()
        .column(automation_run::Column::Id)
        .filter(automation_run::Column::OrgId.eq(org_id))
        .filter(automation_run::Column::Status.eq(status.as_str()));
    if let Some(from) = from {
        // Newest first, in the order of the index: the planner walks the window's range from its
        // new end and stops at the limit, rather than reading the table from its old end (where
        // the rows outside the window are) for a status most rows have.
        inner = inner
            .filter(id_bound(backend, automation_run::Column::Id.gte(from)))
            .order_by_desc(automation_run::Column::Id);
    }
    let inner = inner.limit(cap.saturating_add(1)).build(backend);
    Statement {
        sql: format!("SELECT COUNT(*) AS n FROM ({}) counted", inner.sql),
        ..inner
    }
}
