//! Runs carry their event's source slug, so run lists, claims and indexes can filter by source
//! without joining the events table. Existing runs take it from their event.
use sea_orm_migration::{prelude::*, schema::*};

/// `automation_runs.source`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("automation_runs")
                .add_column(string("source").default(""))
                .to_owned(),
        )
        .await?;
        m.get_connection()
            .execute_unprepared(
                "UPDATE automation_runs SET source = (SELECT events.source FROM events \
                 WHERE events.id = automation_runs.event_id) \
                 WHERE EXISTS (SELECT 1 FROM events WHERE events.id = automation_runs.event_id)",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("automation_runs")
                .drop_column("source")
                .to_owned(),
        )
        .await
    }
}
