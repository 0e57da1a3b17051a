//! Creates every table of DESIGN §2 with its unique constraints and lookup indexes.
use sea_orm_migration::{prelude::*, schema::*};

/// The initial schema.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            orgs(),
            api_keys(),
            source_slugs(),
            websocket_sources(),
            source_status(),
            webhooks(),
            automations(),
            events(),
            automation_runs(),
            stream_tokens(),
        ] {
            m.create_table(table).await?;
        }
        for index in indexes() {
            m.create_index(index).await?;
        }
        undispatched_lookup(m).await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for name in [
            "stream_tokens",
            "automation_runs",
            "events",
            "automations",
            "webhooks",
            "source_status",
            "websocket_sources",
            "source_slugs",
            "api_keys",
            "orgs",
        ] {
            m.drop_table(Table::drop().table(Alias::new(name)).to_owned())
                .await?;
        }
        Ok(())
    }
}

/// How dispatch finds events it has not handled yet. SQLite: a partial index holding only those
/// events. PostgreSQL: no index on the columns dispatch updates, and room on every page, so marking
/// an event dispatched is a HOT update (no new index entries, no row moved); lookups walk the
/// time-ordered primary key instead.
async fn undispatched_lookup(m: &SchemaManager<'_>) -> Result<(), DbErr> {
    let sql = match m.get_database_backend() {
        sea_orm::DbBackend::Postgres => "ALTER TABLE events SET (fillfactor = 70)",
        _ => {
            "CREATE INDEX IF NOT EXISTS ix_events_undispatched ON events (id) WHERE dispatched_at IS NULL"
        }
    };
    m.get_connection().execute_unprepared(sql).await?;
    Ok(())
}

fn orgs() -> TableCreateStatement {
    Table::create()
        .table("orgs")
        .if_not_exists()
        .col(uuid("id").primary_key())
        .col(string_uniq("name"))
        .col(timestamp_with_time_zone("created_at"))
        .to_owned()
}

fn api_keys() -> TableCreateStatement {
    Table::create()
        .table("api_keys")
        .if_not_exists()
        .col(uuid("id").primary_key())
        .col(uuid("org_id"))
        .col(string("name"))
        .col(string("role"))
        .col(string("prefix"))
        .col(string_uniq("key_hash"))
        .col(timestamp_with_time_zone("created_at"))
        .col(timestamp_with_time_zone_null("last_used_at"))
        .col(timestamp_with_time_zone_null("revoked_at"))
        .to_owned()
}

fn source_slugs() -> TableCreateStatement {
    Table::create()
        .table("source_slugs")
        .if_not_exists()
        .col(uuid("org_id"))
        .col(string("slug"))
        .col(string("owner_kind"))
        .col(uuid("owner_id"))
        .primary_key(Index::create().col("org_id").col("slug"))
        .to_owned()
}

fn websocket_sources() -> TableCreateStatement {
    Table::create()
        .table("websocket_sources")
        .if_not_exists()
        .col(uuid("id").primary_key())
        .col(uuid("org_id"))
        .col(string("name"))
        .col(string("source"))
        .col(string("kind"))
        .col(boolean("enabled"))
        .col(text_null("event_key_expr"))
        .col(text_null("payload_expr"))
        .col(text_null("filter_expr"))
        .col(text_null("dedup_key_expr"))
        .col(json_binary("config"))
        .col(blob_null("secrets"))
        .col(big_integer("revision"))
        .col(timestamp_with_time_zone("created_at"))
        .col(timestamp_with_time_zone("updated_at"))
        .to_owned()
}

fn source_status() -> TableCreateStatement {
    Table::create()
        .table("source_status")
        .if_not_exists()
        .col(uuid("source_id").primary_key())
        .col(string("state"))
        .col(text_null("detail"))
        .col(timestamp_with_time_zone_null("connected_at"))
        .col(timestamp_with_time_zone_null("last_event_at"))
        .col(timestamp_with_time_zone_null("next_retry_at"))
        .col(integer("consecutive_failures"))
        .col(json_binary("counters"))
        .col(timestamp_with_time_zone("updated_at"))
        .to_owned()
}

