//! Repository functions for `webhooks`.

use entity::webhook;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::pagination::OffsetPage;

/// Inserts a webhook.
pub async fn insert_webhook(
    db: &impl ConnectionTrait,
    row: webhook::Model,
) -> Result<webhook::Model, DbErr> {
    row.into_active_model().insert(db).await
}

/// Replaces a webhook's row.
pub async fn update_webhook(
    db: &impl ConnectionTrait,
    row: webhook::Model,
) -> Result<webhook::Model, DbErr> {
    row.into_active_model().reset_all().update(db).await
}

/// Finds one webhook of an org.
pub async fn find_webhook(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    id: Uuid,
) -> Result<Option<webhook::Model>, DbErr> {
    webhook::Entity::find_by_id(id)
        .filter(webhook::Column::OrgId.eq(org_id))
        .one(db)
        .await
}

/// Finds an org's webhook by slug.
pub async fn find_webhook_by_slug(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    slug: &str,
) -> Result<Option<webhook::Model>, DbErr> {
    webhook::Entity::find()
        .filter(webhook::Column::OrgId.eq(org_id))
        .filter(webhook::Column::Source.eq(slug))
        .one(db)
        .await
}

/// One page of an org's webhooks, oldest first, with the total.
pub async fn list_webhooks(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    page: OffsetPage,
) -> Result<(Vec<webhook::Model>, u64), DbErr> {
    let query = webhook::Entity::find().filter(webhook::Column::OrgId.eq(org_id));
    let total = query.clone().count(db).await?;
    let items = query
        .order_by_asc(webhook::Column::Id)
        .limit(page.limit)
        .offset(page.offset)
        .all(db)
        .await?;
    Ok((items, total))
}

/// Every webhook of every org (for `keys rotate`).
pub async fn all_webhooks(db: &impl ConnectionTrait) -> Result<Vec<webhook::Model>, DbErr> {
    webhook::Entity::find()
        .order_by_asc(webhook::Column::Id)
        .all(db)
        .await
}

/// Deletes a webhook.
pub async fn delete_webhook(db: &impl ConnectionTrait, id: Uuid) -> Result<(), DbErr> {
    webhook::Entity::delete_by_id(id).exec(db).await?;
    Ok(())
}
