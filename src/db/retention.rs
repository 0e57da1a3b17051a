//! Retention deletes, one small batch per call so they never hold the write lock long: finished
//! runs that finished before a cutoff (through `ix_runs_finished`), and events received before a
//! cutoff (by id: UUID v7 ids are time-ordered) that are dispatched and have no unfinished run.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};
use uuid::Uuid;

/// The smallest UUID v7 of the millisecond `t`: every id below it is older.
pub fn id_floor(t: DateTime<Utc>) -> Uuid {
    let millis = u64::try_from(t.timestamp_millis()).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &[0u8; 10]).into_uuid()
}

fn placeholders(backend: DbBackend) -> (&'static str, &'static str) {
    match backend {
        DbBackend::Postgres => ("$1", "$2"),
        _ => ("?", "?"),
    }
}

/// Deletes up to `batch` finished runs that finished before `cutoff`; returns how many.
pub async fn prune_runs(
    db: &DatabaseConnection,
    cutoff: DateTime<Utc>,
    batch: u64,
) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    let (p1, _) = placeholders(backend);
    let sql = format!(
        "DELETE FROM automation_runs WHERE id IN (SELECT id FROM automation_runs \
         WHERE status IN ('SUCCEEDED', 'FAILED', 'CANCELLED') AND completed_at < {p1} \
         ORDER BY completed_at LIMIT {batch})"
    );
    let _gate = super::write_gate(db).await;
    let result = db
        .execute_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [cutoff.into()],
        ))
        .await?;
    Ok(result.rows_affected())
}

/// Deletes up to `batch` events received before `cutoff` that are dispatched (or never will
/// be: no key, error) and have no PENDING or RUNNING run; returns how many.
pub async fn prune_events(
    db: &DatabaseConnection,
    cutoff: DateTime<Utc>,
    batch: u64,
) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    let (p1, _) = placeholders(backend);
    let sql = format!(
        "DELETE FROM events WHERE id IN (SELECT e.id FROM events e WHERE e.id < {p1} \
         AND e.status <> 'received' AND NOT EXISTS (SELECT 1 FROM automation_runs r \
         WHERE r.event_id = e.id AND r.status IN ('PENDING', 'RUNNING')) \
         ORDER BY e.id LIMIT {batch})"
    );
    let _gate = super::write_gate(db).await;
    let result = db
        .execute_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [id_floor(cutoff).into()],
        ))
        .await?;
    Ok(result.rows_affected())
}
