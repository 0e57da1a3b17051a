//! One function per webhook operation, below the HTTP layer: build and check the row, then store
//! it in one write transaction (claiming or releasing the slug). Each returns the stored row and,
//! when one was made, the secret to show once.

use entity::webhook;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::row::{apply_patch, build_row, open_secrets, seal_secrets};
use super::shapes::{RotateIn, WebhookIn, WebhookOut};
use crate::api::state::AppState;
use crate::db;
use crate::error::ApiError;
use crate::webhooks::verifier::WebhookSecrets;

/// Default seconds a rotated-out secret keeps verifying.
const DEFAULT_GRACE_S: u32 = 86_400;
/// Longest grace period of a rotated-out secret.
const MAX_GRACE_S: u32 = 30 * 86_400;

/// Finds one of the org's webhooks (404 otherwise).
pub async fn find_webhook(
    state: &AppState,
    org_id: Uuid,
    id: Uuid,
) -> Result<webhook::Model, ApiError> {
    db::webhooks::find_webhook(&state.db, org_id, id)
        .await?
        .ok_or(ApiError::NotFound("webhook"))
}

/// Creates a webhook (generating its secret when none is given).
pub async fn create_webhook(
    state: &AppState,
    org_id: Uuid,
    input: WebhookIn,
) -> Result<(webhook::Model, Option<String>), ApiError> {
    let id = db::new_id();
    let (row, generated) = build_row(state, org_id, id, input, None)?;
    let txn = db::WriteTxn::begin(&state.db).await?;
    db::slugs::claim_slug(&txn, org_id, &row.source, "webhook", id).await?;
    let row = db::webhooks::insert_webhook(&txn, row).await?;
    txn.commit().await?;
    Ok((row, generated))
}

/// Applies a JSON merge patch to a webhook.
pub async fn patch_webhook(
    state: &AppState,
    org_id: Uuid,
    id: Uuid,
    patch: Map<String, Value>,
) -> Result<(webhook::Model, Option<String>), ApiError> {
    let current = find_webhook(state, org_id, id).await?;
    let input = apply_patch(&current, patch)?;
    let (mut row, generated) = build_row(state, org_id, current.id, input, Some(&current))?;
    row.created_at = current.created_at;
    let txn = db::WriteTxn::begin(&state.db).await?;
    if row.source != current.source {
        db::slugs::claim_slug(&txn, org_id, &row.source, "webhook", row.id).await?;
        db::slugs::release_slug(&txn, org_id, &current.source, row.id).await?;
    }
    let row = db::webhooks::update_webhook(&txn, row).await?;
    txn.commit().await?;
    Ok((row, generated))
}

/// Deletes a webhook and frees its slug.
pub async fn delete_webhook(state: &AppState, org_id: Uuid, id: Uuid) -> Result<(), ApiError> {
    let row = find_webhook(state, org_id, id).await?;
    let txn = db::WriteTxn::begin(&state.db).await?;
    db::slugs::release_slug(&txn, org_id, &row.source, row.id).await?;
    db::webhooks::delete_webhook(&txn, row.id).await?;
    txn.commit().await?;
    Ok(())
}

/// Replaces a webhook's secret with a generated one; the previous one keeps verifying for the
/// grace period. Returns the row and the new secret.
pub async fn rotate_secret(
    state: &AppState,
    org_id: Uuid,
    id: Uuid,
    input: RotateIn,
) -> Result<(webhook::Model, String), ApiError> {
    let grace = input.grace_period_s.unwrap_or(DEFAULT_GRACE_S);
    if grace > MAX_GRACE_S {
        return Err(ApiError::field(
            "grace_period_s",
            "must be at most 2592000 (30 days)",
        ));
    }
    let mut row = find_webhook(state, org_id, id).await?;
    if row.insecure {
        return Err(ApiError::Conflict {
            field: None,
            detail: "an insecure webhook has no secret to rotate".into(),
        });
    }
    let verifier = WebhookOut::verifier_of(&row)?;
    let old = open_secrets(state, &row)?;
    let new_secret = verifier.generate_secret();
    let now = db::now();
    let secrets = WebhookSecrets {
        current: new_secret.clone(),
        previous: old.map(|s| s.current).filter(|_| grace > 0),
        previous_expires_at: (grace > 0).then(|| now + chrono::Duration::seconds(grace.into())),
    };
    row.secrets = Some(seal_secrets(state, row.id, &secrets)?);
    row.secret_rotated_at = Some(now);
    row.updated_at = now;
    let row = db::webhooks::update_webhook(&state.db, row).await?;
    Ok((row, new_secret))
}
