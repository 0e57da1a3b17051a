//! `api_keys`: bearer keys, stored as SHA-256 hashes with a visible prefix.
use sea_orm::entity::prelude::*;

/// One API key; the key itself is never stored.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    /// `admin` | `member` | `worker`.
    pub role: String,
    /// The first characters of the key, shown so people can tell keys apart.
    pub prefix: String,
    /// Lower-case hex SHA-256 of the whole key.
    #[sea_orm(unique)]
    pub key_hash: String,
    pub created_at: DateTimeUtc,
    pub last_used_at: Option<DateTimeUtc>,
    pub revoked_at: Option<DateTimeUtc>,
}

/// No navigable relations: queries join explicitly.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
