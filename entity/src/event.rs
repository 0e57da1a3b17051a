//! `events`: the durable inbox. One row per accepted message, unique per (org, source, dedup key).
use sea_orm::entity::prelude::*;

/// One received event.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    /// `websocket` | `webhook`.
    pub origin: String,
    pub source: String,
    pub source_id: Option<Uuid>,
    /// The dedup key; the event id when the source has no dedup expression.
    pub dedup_key: String,
    pub event_key: Option<String>,
    #[sea_orm(column_type = "JsonBinary")]
    pub raw: Json,
    /// The payload; `NULL` with a status other than `error` means "the raw message" (no
    /// payload expression), so the message is not stored twice.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub payload: Option<Json>,
    #[sea_orm(column_type = "JsonBinary")]
    pub meta: Json,
    /// `received` | `dispatched` | `no_key` | `error`.
    pub status: String,
    pub error: Option<String>,
    /// Per-automation match results, written by dispatch.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub outcome: Option<Json>,
    pub received_at: DateTimeUtc,
    /// Set in the dispatch transaction; `NULL` means still to dispatch (also after a restart).
    pub dispatched_at: Option<DateTimeUtc>,
    /// Webhook replay guard: `sha256:<hex>` of the body for presets whose signature covers no
    /// timestamp; unique per org and source where set.
    pub replay_key: Option<String>,
}

/// No navigable relations: queries join explicitly.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
