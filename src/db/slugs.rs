//! Repository functions for `source_slugs`, the per-org namespace shared by WebSocket sources and
//! webhooks.

use entity::source_slug;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set};
use uuid::Uuid;

/// Why a slug could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Another source or webhook of the org already uses it.
    #[error("slug is already used by a {0} of this org")]
    Taken(String),
    /// Storage failed.
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Claims `slug` for an owner; fails with [`ClaimError::Taken`] when it is in use.
pub async fn claim_slug(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    slug: &str,
    owner_kind: &str,
    owner_id: Uuid,
) -> Result<(), ClaimError> {
    if let Some(existing) = source_slug::Entity::find_by_id((org_id, slug.to_owned()))
        .one(db)
        .await?
    {
        return Err(ClaimError::Taken(kind_name(&existing.owner_kind)));
    }
    let row = source_slug::ActiveModel {
        org_id: Set(org_id),
        slug: Set(slug.to_owned()),
        owner_kind: Set(owner_kind.to_owned()),
        owner_id: Set(owner_id),
    };
    match source_slug::Entity::insert(row)
        .exec_without_returning(db)
        .await
    {
        Ok(_) => Ok(()),
        // A concurrent create won the race; the primary key keeps the namespace consistent.
        Err(err) if super::is_unique_violation(&err) => {
            Err(ClaimError::Taken(kind_name(owner_kind)))
        }
        Err(err) => Err(err.into()),
    }
}

fn kind_name(kind: &str) -> String {
    match kind {
        "webhook" => "webhook".to_owned(),
        _ => "WebSocket source".to_owned(),
    }
}

/// Releases a slug held by `owner_id`.
pub async fn release_slug(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    slug: &str,
    owner_id: Uuid,
) -> Result<(), DbErr> {
    source_slug::Entity::delete_many()
        .filter(source_slug::Column::OrgId.eq(org_id))
        .filter(source_slug::Column::Slug.eq(slug))
        .filter(source_slug::Column::OwnerId.eq(owner_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Whether the org has a source or webhook with this slug.
pub async fn slug_exists(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    slug: &str,
) -> Result<bool, DbErr> {
    Ok(source_slug::Entity::find_by_id((org_id, slug.to_owned()))
        .one(db)
        .await?
        .is_some())
}
