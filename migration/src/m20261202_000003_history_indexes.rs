//! Indexes that answer every filter of the history lists (`GET /v1/events`, `GET /v1/runs`,
//! `GET /v1/automations/{id}/runs`) in cursor order (id descending), chosen from the query plans
//! recorded in docs/operations.md. A time window (`since` / `until`) is an id range, so each index
//! ends in `id` and serves the filter, the window and the cursor together.
//!
//! `status=no_key` and `status=error` are served by a partial index over columns dispatch never
//! writes (`no_key` events have no key, `error` events an error); `status=dispatched` is nearly
//! every event, found on the org's `(org_id, id)` walk; `status=received` by the partial index of
//! undispatched events (SQLite has it already; PostgreSQL gains it here).
use sea_orm_migration::prelude::*;

/// The history indexes.
#[derive(DeriveMigrationName)]
pub struct Migration;

/// `(name, table, definition)`.
const INDEXES: [(&str, &str, &str); 6] = [
    ("ix_events_org_source", "events", "(org_id, source, id)"),
    ("ix_events_org_key", "events", "(org_id, event_key, id)"),
    (
        "ix_events_org_unmatched",
        "events",
        "(org_id, id) WHERE (event_key IS NULL OR error IS NOT NULL)",
    ),
    ("ix_runs_org", "automation_runs", "(org_id, id)"),
    (
        "ix_runs_automation",
        "automation_runs",
        "(automation_id, id)",
    ),
    (
        "ix_runs_org_source",
        "automation_runs",
        "(org_id, source, id)",
    ),
];

/// `status=received` (and dispatch's own look-up of what it has not handled yet): the events not
/// dispatched yet, a handful at any time. On PostgreSQL this makes marking an event dispatched a
/// non-HOT update (its predicate column changes); the firehose benchmark measures that cost
/// (docs/benchmarks.md).
const UNDISPATCHED: &str =
    "CREATE INDEX IF NOT EXISTS ix_events_undispatched ON events (id) WHERE dispatched_at IS NULL";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        for (name, table, definition) in INDEXES {
            db.execute_unprepared(&format!(
                "CREATE INDEX IF NOT EXISTS {name} ON {table} {definition}"
            ))
            .await?;
        }
        if m.get_database_backend() == sea_orm::DbBackend::Postgres {
            // SQLite has had it from the start (m20261123_000001).
            db.execute_unprepared(UNDISPATCHED).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        if m.get_database_backend() == sea_orm::DbBackend::Postgres {
            db.execute_unprepared("DROP INDEX IF EXISTS ix_events_undispatched")
                .await?;
        }
        for (name, _, _) in INDEXES {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
                .await?;
        }
        Ok(())
    }
}
