//! `GET /v1/automations/{id}/runs?status=` (and `GET /v1/runs?automation_id=…&status=…`) from an
//! index in cursor order: `(automation_id, status, id)`. Without it the list read the org's runs of
//! that status (`ix_runs_org_status`) and checked the automation row by row, which walks every run
//! of that status in the org when the automation has few (247 ms at 2 million runs; the plans are
//! in docs/operations.md). An automation belongs to one org, so the index needs no `org_id`.
//!
//! `IF NOT EXISTS`, so an operator can build it beforehand with `CREATE INDEX CONCURRENTLY` under
//! the same name on a large PostgreSQL database (docs/operations.md).
use sea_orm_migration::prelude::*;

/// `ix_runs_automation_status`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS ix_runs_automation_status \
                 ON automation_runs (automation_id, status, id)",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS ix_runs_automation_status")
            .await?;
        Ok(())
    }
}