fn webhooks() -> TableCreateStatement {
    Table::create()
        .table("webhooks")
        .if_not_exists()
        .col(uuid("id").primary_key())
        .col(uuid("org_id"))
        .col(string("name"))
        .col(string("source"))
        .col(json_binary("verifier"))
        .col(blob_null("secrets"))
        .col(boolean("insecure"))
        .col(text_null("event_key_expr"))
        .col(text_null("payload_expr"))
        .col(text_null("filter_expr"))
        .col(text_null("dedup_key_expr"))
        .col(big_integer("max_body_bytes"))
        .col(json_binary_null("rate_limit"))
        .col(boolean("enabled"))
        .col(timestamp_with_time_zone_null("secret_rotated_at"))
        .col(timestamp_with_time_zone("created_at"))
        .col(timestamp_with_time_zone("updated_at"))
        .to_owned()
}

fn automations() -> TableCreateStatement {
    Table::create()
        .table("automations")
        .if_not_exists()
        .col(uuid("id").primary_key())
        .col(uuid("org_id"))
        .col(string("name"))
        .col(boolean("enabled"))
        .col(json_binary("trigger"))
        .col(timestamp_with_time_zone("created_at"))
        .col(timestamp_with_time_zone("updated_at"))
        .to_owned()
}

fn events() -> TableCreateStatement {
    Table::create()
        .table("events")
        .if_not_exists()
        .col(uuid("id").primary_key())
        .col(uuid("org_id"))
        .col(string("origin"))
        .col(string("source"))
        .col(uuid_null("source_id"))
        .col(text("dedup_key"))
        .col(text_null("event_key"))
        .col(json_binary("raw"))
        .col(json_binary_null("payload"))
        .col(json_binary("meta"))
        .col(string("status"))
        .col(text_null("error"))
        .col(json_binary_null("outcome"))
        .col(timestamp_with_time_zone("received_at"))
        .col(timestamp_with_time_zone_null("dispatched_at"))
        .to_owned()
}

fn automation_runs() -> TableCreateStatement {
    Table::create()
        .table("automation_runs")
        .if_not_exists()
        .col(uuid("id").primary_key())
        .col(uuid("org_id"))
        .col(uuid("automation_id"))
        .col(uuid("event_id"))
        .col(string("status"))
        .col(json_binary_null("event_payload"))
        .col(integer("attempts"))
        .col(string_null("lease_owner"))
        .col(timestamp_with_time_zone_null("lease_expires_at"))
        .col(text_null("error_detail"))
        .col(timestamp_with_time_zone("created_at"))
        .col(timestamp_with_time_zone_null("started_at"))
        .col(timestamp_with_time_zone_null("completed_at"))
        .to_owned()
}

/// Short-lived, single-use tokens for `GET /v1/stream?token=…` (browsers cannot set headers on a
/// WebSocket upgrade). Only the SHA-256 of a token is stored.
fn stream_tokens() -> TableCreateStatement {
    Table::create()
        .table("stream_tokens")
        .if_not_exists()
        .col(uuid("id").primary_key())
        .col(uuid("org_id"))
        .col(uuid("key_id"))
        .col(string_uniq("token_hash"))
        .col(timestamp_with_time_zone("created_at"))
        .col(timestamp_with_time_zone("expires_at"))
        .to_owned()
}

fn index(name: &str, table: &str, cols: &[&str], unique: bool) -> IndexCreateStatement {
    let mut stmt = Index::create();
    stmt.name(name).table(Alias::new(table)).if_not_exists();
    for col in cols {
        stmt.col(Alias::new(*col));
    }
    if unique {
        stmt.unique();
    }
    stmt.to_owned()
}

fn indexes() -> Vec<IndexCreateStatement> {
    vec![
        index(
            "ux_events_dedup",
            "events",
            &["org_id", "source", "dedup_key"],
            true,
        ),
        index("ix_events_org_id", "events", &["org_id", "id"], false),
        index(
            "ux_runs_event_automation",
            "automation_runs",
            // Event first: also serves "the runs of an event" (no separate index to maintain).
            &["event_id", "automation_id"],
            true,
        ),
        index(
            "ix_runs_org_status",
            "automation_runs",
            &["org_id", "status", "id"],
            false,
        ),
        index("ix_api_keys_org", "api_keys", &["org_id"], false),
        index(
            "ix_ws_sources_org",
            "websocket_sources",
            &["org_id", "source"],
            false,
        ),
        index("ix_webhooks_org", "webhooks", &["org_id", "source"], false),
        index("ix_automations_org", "automations", &["org_id"], false),
    ]
}
