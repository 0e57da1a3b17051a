//! `source_slugs`: the one namespace of source slugs per org, shared by WebSocket sources and
//! webhooks. Its primary key makes a duplicate slug impossible even under concurrent creates.
use sea_orm::entity::prelude::*;

/// One claimed slug and the resource that owns it.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "source_slugs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub org_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub slug: String,
    /// `websocket` | `webhook`.
    pub owner_kind: String,
    pub owner_id: Uuid,
}

/// No navigable relations: queries join explicitly.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
