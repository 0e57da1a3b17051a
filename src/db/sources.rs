//! Repository functions for `websocket_sources` and `source_status`.

use entity::{source_status, websocket_source};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use super::pagination::OffsetPage;

/// Inserts a source and its initial status row.
pub async fn insert_source(
    db: &impl ConnectionTrait,
    source: websocket_source::Model,
) -> Result<websocket_source::Model, DbErr> {
    let state = if source.enabled {
        "connecting"
    } else {
        "disabled"
    };
    let source = source.into_active_model().insert(db).await?;
    source_status::ActiveModel {
        source_id: Set(source.id),
        state: Set(state.to_owned()),
        detail: Set(None),
        connected_at: Set(None),
        last_event_at: Set(None),
        next_retry_at: Set(None),
        consecutive_failures: Set(0),
        counters: Set(serde_json::json!({})),
        updated_at: Set(super::now()),
    }
    .insert(db)
    .await?;
    Ok(source)
}

/// Replaces a source's row (the caller bumped `revision`).
pub async fn update_source(
    db: &impl ConnectionTrait,
    source: websocket_source::Model,
) -> Result<websocket_source::Model, DbErr> {
    source.into_active_model().reset_all().update(db).await
}

/// Finds one source of an org.
pub async fn find_source(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    id: Uuid,
) -> Result<Option<websocket_source::Model>, DbErr> {
    websocket_source::Entity::find_by_id(id)
        .filter(websocket_source::Column::OrgId.eq(org_id))
        .one(db)
        .await
}

/// Finds an org's source by slug.
pub async fn find_source_by_slug(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    slug: &str,
) -> Result<Option<websocket_source::Model>, DbErr> {
    websocket_source::Entity::find()
        .filter(websocket_source::Column::OrgId.eq(org_id))
        .filter(websocket_source::Column::Source.eq(slug))
        .one(db)
        .await
}

/// One page of an org's sources, oldest first, with the total.
pub async fn list_sources(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    page: OffsetPage,
) -> Result<(Vec<websocket_source::Model>, u64), DbErr> {
    let query = websocket_source::Entity::find().filter(websocket_source::Column::OrgId.eq(org_id));
    let total = query.clone().count(db).await?;
    let items = query
        .order_by_asc(websocket_source::Column::Id)
        .limit(page.limit)
        .offset(page.offset)
        .all(db)
        .await?;
    Ok((items, total))
}

/// Every source of an org (or the one with `slug`), oldest first (the live stream's snapshot).
pub async fn org_sources(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    slug: Option<&str>,
) -> Result<Vec<websocket_source::Model>, DbErr> {
    let mut query =
        websocket_source::Entity::find().filter(websocket_source::Column::OrgId.eq(org_id));
    if let Some(slug) = slug {
        query = query.filter(websocket_source::Column::Source.eq(slug));
    }
    query
        .order_by_asc(websocket_source::Column::Id)
        .all(db)
        .await
}

/// Every source of every org (for `keys rotate` and the supervisor).
pub async fn all_sources(db: &impl ConnectionTrait) -> Result<Vec<websocket_source::Model>, DbErr> {
    websocket_source::Entity::find()
        .order_by_asc(websocket_source::Column::Id)
        .all(db)
        .await
}

/// Deletes a source and its status.
pub async fn delete_source(db: &impl ConnectionTrait, id: Uuid) -> Result<(), DbErr> {
    source_status::Entity::delete_by_id(id).exec(db).await?;
    websocket_source::Entity::delete_by_id(id).exec(db).await?;
    Ok(())
}

/// The status rows of the given sources.
pub async fn find_statuses(
    db: &impl ConnectionTrait,
    ids: Vec<Uuid>,
) -> Result<Vec<source_status::Model>, DbErr> {
    source_status::Entity::find()
        .filter(source_status::Column::SourceId.is_in(ids))
        .all(db)
        .await
}
