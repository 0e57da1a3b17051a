//! One function per source operation, below the HTTP layer: build and check the row, store it in
//! one write transaction (claiming or releasing the slug), then tell the supervisor. Operator
//! commands only send the supervisor a typed message.

use std::sync::Arc;

use entity::websocket_source;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::destination::check_destination;
use super::row::{apply_patch, build_row, input_of};
use super::shapes::SourceIn;
use crate::actors::commands::{Remove, SendFrame, Update};
use crate::actors::spec::SourceSpec;
use crate::actors::supervisor::SourceSupervisor;
use crate::api::state::AppState;
use crate::cluster::relay::{self, Answer, Relayable, Relayed};
use crate::db;
use crate::error::ApiError;

/// Finds one of the org's sources (404 otherwise).
pub async fn find_source(
    state: &AppState,
    org_id: Uuid,
    id: Uuid,
) -> Result<websocket_source::Model, ApiError> {
    db::sources::find_source(&state.db, org_id, id)
        .await?
        .ok_or(ApiError::NotFound("source"))
}

/// Creates a source and starts it.
pub async fn create_source(
    state: &AppState,
    org_id: Uuid,
    input: SourceIn,
) -> Result<websocket_source::Model, ApiError> {
    let id = db::new_id();
    let row = build_row(state, org_id, id, input, None)?;
    check_destination(state, &row, None).await?;
    let txn = db::WriteTxn::begin(&state.db).await?;
    db::slugs::claim_slug(&txn, org_id, &row.source, "websocket", id).await?;
    let row = db::sources::insert_source(&txn, row).await?;
    txn.commit().await?;
    notify_supervisor(state, &row).await?;
    tracing::info!(source_id = %id, slug = %row.source, "source created");
    Ok(row)
}

/// Applies a JSON merge patch to a source, bumps its revision and hands the new spec to the
/// supervisor.
pub async fn patch_source(
    state: &AppState,
    org_id: Uuid,
    id: Uuid,
    patch: Map<String, Value>,
) -> Result<websocket_source::Model, ApiError> {
    let current = find_source(state, org_id, id).await?;
    let input = apply_patch(input_of(&current), patch)?;
    let mut row = build_row(state, org_id, current.id, input, Some(&current))?;
    check_destination(state, &row, Some(&current)).await?;
    row.revision = current.revision + 1;
    row.created_at = current.created_at;
    let txn = db::WriteTxn::begin(&state.db).await?;
    if row.source != current.source {
        db::slugs::claim_slug(&txn, org_id, &row.source, "websocket", row.id).await?;
        db::slugs::release_slug(&txn, org_id, &current.source, row.id).await?;
    }
    let row = db::sources::update_source(&txn, row).await?;
    txn.commit().await?;
    notify_supervisor(state, &row).await?;
    tracing::info!(source_id = %row.id, revision = row.revision, "source updated");
    Ok(row)
}

/// Deletes a source, frees its slug and stops it.
pub async fn delete_source(state: &AppState, org_id: Uuid, id: Uuid) -> Result<(), ApiError> {
    let row = find_source(state, org_id, id).await?;
    let txn = db::WriteTxn::begin(&state.db).await?;
    db::slugs::release_slug(&txn, org_id, &row.source, row.id).await?;
    db::sources::delete_source(&txn, row.id).await?;
    txn.commit().await?;
    state.supervisor.do_send(Remove { source_id: row.id });
    crate::cluster::announce_source(&state.db, &state.cluster, row.id).await;
    tracing::info!(source_id = %row.id, "source deleted");
    Ok(())
}

/// Sends an operator command to the supervisor, or with replicas to the replica holding the
/// source; a source it does not know is a 409.
pub async fn command<M>(state: &AppState, message: M) -> Result<(), ApiError>
where
    M: Relayable + actix::Message<Result = bool> + std::marker::Send + 'static,
    SourceSupervisor: actix::Handler<M>,
{
    if !state.cluster.runs_here(message.source_id()) {
        return relayed(state, message.source_id(), message.relayed()).await;
    }
    let known = state
        .supervisor
        .send(message)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    if known {
        Ok(())
    } else {
        Err(ApiError::Conflict {
            field: None,
            detail:
                "the source cannot run: its stored configuration does not compile (see the logs)"
                    .into(),
        })
    }
}

/// Sends one text frame on the source's ready connection (409 when it has none), through the
/// replica holding the source.
pub async fn send_frame(state: &AppState, source_id: Uuid, text: String) -> Result<(), ApiError> {
    if !state.cluster.runs_here(source_id) {
        return relayed(state, source_id, Relayed::Send(text)).await;
    }
    let sent = state
        .supervisor
        .send(SendFrame { source_id, text })
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    sent.map_err(|err| ApiError::Conflict {
        field: None,
        detail: err.to_string(),
    })
}

/// Sends a command to the replica holding its source and reads its answer.
async fn relayed(state: &AppState, source_id: Uuid, command: Relayed) -> Result<(), ApiError> {
    let conflict = |detail: &str| ApiError::Conflict {
        field: None,
        detail: detail.to_owned(),
    };
    match relay::relay(&state.db, source_id, command).await? {
        Some(Answer::Done) => Ok(()),
        Some(Answer::NotConnected) => Err(conflict("the source is not connected")),
        Some(Answer::Unknown) => Err(conflict(
            "the source cannot run: its stored configuration does not compile (see the logs)",
        )),
        None => Err(conflict(
            "no replica holds the source right now (it is being handed over or disabled); try again in a few seconds",
        )),
    }
}

/// Tells the supervisor about a committed row (and, with replicas, every other replica).
async fn notify_supervisor(
    state: &AppState,
    row: &websocket_source::Model,
) -> Result<(), ApiError> {
    let spec = SourceSpec::from_row(row, &state.keyring, &state.settings.slack_api_base)
        .map_err(ApiError::Internal)?;
    state.supervisor.do_send(Update {
        spec: Arc::new(spec),
    });
    crate::cluster::announce_source(&state.db, &state.cluster, row.id).await;
    Ok(())
}
