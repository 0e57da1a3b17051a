//! The coordinator's closing side: which sources to stop because this replica lost or handed
//! them over, stopping them, confirming a hand-over once its connections are closed, and fencing
//! itself when it cannot renew.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use sea_orm::DbErr;
use uuid::Uuid;

use super::{Coordinator, FENCE_AFTER, db_cluster};
use crate::actors::commands::{LetGo, Shutdown};

/// How long a fenced replica's connections may take to close.
const FENCED_CLOSE: Duration = Duration::from_secs(1);

/// How much longer than its `within` a [`LetGo`] may take to be answered.
const LET_GO_SLACK: Duration = Duration::from_secs(1);

/// What a turn decided to close and to confirm.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// Sources to stop here.
    pub(super) close: Vec<Uuid>,
    /// Hand-overs to confirm once those are closed (the new holders then connect).
    pub(super) confirm: Vec<Uuid>,
}

impl Coordinator {
    /// Which sources this replica runs without holding them any more: lost (lease expired) ones
    /// close at once; handed-over ones when the new holder is ready (make-before-break) or at once
    /// (break-before-make: the new holder waits for the confirmation).
    pub(super) async fn plan_handover(&mut self, held: &HashSet<Uuid>) -> Result<Plan, DbErr> {
        let me = self.shared.replica_id;
        let handing: HashMap<Uuid, bool> = db_cluster::leases::handing(&self.db, me)
            .await?
            .into_iter()
            .collect();
        let mut plan = Plan::default();
        for id in self.running.iter().copied() {
            if held.contains(&id) {
                continue;
            }
            match handing.get(&id) {
                // Still serving while the new holder gets ready; its status is the new holder's
                // to write from now on (the epoch is gone from this replica already).
                Some(false) => {}
                Some(true) => {
                    plan.close.push(id);
                    plan.confirm.push(id);
                }
                None => plan.close.push(id),
            }
        }
        // Handed over while not running here (never started, or closed already).
        plan.confirm.extend(
            handing
                .keys()
                .filter(|id| !self.running.contains(id))
                .copied(),
        );
        Ok(plan)
    }

    /// Stops what `plan` closes (waiting until their connections are closed), then confirms its
    /// hand-overs. Both waits end before this replica's fence is due, so that a slow close or an
    /// unreachable database never holds the fence back (the coordinator fences right after).
    pub(super) async fn carry_out(&mut self, plan: Plan) {
        for id in &plan.close {
            self.running.remove(id);
            self.shared.epochs.remove(*id);
        }
        // The supervisor answers at most a second after `within` (it cuts off what is left).
        let within = self.fence_left().saturating_sub(LET_GO_SLACK);
        self.let_go(plan.close, Shutdown::ON_CHANGE.min(within))
            .await;
        let left = self.fence_left();
        if plan.confirm.is_empty() || left.is_zero() {
            // Unconfirmed hand-overs are confirmed at the next turn (or their leases lapse).
            return;
        }
        let me = self.shared.replica_id;
        let confirmed = db_cluster::leases::handed(&self.db, me, plan.confirm);
        let bound = self.shared.lease.div_f64(3.0).min(left);
        match tokio::time::timeout(bound, confirmed).await {
            Ok(Ok(())) => {}
            // The new holders connect once their wait ends (a lease), or at the next confirmation.
            _ => tracing::warn!("confirming hand-overs failed; the next turn confirms them"),
        }
    }

    /// Stops every source when the leases may lapse soon (no renewal for half a lease), closing
    /// them within a second; a draining replica then counts as drained.
    pub(super) async fn fence_if_stale(&mut self) {
        let stale = self
            .renewed_at
            .is_some_and(|at| at.elapsed() >= self.shared.lease.mul_f64(FENCE_AFTER));
        if !stale {
            return;
        }
        if self
            .shared
            .draining
            .load(std::sync::atomic::Ordering::Acquire)
        {
            self.shared.mark_drained();
        }
        if self.running.is_empty() {
            return;
        }
        tracing::error!(
            sources = self.running.len(),
            "cannot renew this replica's source leases; stopping its sources before another replica takes them"
        );
        let ids: Vec<Uuid> = self.running.drain().collect();
        for id in &ids {
            self.shared.epochs.remove(*id);
        }
        self.let_go(ids, FENCED_CLOSE).await;
    }

    /// Stops these sources' actors here, all at once, and waits until they closed.
    async fn let_go(&self, ids: Vec<Uuid>, within: Duration) {
        let asked = ids
            .into_iter()
            .map(|source_id| self.supervisor.send(LetGo { source_id, within }));
        let _ = futures_util::future::join_all(asked).await;
    }
}
