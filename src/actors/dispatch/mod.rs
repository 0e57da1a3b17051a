//! The dispatch pool: N `DispatchActor`s, each on its own arbiter (thread). A source always maps to
//! the same actor, so its events are dispatched in order. Each actor batches the events queued
//! while it was busy, matches them against the current automation index and commits runs plus
//! outcomes in one transaction per batch, retrying while storage is down. On PostgreSQL two
//! batches are written at once, the later one holding its `COMMIT` until the earlier one has
//! committed, so runs still become visible in order. Nothing here delays ACKs.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures_util::FutureExt as _;
use futures_util::future::Shared;
use sea_orm::DatabaseConnection;
use tokio::sync::oneshot;
use uuid::Uuid;

use self::commit::{commit_with_retry, observe_commit};
use self::decide::{observed_dispatches, observed_runs, publish_created};
use super::publisher::Publisher;
use super::registry::AutomationRegistry;
use crate::db::inbox;
use crate::metrics::Metrics;
use crate::queue::notifier::RunNotifier;

mod commit;
mod decide;
mod matcher;

pub use decide::decide;
pub use matcher::{Matched, Matcher};

/// Largest batch one transaction commits.
const MAX_BATCH: usize = 1000;
/// Events read back from storage at once.
const REFILL_PAGE: u64 = 5_000;

/// A committed event waiting for dispatch.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    /// Event id.
    pub id: Uuid,
    /// Org.
    pub org_id: Uuid,
    /// Source slug.
    pub source: String,
    /// Event key.
    pub event_key: Option<String>,
    /// Payload.
    pub payload: serde_json::Value,
    /// Received.
    pub received_at: DateTime<Utc>,
    /// What routes it to a dispatch actor (its source or webhook, else its org).
    pub route: Uuid,
}

impl From<entity::event::Model> for PendingEvent {
    fn from(mut m: entity::event::Model) -> Self {
        let (id, org_id, received_at) = (m.id, m.org_id, m.received_at);
        let route = m.source_id.unwrap_or(m.org_id);
        Self {
            id,
            org_id,
            source: std::mem::take(&mut m.source),
            event_key: m.event_key.take(),
            payload: crate::db::events::into_payload(m).unwrap_or(serde_json::Value::Null),
            received_at,
            route,
        }
    }
}

/// Inbox writer, recovery sweep or replay → dispatch actor (by route): committed events to match.
/// Answers nothing.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Dispatch {
    /// The events, in commit order.
    pub events: Vec<PendingEvent>,
}

/// Inbox writer → dispatch actor: match these rows (see [`Matcher::prepare`]) and answer them,
/// marked, with what was decided; the writer then commits the rows with their runs.
#[derive(Message)]
#[rtype(result = "(Vec<entity::event::Model>, Matched)")]
pub struct MatchRows {
    /// The rows of one inbox batch, in arrival order.
    pub rows: Vec<entity::event::Model>,
}

impl Handler<MatchRows> for DispatchActor {
    type Result = MessageResult<MatchRows>;

    fn handle(&mut self, mut msg: MatchRows, _: &mut Context<Self>) -> Self::Result {
        let matched = self.matcher.prepare(&mut msg.rows);
        MessageResult((msg.rows, matched))
    }
}

/// Routes events to the pool's actors (cheap to clone).
#[derive(Clone)]
pub struct DispatchPool {
    actors: Arc<Vec<Addr<DispatchActor>>>,
    matcher: Matcher,
}

impl DispatchPool {
    /// Starts `size` actors, each on a new arbiter, each keeping at most `queue_limit` events in
    /// memory (beyond that they are read back from storage once the queue has drained).
    pub fn start(
        size: usize,
        queue_limit: usize,
        db: DatabaseConnection,
        registry: Arc<AutomationRegistry>,
        publisher: Publisher,
        metrics: Arc<Metrics>,
        notifier: RunNotifier,
    ) -> DispatchPool {
        let pool_size = size.max(1);
        let matcher = Matcher {
            registry: registry.clone(),
            publisher: publisher.clone(),
            metrics: metrics.clone(),
            notifier: notifier.clone(),
        };
        let actors = (0..pool_size)
            .map(|index| {
                let (db, registry, publisher) = (db.clone(), registry.clone(), publisher.clone());
                let (metrics, notifier) = (metrics.clone(), notifier.clone());
                let arbiter = Arbiter::new();
                let matcher = matcher.clone();
                DispatchActor::start_in_arbiter(&arbiter.handle(), move |_| DispatchActor {
                    matcher,
                    db,
                    registry,
                    publisher,
                    metrics,
                    notifier,
                    queue: VecDeque::new(),
                    pending_ids: HashSet::new(),
                    in_flight: 0,
                    refilling: false,
                    last_commit: None,
                    overflowed: false,
                    refill_after: None,
                    index,
                    pool_size,
                    queue_limit,
                })
            })
            .collect();
        DispatchPool {
            actors: Arc::new(actors),
            matcher,
        }
    }

