//! Retention deletes, one small batch per call so they never hold the write lock long: finished
//! runs that finished before a cutoff (through `ix_runs_finished`), and events received before a
//! cutoff (by id: UUID v7 ids are time-ordered) that are dispatched and have no unfinished run.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, Value};

use super::statuses::{EventStatus, RunStatus};
use uuid::Uuid;

/// The smallest UUID v7 of the millisecond `t`: every id below it is older.
pub fn id_floor(t: DateTime<Utc>) -> Uuid {
    let millis = u64::try_from(t.timestamp_millis()).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &[0u8; 10]).into_uuid()
}

/// `$1` on PostgreSQL, `?` on SQLite: the one bound value of a prune statement.
fn placeholder(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => "$1",
        _ => "?",
    }
}

/// Runs one batch delete, `sql` being given the placeholder of its one bound value, holding the
/// write turn; returns how many rows went.
async fn delete_batch(
    db: &DatabaseConnection,
    sql: impl FnOnce(&str) -> String,
    value: Value,
) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    let statement = Statement::from_sql_and_values(backend, sql(placeholder(backend)), [value]);
    let result = super::gated(db, db.execute_raw(statement)).await?;
    Ok(result.rows_affected())
}

/// Deletes up to `batch` finished runs that finished before `cutoff`; returns how many.
pub async fn prune_runs(
    db: &DatabaseConnection,
    cutoff: DateTime<Utc>,
    batch: u64,
) -> Result<u64, DbErr> {
    // The status list is the predicate of `ix_runs_finished`, as literals for the planner.
    let terminal = RunStatus::sql_list(&RunStatus::TERMINAL);
    let sql = |p: &str| {
        format!(
            "DELETE FROM automation_runs WHERE id IN (SELECT id FROM automation_runs \
             WHERE status IN {terminal} AND completed_at < {p} \
             ORDER BY completed_at LIMIT {batch})"
        )
    };
    delete_batch(db, sql, cutoff.into()).await
}

/// Deletes up to `batch` events received before `cutoff` that are dispatched (or never will
/// be: no key, error) and have no PENDING or RUNNING run; returns how many.
pub async fn prune_events(
    db: &DatabaseConnection,
    cutoff: DateTime<Utc>,
    batch: u64,
) -> Result<u64, DbErr> {
    let received = EventStatus::Received.sql();
    let open = RunStatus::sql_list(&[RunStatus::Pending, RunStatus::Running]);
    let sql = |p: &str| {
        format!(
            "DELETE FROM events WHERE id IN (SELECT e.id FROM events e WHERE e.id < {p} \
             AND e.status <> {received} AND NOT EXISTS (SELECT 1 FROM automation_runs r \
             WHERE r.event_id = e.id AND r.status IN {open}) \
             ORDER BY e.id LIMIT {batch})"
        )
    };
    delete_batch(db, sql, id_floor(cutoff).into()).await
}
