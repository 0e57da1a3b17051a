//! `websocket_sources`: configuration of outbound WebSocket sources (runtime state lives in
//! `source_status`).
use sea_orm::entity::prelude::*;

/// One configured source.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "websocket_sources")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    /// The slug automations name in their trigger.
    pub source: String,
    /// `generic` | `slack`.
    pub kind: String,
    pub enabled: bool,
    pub event_key_expr: Option<String>,
    pub payload_expr: Option<String>,
    pub filter_expr: Option<String>,
    pub dedup_key_expr: Option<String>,
    /// Non-secret, kind-specific settings.
    #[sea_orm(column_type = "JsonBinary")]
    pub config: Json,
    /// One sealed blob holding every secret of the source (see `crypto`).
    #[sea_orm(column_type = "Blob", nullable)]
    pub secrets: Option<Vec<u8>>,
    /// Bumped by every committed change; actors run the newest revision.
    pub revision: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

/// No navigable relations: queries join explicitly.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