    /// Matching for the inbox writers, which commit runs with their events.
    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    /// Matches an inbox batch on a dispatch actor's thread (the `key`th, modulo the pool), off
    /// the thread that reads the sockets. `None` when that actor is gone (the process is
    /// stopping): the rows sent are then lost with it, and the caller matches its own copy
    /// with [`matcher`](Self::matcher).
    pub async fn prepare(
        &self,
        key: usize,
        rows: Vec<entity::event::Model>,
    ) -> Option<(Vec<entity::event::Model>, Matched)> {
        let actor = self.actors.get(key % self.actors.len().max(1))?;
        actor.send(MatchRows { rows }).await.ok()
    }

    /// Hands committed events of one source to its actor.
    pub fn dispatch(&self, source_key: Uuid, events: Vec<PendingEvent>) {
        if events.is_empty() {
            return;
        }
        if let Some(actor) = self.actors.get(route(source_key, self.actors.len())) {
            actor.do_send(Dispatch { events });
        }
    }

    /// Dispatches every committed event not yet dispatched (after a restart, or left behind by a
    /// crash), oldest first: those received before `older_than` and of one of `sources` when
    /// given. Runs are unique per automation and event, so re-dispatching an event another
    /// process already dispatched creates nothing twice.
    pub async fn recover(
        &self,
        db: &DatabaseConnection,
        older_than: Option<DateTime<Utc>>,
        sources: Option<&[Uuid]>,
    ) -> Result<usize, sea_orm::DbErr> {
        let mut after = None;
        let mut total = 0;
        loop {
            let page = inbox::undispatched_events(db, after, older_than, sources, 1000).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            total += page.len();
            for event in page {
                let event = PendingEvent::from(event);
                self.dispatch(event.route, vec![event]);
            }
        }
        Ok(total)
    }
}

/// One dispatch worker.
pub struct DispatchActor {
    matcher: Matcher,
    db: DatabaseConnection,
    registry: Arc<AutomationRegistry>,
    publisher: Publisher,
    metrics: Arc<Metrics>,
    /// Signalled after a commit that created runs (wakes waiting claims).
    notifier: RunNotifier,
    queue: VecDeque<PendingEvent>,
    /// Ids of the events queued or being committed.
    pending_ids: HashSet<Uuid>,
    /// Batches being committed.
    in_flight: usize,
    /// Reading back overflowed events (no batch starts meanwhile).
    refilling: bool,
    /// The commit of the batch started last, which the next one waits for before committing.
    last_commit: Option<CommitSignal>,
    overflowed: bool,
    refill_after: Option<Uuid>,
    index: usize,
    pool_size: usize,
    queue_limit: usize,
}

impl Actor for DispatchActor {
    type Context = Context<Self>;
}

impl Handler<Dispatch> for DispatchActor {
    type Result = ();

    fn handle(&mut self, mut msg: Dispatch, ctx: &mut Context<Self>) {
        // An event already queued or being committed here (the sweep or start-up recovery found
        // it undispatched) is not taken twice: two batches in flight never share an event.
        msg.events.retain(|e| !self.pending_ids.contains(&e.id));
        if self.queue.len() + msg.events.len() > self.queue_limit {
            // Dispatch is behind: keep memory bounded. The events are committed, so they are
            // read back from storage once the queue has drained.
            self.overflowed = true;
        } else {
            self.enqueue(msg.events);
        }
        self.run_next(ctx);
    }
}

/// Batches one actor commits at once on PostgreSQL (each waits for the one before it to commit
/// first, so a source's runs still appear in order); SQLite has one writer, so one.
const MAX_IN_FLIGHT: usize = 2;

