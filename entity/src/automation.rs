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
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

/// No navigable relations: queries join explicitly.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
