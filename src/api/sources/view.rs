//! Loads sources as shown: the stored status rows (one query for a whole page) overlaid with the
//! live status this process's supervisor has, which is fresher than the coalesced stored one
//! (with replicas: for the sources this replica holds, and each source names its holder).

use std::collections::HashMap;

use entity::{source_status, websocket_source};
use uuid::Uuid;

use super::shapes::SourceOut;
use crate::actors::commands::GetStatus;
use crate::api::state::AppState;
use crate::db;
use crate::error::ApiError;
use crate::sources::status::StatusSnapshot;

impl SourceOut {
    /// One source with its status.
    pub async fn load(state: &AppState, m: websocket_source::Model) -> Result<Self, ApiError> {
        let mut all = Self::load_many(state, vec![m]).await?;
        all.pop()
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("source vanished")))
    }

    /// Several sources with their status rows (one query for all statuses).
    pub async fn load_many(
        state: &AppState,
        rows: Vec<websocket_source::Model>,
    ) -> Result<Vec<Self>, ApiError> {
        let ids = rows.iter().map(|m| m.id).collect();
        let mut statuses: HashMap<Uuid, source_status::Model> =
            db::sources::find_statuses(&state.db, ids)
                .await?
                .into_iter()
                .map(|s| (s.source_id, s))
                .collect();
        let ids: Vec<Uuid> = rows.iter().map(|m| m.id).collect();
        let holders = if state.cluster.enabled {
            db::cluster::leases::holders(&state.db, ids.clone()).await?
        } else {
            HashMap::new()
        };
        let mut live: HashMap<Uuid, StatusSnapshot> = state
            .supervisor
            .send(GetStatus { source_ids: ids })
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|s| (s.source_id, s))
            .collect();
        Ok(rows
            .into_iter()
            .map(|m| {
                let status = statuses.remove(&m.id);
                let id = m.id;
                let mut out = Self::new(m, status);
                out.status.held_by = holders.get(&id).copied();
                // The supervisor's live status is fresher, for a source this replica runs; one
                // held by another replica shows what its holder stored.
                if let Some(snapshot) = live.remove(&id)
                    && state.cluster.runs_here(id)
                {
                    out.overlay(snapshot);
                }
                out
            })
            .collect())
    }
}
