//! Repository functions for `automations`.

use entity::automation;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::pagination::OffsetPage;

/// Inserts an automation.
pub async fn insert_automation(
    db: &impl ConnectionTrait,
    row: automation::Model,
) -> Result<automation::Model, DbErr> {
    row.into_active_model().insert(db).await
}

/// Replaces an automation's row.
pub async fn update_automation(
    db: &impl ConnectionTrait,
    row: automation::Model,
) -> Result<automation::Model, DbErr> {
    row.into_active_model().reset_all().update(db).await
}

/// Finds one automation of an org.
pub async fn find_automation(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    id: Uuid,
) -> Result<Option<automation::Model>, DbErr> {
    automation::Entity::find_by_id(id)
        .filter(automation::Column::OrgId.eq(org_id))
        .one(db)
        .await
}

/// One page of an org's automations, oldest first, with the total.
pub async fn list_automations(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    page: OffsetPage,
) -> Result<(Vec<automation::Model>, u64), DbErr> {
    let query = automation::Entity::find().filter(automation::Column::OrgId.eq(org_id));
    let total = query.clone().count(db).await?;
    let items = query
        .order_by_asc(automation::Column::Id)
        .limit(page.limit)
        .offset(page.offset)
        .all(db)
        .await?;
    Ok((items, total))
}

/// Every automation of every org, enabled or not (the compiled set takes the enabled ones; the
/// run queue needs every one's policy).
pub async fn all_automations(db: &impl ConnectionTrait) -> Result<Vec<automation::Model>, DbErr> {
    automation::Entity::find()
        .order_by_asc(automation::Column::Id)
        .all(db)
        .await
}

/// Finds one automation of any org (the automation index applies changes by id).
pub async fn find_automation_by_id(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<automation::Model>, DbErr> {
    automation::Entity::find_by_id(id).one(db).await
}

/// The automations of any org among `ids` (those that still exist), read 500 ids per query.
pub async fn automations_by_ids(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> Result<Vec<automation::Model>, DbErr> {
    let mut rows = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let found = automation::Entity::find()
            .filter(automation::Column::Id.is_in(chunk.iter().copied()))
            .all(db)
            .await?;
        rows.extend(found);
    }
    Ok(rows)
}

/// Every automation's id and `updated_at` (what the automation index compares to resync).
pub async fn automation_versions(
    db: &impl ConnectionTrait,
) -> Result<Vec<(Uuid, chrono::DateTime<chrono::Utc>)>, DbErr> {
    automation::Entity::find()
        .select_only()
        .column(automation::Column::Id)
        .column(automation::Column::UpdatedAt)
        .into_tuple()
        .all(db)
        .await
}

/// Deletes an automation.
pub async fn delete_automation(db: &impl ConnectionTrait, id: Uuid) -> Result<(), DbErr> {
    automation::Entity::delete_by_id(id).exec(db).await?;
    Ok(())
}
