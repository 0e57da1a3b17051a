//! `automations`: user-defined triggers that turn matching events into runs.
use sea_orm::entity::prelude::*;

/// One automation.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "automations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub enabled: bool,
    /// `{"type": "event", "source", "on", "filter"?}`.
    #[sea_orm(column_type = "JsonBinary")]
    pub trigger: Json,
    /// `{"max_attempts", "initial_backoff_s", "max_backoff_s"}`; NULL: the defaults.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub retry: Option<Json>,
    /// Lease of a claimed run in seconds; NULL: the default.
    pub lease_s: Option<i32>,
    /// RUNNING runs at once; NULL: unlimited.
    pub max_concurrency: Option<i32>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

/// No navigable relations: queries join explicitly.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