/// Resolves once the batch it belongs to is committed, or abandoned.
type CommitSignal = Shared<oneshot::Receiver<()>>;

impl DispatchActor {
    fn max_in_flight(&self) -> usize {
        match self.db.get_database_backend() {
            sea_orm::DbBackend::Postgres => MAX_IN_FLIGHT,
            _ => 1,
        }
    }

    /// Queues events not queued or in flight yet (in order).
    fn enqueue(&mut self, events: impl IntoIterator<Item = PendingEvent>) {
        for event in events {
            if self.pending_ids.insert(event.id) {
                self.queue.push_back(event);
            }
        }
    }

    fn run_next(&mut self, ctx: &mut Context<Self>) {
        while !self.refilling && self.in_flight < self.max_in_flight() && !self.queue.is_empty() {
            self.start_batch(ctx);
        }
        if self.in_flight == 0 && !self.refilling && self.queue.is_empty() && self.overflowed {
            self.refill(ctx);
        }
    }

    fn start_batch(&mut self, ctx: &mut Context<Self>) {
        self.in_flight += 1;
        let take = self.queue.len().min(MAX_BATCH);
        let batch: Vec<PendingEvent> = self.queue.drain(..take).collect();
        let records = decide(&self.registry, &batch);
        let ids: Vec<Uuid> = batch.iter().map(|e| e.id).collect();
        let db = self.db.clone();
        let publisher = self.publisher.clone();
        let metrics = self.metrics.clone();
        let notifier = self.notifier.clone();
        let (committed, signal) = oneshot::channel();
        let previous = self.last_commit.replace(signal.shared());
        let received: Vec<(DateTime<Utc>, bool)> = records
            .iter()
            .zip(&batch)
            .map(|(record, event)| (event.received_at, !record.runs.is_empty()))
            .collect();
        ctx.spawn(
            async move {
                let (runs, dispatched) = if publisher.has_subscribers() {
                    let runs = observed_runs(&records, &batch);
                    (runs, observed_dispatches(&records, &batch))
                } else {
                    (Vec::new(), Vec::new())
                };
                let started = std::time::Instant::now();
                let created = commit_with_retry(&db, records, previous).await;
                if !created.is_empty() {
                    notifier.signal();
                }
                // Dropped unsent if this future is dropped: the next batch then goes on too.
                let _ = committed.send(());
                observe_commit(&metrics, started.elapsed(), &received, created.len());
                publish_created(&publisher, runs, &created);
                for message in dispatched {
                    publisher.publish(message);
                }
            }
            .into_actor(self)
            .map(move |(), act, ctx| {
                act.in_flight -= 1;
                for id in &ids {
                    act.pending_ids.remove(id);
                }
                act.run_next(ctx);
            }),
        );
    }
}

impl DispatchActor {
    /// Reads back (a page of) the committed events of this actor's sources that were left out
    /// while the queue was full.
    fn refill(&mut self, ctx: &mut Context<Self>) {
        self.overflowed = false;
        self.refilling = true;
        let (db, after, index, size) = (
            self.db.clone(),
            self.refill_after,
            self.index,
            self.pool_size,
        );
        ctx.spawn(
            async move { inbox::undispatched_events(&db, after, None, None, REFILL_PAGE).await }
                .into_actor(self)
                .map(move |page, act, ctx| {
                    act.refilling = false;
                    match page {
                        Ok(page) => {
                            let full = page.len() as u64 == REFILL_PAGE;
                            act.refill_after = if full { page.last().map(|e| e.id) } else { None };
                            // Events dropped while this page was read keep the flag set.
                            act.overflowed = act.overflowed || full;
                            act.enqueue(
                                page.into_iter()
                                    .map(PendingEvent::from)
                                    .filter(|e| route(e.route, size) == index),
                            );
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "reading back undispatched events failed; retrying");
                            act.overflowed = true;
                            ctx.run_later(Duration::from_secs(1), |act, ctx| act.run_next(ctx));
                            return;
                        }
                    }
                    act.run_next(ctx);
                }),
        );
    }
}

/// Which of `size` actors serves `key`.
fn route(key: Uuid, size: usize) -> usize {
    (key.as_u128() % size.max(1) as u128) as usize
}
