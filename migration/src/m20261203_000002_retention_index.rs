//! Retention prunes finished runs by when they finished: a partial index on `completed_at` of
//! SUCCEEDED, FAILED and CANCELLED runs, so pruning never scans the runs table. (Events are
//! pruned by id: UUID v7 ids are time-ordered, so the primary key serves.)
use sea_orm_migration::prelude::*;

/// `ix_runs_finished`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS ix_runs_finished ON automation_runs (completed_at) \
                 WHERE status IN ('SUCCEEDED', 'FAILED', 'CANCELLED')",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS ix_runs_finished")
            .await?;
        Ok(())
    }
}
