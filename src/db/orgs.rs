//! Repository functions for `orgs`.

use entity::org;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect as _, Set,
};
use uuid::Uuid;

/// Inserts an org.
pub async fn insert_org(db: &impl ConnectionTrait, name: &str) -> Result<org::Model, DbErr> {
    org::ActiveModel {
        id: Set(super::new_id()),
        name: Set(name.to_owned()),
        created_at: Set(super::now()),
    }
    .insert(db)
    .await
}

/// Finds an org by id.
pub async fn find_org(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<org::Model>, DbErr> {
    org::Entity::find_by_id(id).one(db).await
}

/// Finds an org by name.
pub async fn find_org_by_name(
    db: &impl ConnectionTrait,
    name: &str,
) -> Result<Option<org::Model>, DbErr> {
    org::Entity::find()
        .filter(org::Column::Name.eq(name))
        .one(db)
        .await
}

/// The operator's org: the first one created (org `default`, made on first start). Its admins run
/// the operations that concern the whole deployment rather than one org (the cluster's replicas,
/// draining a replica).
pub async fn operator_org_id(db: &impl ConnectionTrait) -> Result<Option<Uuid>, DbErr> {
    let first = org::Entity::find()
        .order_by_asc(org::Column::CreatedAt)
        .order_by_asc(org::Column::Id)
        .limit(1)
        .one(db)
        .await?;
    Ok(first.map(|org| org.id))
}
