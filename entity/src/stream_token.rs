//! `stream_tokens`: short-lived, single-use tokens that open the live stream (`GET /v1/stream`)
//! where a client cannot send an `Authorization` header. Stored as SHA-256 hashes.
use sea_orm::entity::prelude::*;

/// One token; the token itself is never stored.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "stream_tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The org the stream will show.
    pub org_id: Uuid,
    /// The API key that asked for it (revoking the key voids its tokens).
    pub key_id: Uuid,
    /// Lower-case hex SHA-256 of the whole token.
    #[sea_orm(unique)]
    pub token_hash: String,
    pub created_at: DateTimeUtc,
    /// After this the token opens nothing.
    pub expires_at: DateTimeUtc,
}

/// No navigable relations: queries join explicitly.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
