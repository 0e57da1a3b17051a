//! Repository functions for `stream_tokens`: short-lived, single-use tokens for the live stream.

use chrono::{DateTime, Utc};
use entity::stream_token;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set,
};
use uuid::Uuid;

/// What to store for a new token (the token itself never reaches storage).
pub struct NewStreamToken<'a> {
    /// The org the stream will show.
    pub org_id: Uuid,
    /// The API key that asked for it.
    pub key_id: Uuid,
    /// SHA-256 hex of the token.
    pub token_hash: &'a str,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// Inserts a token.
pub async fn insert_stream_token(
    db: &impl ConnectionTrait,
    token: NewStreamToken<'_>,
) -> Result<stream_token::Model, DbErr> {
    stream_token::ActiveModel {
        id: Set(super::new_id()),
        org_id: Set(token.org_id),
        key_id: Set(token.key_id),
        token_hash: Set(token.token_hash.to_owned()),
        created_at: Set(super::now()),
        expires_at: Set(token.expires_at),
    }
    .insert(db)
    .await
}

/// Deletes every token that expired before `now` (unused ones never get consumed).
pub async fn delete_expired_stream_tokens(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let result = stream_token::Entity::delete_many()
        .filter(stream_token::Column::ExpiresAt.lte(now))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// The token with this hash, when it exists and is still valid at `now`; nothing is consumed.
pub async fn find_valid_stream_token(
    db: &impl ConnectionTrait,
    token_hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<stream_token::Model>, DbErr> {
    stream_token::Entity::find()
        .filter(stream_token::Column::TokenHash.eq(token_hash))
        .filter(stream_token::Column::ExpiresAt.gt(now))
        .one(db)
        .await
}

/// Consumes the token with this hash: deletes it and returns it when it was still valid at `now`.
/// The delete decides, so of two concurrent uses exactly one gets the token.
pub async fn consume_stream_token(
    db: &impl ConnectionTrait,
    token_hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<stream_token::Model>, DbErr> {
    let Some(found) = stream_token::Entity::find()
        .filter(stream_token::Column::TokenHash.eq(token_hash))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let deleted = stream_token::Entity::delete_many()
        .filter(stream_token::Column::Id.eq(found.id))
        .exec(db)
        .await?;
    Ok((deleted.rows_affected == 1 && found.expires_at > now).then_some(found))
}
