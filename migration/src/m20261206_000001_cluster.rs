//! Replicas on one PostgreSQL (docs/architecture.md, "Replicas"): the registry of running
//! replicas (with how many live-stream clients each serves), one ownership lease per source with a
//! fencing epoch, the command table that carries operator commands to a source's owner, the
//! relay table for live-stream messages too large for a `NOTIFY` payload, the
//! `apps.connections.open` budget of each Slack app shared by all replicas, and the epoch a status row was last written under (a
//! write under an older epoch is refused, so a stale owner cannot overwrite its successor's
//! status). The tables exist on SQLite too (one schema for both engines) and stay empty there:
//! SQLite is single-node.
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Creates `replicas`, `source_leases` and `source_commands`; adds `source_status.owner_epoch`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("replicas")
                .if_not_exists()
                .col(uuid("id").primary_key())
                .col(string("address"))
                .col(string("version"))
                .col(timestamp_with_time_zone("started_at"))
                .col(timestamp_with_time_zone("heartbeat_at"))
                .col(boolean("draining").default(false))
                .col(integer("streams").default(0))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("source_leases")
                .if_not_exists()
                .col(uuid("source_id").primary_key())
                .col(uuid("replica_id"))
                .col(big_integer("epoch"))
                .col(integer("weight"))
                .col(timestamp_with_time_zone("expires_at"))
                .col(uuid_null("previous_replica_id"))
                .col(timestamp_with_time_zone_null("handed_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_source_leases_replica")
                .table("source_leases")
                .col("replica_id")
                .if_not_exists()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("source_commands")
                .if_not_exists()
                .col(big_integer("id").primary_key().auto_increment())
                .col(uuid("source_id"))
                .col(string("kind"))
                .col(text("body"))
                .col(timestamp_with_time_zone("created_at"))
                .col(text_null("answer"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("stream_relay")
                .if_not_exists()
                .col(big_integer("id").primary_key().auto_increment())
                .col(text("body"))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("slack_open_budgets")
                .if_not_exists()
                .col(string("app").primary_key())
                .col(timestamp_with_time_zone("next_at"))
                .col(timestamp_with_time_zone("last_at"))
                .col(timestamp_with_time_zone_null("not_before"))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table("source_status")
                .add_column(big_integer("owner_epoch").default(0))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("source_status")
                .drop_column("owner_epoch")
                .to_owned(),
        )
        .await?;
        for table in [
            "slack_open_budgets",
            "stream_relay",
            "source_commands",
            "source_leases",
            "replicas",
        ] {
            m.drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
