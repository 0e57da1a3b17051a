//! Repository functions for `orgs`.

use entity::org;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set,
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

/// The name of the operator's org: the one made on first start. Its admins run the operations
/// that concern the whole deployment rather than one org (the cluster's replicas, draining a
/// replica). `switchboard orgs create` cannot take the name while it exists.
pub const OPERATOR_ORG: &str = "default";

/// The operator's org ([`OPERATOR_ORG`]), if it exists.
pub async fn operator_org_id(db: &impl ConnectionTrait) -> Result<Option<Uuid>, DbErr> {
    Ok(find_org_by_name(db, OPERATOR_ORG).await?.map(|org| org.id))
}
