//! The coordinator: one task per replica that, every sixth of a lease, beats the replica's heart,
//! renews its leases, starts the sources it holds and stops those it lost, hands over and takes
//! over sources until every replica has its share, and names the leader that runs the cluster's
//! once-only upkeep. It fences itself: when it could not renew for half a lease it
//! stops every source it runs, before any other replica may take them (they wait for the whole
//! lease to expire, by the database's clock).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix::Addr;
use sea_orm::{DatabaseConnection, DbErr};
use uuid::Uuid;

use super::balance::{Load, Move, next_move};
use super::{ClusterShared, db_cluster};
use crate::actors::commands::Hold;
use crate::actors::dispatch::DispatchPool;
use crate::actors::supervisor::SourceSupervisor;
use crate::sources::status::SourceState;

mod handover;
use handover::Plan;

/// The part of a lease after which a replica that could not renew stops its sources (closing
/// them within a second): the rest leaves that close time to spare before the lease expires.
const FENCE_AFTER: f64 = 0.5;

/// One replica's coordinator.
pub struct Coordinator {
    /// Storage.
    pub db: DatabaseConnection,
    /// What it shares with the API and the status writer.
    pub shared: Arc<ClusterShared>,
    /// The supervisor it tells what to run.
    pub supervisor: Addr<SourceSupervisor>,
    /// Dispatches what a source's previous holder committed but did not dispatch.
    dispatch: DispatchPool,
    /// Sources with an actor started here (held, or handed over and still closing).
    running: HashSet<Uuid>,
    /// When the last successful renewal started.
    renewed_at: Option<Instant>,
    /// Turns so far.
    turns: u64,
    /// What every live replica held at the last turn (for a quick take between turns).
    loads: Vec<Load>,
    /// Connections this replica's leases weigh.
    mine: i64,
}

/// Sleeps until `at`, or forever without it.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

impl Coordinator {
    /// A coordinator for this replica.
    pub fn new(
        db: DatabaseConnection,
        shared: Arc<ClusterShared>,
        supervisor: Addr<SourceSupervisor>,
        dispatch: DispatchPool,
    ) -> Coordinator {
        Coordinator {
            db,
            shared,
            supervisor,
            dispatch,
            running: HashSet::new(),
            renewed_at: None,
            turns: 0,
            loads: Vec::new(),
            mine: 0,
        }
    }

