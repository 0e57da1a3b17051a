//! Drops `ix_runs_org (org_id, id)` and `ix_runs_automation (automation_id, id)`. The org's runs
//! and an automation's runs without a status filter are now read as a merge of one ordered read
//! per status of `ix_runs_org_status (org_id, status, id)` and `ix_runs_automation_status
//! (automation_id, status, id)` (at most five times a page of index entries, whatever the
//! history's size; plans in docs/operations.md). Each of the two cost every run insert one more
//! index entry: with both gone, the 10-automation firehose (five runs per event) keeps most of its
//! throughput (docs/benchmarks.md). Any other look-up by `org_id` or `automation_id` is served by
//! the two remaining indexes, which start with those columns.
use sea_orm_migration::prelude::*;

/// Drops the two run indexes the per-status merge replaces.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        for name in ["ix_runs_org", "ix_runs_automation"] {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
                .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        for sql in [
            "CREATE INDEX IF NOT EXISTS ix_runs_org ON automation_runs (org_id, id)",
            "CREATE INDEX IF NOT EXISTS ix_runs_automation ON automation_runs (automation_id, id)",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
