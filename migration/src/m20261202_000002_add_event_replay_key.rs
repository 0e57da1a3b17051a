//! Webhook replay guard: `events.replay_key`, unique per org and source where set. Deliveries of
//! presets whose signature covers no timestamp (GitHub, HMAC without a timestamp header) carry the
//! SHA-256 of their body here, so a captured delivery replayed with a fresh (unsigned) delivery id
//! is recognised as the event already stored. The index is partial: rows without a replay key
//! (every WebSocket event) cost it nothing.
use sea_orm_migration::{prelude::*, schema::*};

/// `events.replay_key` and its unique partial index.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("events")
                .add_column(string_null("replay_key"))
                .to_owned(),
        )
        .await?;
        m.get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX IF NOT EXISTS ux_events_replay ON events \
                 (org_id, source, replay_key) WHERE replay_key IS NOT NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS ux_events_replay")
            .await?;
        m.alter_table(
            Table::alter()
                .table("events")
                .drop_column("replay_key")
                .to_owned(),
        )
        .await
    }
}