    /// Runs until the replica leaves ([`ClusterShared::leave`]).
    pub async fn run(mut self) {
        let period = self.shared.lease.div_f64(6.0);
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Between turns too, the fence falls at its time (half a lease after the last
            // renewal) rather than at the end of the next turn.
            let fence_at = self.fence_deadline();
            let nudged = tokio::select! {
                _ = tick.tick() => false,
                () = self.shared.nudge.notified() => true,
                () = sleep_until(fence_at) => {
                    self.fence_if_stale().await;
                    continue;
                }
            };
            if self.shared.left.load(Ordering::Acquire) {
                return;
            }
            if nudged {
                // A source changed: take a new one now rather than at the next turn (changes
                // coming in a burst are taken together).
                tokio::time::sleep(Duration::from_millis(20)).await;
                if let Ok(Err(err)) =
                    tokio::time::timeout(self.fence_budget(), self.take_free()).await
                {
                    tracing::warn!(error = %err, "taking new sources failed; the next turn retries");
                }
                continue;
            }
            let started = Instant::now();
            let budget = self.fence_budget();
            let plan = match tokio::time::timeout(budget, self.turn(started)).await {
                Ok(Ok(plan)) => plan,
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, "cluster coordination failed; retrying");
                    Plan::default()
                }
                Err(_) => {
                    tracing::warn!("cluster coordination timed out; retrying");
                    Plan::default()
                }
            };
            // Outside the turn's time bound: closing takes what it takes, and a hand-over is
            // confirmed only once its connections are closed.
            self.carry_out(plan).await;
            self.fence_if_stale().await;
            self.turns += 1;
        }
    }

    /// When this replica must stop the sources it runs if it has not renewed by then (none while
    /// it runs none).
    fn fence_deadline(&self) -> Option<Instant> {
        let at = self.renewed_at?;
        (!self.running.is_empty()).then(|| at + self.shared.lease.mul_f64(FENCE_AFTER))
    }

    /// Time left before this replica must stop its sources (zero once due, or before a first
    /// renewal: a half lease).
    fn fence_left(&self) -> Duration {
        let fence_after = self.shared.lease.mul_f64(FENCE_AFTER);
        match self.renewed_at {
            Some(at) => fence_after.saturating_sub(at.elapsed()),
            None => fence_after,
        }
    }

    /// Time left before this replica must stop its sources (at least a tick's worth).
    fn fence_budget(&self) -> Duration {
        self.fence_left().max(Duration::from_millis(200))
    }

    /// One turn: heartbeat, renewal, balance, leadership; answers what to close and confirm.
    async fn turn(&mut self, started: Instant) -> Result<Plan, DbErr> {
        let shared = self.shared.clone();
        let lease_s = shared.lease.as_secs_f64();
        let draining = shared.draining.load(Ordering::Acquire);
        let beat = db_cluster::replicas::Beat {
            id: shared.replica_id,
            address: &shared.address,
            version: env!("CARGO_PKG_VERSION"),
            draining,
            streams: i32::try_from(shared.local_streams.load(Ordering::Acquire))
                .unwrap_or(i32::MAX),
        };
        db_cluster::replicas::heartbeat(&self.db, beat).await?;
        let held = db_cluster::leases::renew(&self.db, shared.replica_id, lease_s).await?;
        self.renewed_at = Some(started);
        let held_ids: HashSet<Uuid> = held.iter().map(|l| l.source_id).collect();
        shared.epochs.retain(&held_ids);
        if shared.stopping.load(Ordering::Acquire) {
            return Ok(Plan::default());
        }
        let mut mine = self.apply_held(&held).await;
        let plan = self.plan_handover(&held_ids).await?;
        let alive = db_cluster::replicas::alive(&self.db, lease_s).await?;
        let leader = self.observe(&alive);
        if leader {
            self.sweep_after_departures(&alive);
        }
        if draining {
            let others = alive
                .iter()
                .any(|r| r.id != shared.replica_id && !r.draining);
            // Drained: nothing of weight held, nothing handed over still serving here.
            let serving_elsewhere = self.running.iter().any(|id| !held_ids.contains(id));
            if (mine == 0 && !serving_elsewhere && plan.close.is_empty()) || !others {
                shared.mark_drained();
            }
            return Ok(plan);
        }
        // The first turn only registers, so replicas started together see each other before
        // they take anything.
        if self.turns == 0 {
            return Ok(plan);
        }
        mine += self.rebalance(&alive, mine).await?;
        self.mine = mine;
        if leader && self.turns.is_multiple_of(30) {
            db_cluster::commands::prune(&self.db).await?;
            db_cluster::stream::prune(&self.db).await?;
            db_cluster::leases::prune(&self.db).await?;
            db_cluster::replicas::forget_silent(&self.db, lease_s).await?;
        }
        Ok(plan)
    }

    /// Reads the other replicas: whether this one leads, and whether another serves stream
    /// clients.
    fn observe(&self, alive: &[db_cluster::replicas::ReplicaRow]) -> bool {
        let me = self.shared.replica_id;
        let leader = alive
            .iter()
            .filter(|r| !r.draining)
            .map(|r| r.id)
            .min()
            .is_some_and(|id| id == me);
        self.shared.leader.store(leader, Ordering::Release);
        let others_streaming = alive.iter().any(|r| r.id != me && r.streams > 0);
        self.shared
            .others_streaming
            .store(others_streaming, Ordering::Release);
        leader
    }

    /// Takes free sources or takes over from another replica, as the balance says; answers the
    /// connections taken.
    async fn rebalance(
        &mut self,
        alive: &[db_cluster::replicas::ReplicaRow],
        mine: i64,
    ) -> Result<i64, DbErr> {
        let me = self.shared.replica_id;
        let lease_s = self.shared.lease.as_secs_f64();
        let loads: Vec<Load> = alive
            .iter()
            .map(|r| Load {
                replica: r.id,
                connections: r.connections,
                draining: r.draining,
            })
            .collect();
        let (total, free) = db_cluster::leases::weights(&self.db).await?;
        let batch = self.shared.handover_batch;
        let taken = match next_move(me, mine, &loads, total, free, batch) {
            Move::Stay => Vec::new(),
            Move::TakeFree(n) => db_cluster::leases::acquire_free(&self.db, me, lease_s, n).await?,
            Move::TakeOver(from, n) => {
                tracing::info!(from = %from, connections = n, "taking over sources to balance the cluster");
                db_cluster::leases::take_over(&self.db, me, from, lease_s, n).await?
            }
        };
        self.loads = loads;
        Ok(self.apply_held(&taken).await)
    }

    /// Between turns: takes free sources up to this replica's share, by the loads of the last turn.
    async fn take_free(&mut self) -> Result<(), DbErr> {
        if self.turns == 0 || self.shared.draining.load(Ordering::Acquire) {
            return Ok(());
        }
        let (total, free) = db_cluster::leases::weights(&self.db).await?;
        let me = self.shared.replica_id;
        let loads: Vec<Load> = self
            .loads
            .iter()
            .map(|l| {
                if l.replica == me {
                    Load {
                        connections: self.mine,
                        ..*l
                    }
                } else {
                    *l
                }
            })
            .collect();
        let batch = self.shared.handover_batch;
        if let Move::TakeFree(n) = next_move(me, self.mine, &loads, total, free, batch) {
            let lease_s = self.shared.lease.as_secs_f64();
            let taken = db_cluster::leases::acquire_free(&self.db, me, lease_s, n).await?;
            self.mine += self.apply_held(&taken).await;
        }
        Ok(())
    }

    /// Records the leases held and starts the sources among them that may connect; answers the
    /// connections they weigh.
    async fn apply_held(&mut self, held: &[db_cluster::leases::Held]) -> i64 {
        let mut weight = 0;
        let mut starting = Vec::new();
        for lease in held {
            weight += lease.weight;
            self.shared.epochs.set(lease.source_id, lease.epoch);
            if !lease.waiting && !self.running.contains(&lease.source_id) {
                starting.push(lease.source_id);
            }
        }
        if starting.is_empty() {
            return weight;
        }
        // A source its previous holder left paused or failed starts so here; without knowing
        // that, none starts (the next turn asks again) rather than one resuming unasked.
        let mut kept = match db_cluster::leases::kept_states(&self.db, starting.clone()).await {
            Ok(kept) => kept,
            Err(err) => {
                tracing::warn!(error = %err, "reading the taken sources' states failed; the next turn starts them");
                return weight;
            }
        };
        self.recover_in_background(None, Some(starting.clone()), "taking sources over");
        // Counted as running before the supervisor answers: should this be cut off, a source that
        // did start is still stopped when it is lost.
        self.running.extend(starting.iter().copied());
        let asked = starting.iter().map(|&source_id| {
            let kept = kept
                .remove(&source_id)
                .and_then(|(state, detail)| Some((SourceState::parse(&state)?, detail)));
            self.supervisor.send(Hold { source_id, kept })
        });
        let known = futures_util::future::join_all(asked).await;
        for (source_id, known) in starting.into_iter().zip(known) {
            if !known.unwrap_or(false) {
                // Not known there yet (created on another replica a moment ago): asked again at
                // the next turn.
                self.running.remove(&source_id);
            }
        }
        weight
    }

    /// On the leader, when a replica of the last turn is gone (killed, cut off, or drained):
    /// dispatches at once every event committed over five seconds ago and still undispatched,
    /// so that a webhook delivery the gone replica accepted but did not dispatch gets its runs
    /// now rather than at the minute's sweep.
    fn sweep_after_departures(&self, alive: &[db_cluster::replicas::ReplicaRow]) {
        let gone = self
            .loads
            .iter()
            .any(|l| !alive.iter().any(|r| r.id == l.replica));
        if gone {
            let cutoff = crate::db::now() - chrono::Duration::seconds(5);
            self.recover_in_background(Some(cutoff), None, "a replica left");
        }
    }

    /// Dispatches, on a task of its own, the committed events still undispatched that are older
    /// than `older_than` and of `sources` (a thousand per read) when given: what a holder killed
    /// between its commit and its dispatch left, which the leader's minute sweep would take a
    /// minute or two to find. Runs are unique per automation and event, so an event its
    /// receiver is dispatching meanwhile gets no second run.
    fn recover_in_background(
        &self,
        older_than: Option<chrono::DateTime<chrono::Utc>>,
        sources: Option<Vec<Uuid>>,
        cause: &'static str,
    ) {
        let (db, dispatch) = (self.db.clone(), self.dispatch.clone());
        actix::spawn(async move {
            let scopes: Vec<Option<&[Uuid]>> = match &sources {
                Some(ids) => ids.chunks(1000).map(Some).collect(),
                None => vec![None],
            };
            for scope in scopes {
                match dispatch.recover(&db, older_than, scope).await {
                    Ok(0) => {}
                    Ok(events) => {
                        tracing::info!(events, cause, "dispatched events left undispatched")
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, cause, "dispatching events left undispatched failed; the leader's minute sweep retries")
                    }
                }
            }
        });
    }
}
