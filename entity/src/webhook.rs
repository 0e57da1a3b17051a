//! `webhooks`: inbound webhook endpoints and their verifiers.
use sea_orm::entity::prelude::*;

/// One configured webhook.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "webhooks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub source: String,
    /// Preset name plus its non-secret settings.
    #[sea_orm(column_type = "JsonBinary")]
    pub verifier: Json,
    /// Sealed blob: current secret, previous secret and when the previous one expires.
    #[sea_orm(column_type = "Blob", nullable)]
    pub secrets: Option<Vec<u8>>,
    /// Accept unsigned requests; every response says so loudly.
    pub insecure: bool,
    pub event_key_expr: Option<String>,
    pub payload_expr: Option<String>,
    pub filter_expr: Option<String>,
    pub dedup_key_expr: Option<String>,
    pub max_body_bytes: i64,
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub rate_limit: Option<Json>,
    pub enabled: bool,
    pub secret_rotated_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

/// No navigable relations: queries join explicitly.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
