//! `source_status`: runtime state of a WebSocket source, kept apart from its configuration.
use sea_orm::entity::prelude::*;

/// The last persisted state of one source.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "source_status")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub source_id: Uuid,
    /// `disabled` | `connecting` | `connected` | `backoff` | `failing` | `paused` | `failed`.
    pub state: String,
    pub detail: Option<String>,
    pub connected_at: Option<DateTimeUtc>,
    pub last_event_at: Option<DateTimeUtc>,
    pub next_retry_at: Option<DateTimeUtc>,
    pub consecutive_failures: i32,
    #[sea_orm(column_type = "JsonBinary")]
    pub counters: Json,
    pub updated_at: DateTimeUtc,
}

/// No navigable relations: queries join explicitly.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
