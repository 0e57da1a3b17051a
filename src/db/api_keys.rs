//! Repository functions for `api_keys`.

use chrono::{DateTime, Utc};
use entity::api_key;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use super::pagination::OffsetPage;

/// What to store for a new key (the key itself never reaches storage).
pub struct NewApiKey<'a> {
    /// Owning org.
    pub org_id: Uuid,
    /// Display name.
    pub name: &'a str,
    /// `admin` | `member` | `worker`.
    pub role: &'a str,
    /// Visible prefix.
    pub prefix: &'a str,
    /// SHA-256 hex of the key.
    pub key_hash: &'a str,
}

/// Inserts a key.
pub async fn insert_api_key(
    db: &impl ConnectionTrait,
    key: NewApiKey<'_>,
) -> Result<api_key::Model, DbErr> {
    api_key::ActiveModel {
        id: Set(super::new_id()),
        org_id: Set(key.org_id),
        name: Set(key.name.to_owned()),
        role: Set(key.role.to_owned()),
        prefix: Set(key.prefix.to_owned()),
        key_hash: Set(key.key_hash.to_owned()),
        created_at: Set(super::now()),
        last_used_at: Set(None),
        revoked_at: Set(None),
    }
    .insert(db)
    .await
}

/// Counts keys across all orgs (zero means first start).
pub async fn count_all_api_keys(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    api_key::Entity::find().count(db).await
}

/// Unrevoked keys that share a visible prefix (normally one).
pub async fn find_active_by_prefix(
    db: &impl ConnectionTrait,
    prefix: &str,
) -> Result<Vec<api_key::Model>, DbErr> {
    api_key::Entity::find()
        .filter(api_key::Column::Prefix.eq(prefix))
        .filter(api_key::Column::RevokedAt.is_null())
        .all(db)
        .await
}

/// Records use of a key, at most once a minute per key so reads do not turn into writes.
pub async fn touch_api_key(
    db: &impl ConnectionTrait,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let stale = now - chrono::Duration::seconds(60);
    api_key::Entity::update_many()
        .col_expr(api_key::Column::LastUsedAt, Expr::value(now))
        .filter(api_key::Column::Id.eq(id))
        .filter(
            sea_orm::Condition::any()
                .add(api_key::Column::LastUsedAt.is_null())
                .add(api_key::Column::LastUsedAt.lt(stale)),
        )
        .exec(db)
        .await?;
    Ok(())
}

/// One page of an org's keys, newest first, with the total.
pub async fn list_api_keys(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    page: OffsetPage,
) -> Result<(Vec<api_key::Model>, u64), DbErr> {
    let query = api_key::Entity::find().filter(api_key::Column::OrgId.eq(org_id));
    let total = query.clone().count(db).await?;
    let items = query
        .order_by_desc(api_key::Column::Id)
        .limit(page.limit)
        .offset(page.offset)
        .all(db)
        .await?;
    Ok((items, total))
}

/// Finds one key of an org.
pub async fn find_api_key(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    id: Uuid,
) -> Result<Option<api_key::Model>, DbErr> {
    api_key::Entity::find_by_id(id)
        .filter(api_key::Column::OrgId.eq(org_id))
        .one(db)
        .await
}

/// Revokes a key of an org; returns whether a live key was revoked.
pub async fn revoke_api_key(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    id: Uuid,
) -> Result<bool, DbErr> {
    let result = api_key::Entity::update_many()
        .col_expr(api_key::Column::RevokedAt, Expr::value(super::now()))
        .filter(api_key::Column::Id.eq(id))
        .filter(api_key::Column::OrgId.eq(org_id))
        .filter(api_key::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
}
