//! The run queue (workers issue): runs get `available_at` (when a worker may claim them next),
//! `lease_token` (fencing: a new one per claim) and `result`; the status `COMPLETED` becomes
//! `SUCCEEDED`. Automations get their queue settings (`retry`, `lease_s`, `max_concurrency`; NULL
//! means the documented default). Partial indexes serve claims (pending runs by org, oldest
//! available first), the watchdog (running runs by lease expiry) and `max_concurrency` (running
//! runs per automation), so none of them scans the runs table.
use sea_orm_migration::{prelude::*, schema::*};

/// Run queue columns, the status rename and the queue indexes.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            timestamp_with_time_zone_null("available_at"),
            string_null("lease_token"),
            json_binary_null("result"),
        ] {
            m.alter_table(
                Table::alter()
                    .table("automation_runs")
                    .add_column(column)
                    .to_owned(),
            )
            .await?;
        }
        for column in [
            json_binary_null("retry"),
            integer_null("lease_s"),
            integer_null("max_concurrency"),
        ] {
            m.alter_table(
                Table::alter()
                    .table("automations")
                    .add_column(column)
                    .to_owned(),
            )
            .await?;
        }
        let db = m.get_connection();
        for sql in [
            "UPDATE automation_runs SET status = 'SUCCEEDED' WHERE status = 'COMPLETED'",
            "UPDATE automation_runs SET available_at = created_at WHERE available_at IS NULL",
            "CREATE INDEX IF NOT EXISTS ix_runs_claim ON automation_runs \
             (org_id, available_at, id) WHERE status = 'PENDING'",
            "CREATE INDEX IF NOT EXISTS ix_runs_lease ON automation_runs \
             (lease_expires_at) WHERE status = 'RUNNING'",
            "CREATE INDEX IF NOT EXISTS ix_runs_running ON automation_runs \
             (automation_id) WHERE status = 'RUNNING'",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        for sql in [
            "DROP INDEX IF EXISTS ix_runs_claim",
            "DROP INDEX IF EXISTS ix_runs_lease",
            "DROP INDEX IF EXISTS ix_runs_running",
            "UPDATE automation_runs SET status = 'COMPLETED' WHERE status = 'SUCCEEDED'",
        ] {
            db.execute_unprepared(sql).await?;
        }
        for column in ["available_at", "lease_token", "result"] {
            m.alter_table(
                Table::alter()
                    .table("automation_runs")
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
        }
        for column in ["retry", "lease_s", "max_concurrency"] {
            m.alter_table(
                Table::alter()
                    .table("automations")
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
