//! One shared inbox writer: takes what its queue holds (up to [`MAX_BATCH`] messages from any
//! connections), matches it against the automations and commits its events with their runs in
//! one transaction while the next batch gathers, retrying while storage is down (never dropping,
//! never acknowledging before the commit), then hands each connection its ACK frames and tells
//! claims and live observers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use futures_util::stream::FuturesOrdered;
use sea_orm::DatabaseConnection;
use tokio::sync::mpsc;

use super::order::{BatchOrder, RowKey, keys_of};
use super::{Link, Queued};
use crate::actors::dispatch::{DispatchPool, Matched};
use crate::actors::publisher::{Published, Publisher};
use crate::db;
use crate::db::inbox::{MatchedCommit, Place, RowOutcome};
use crate::metrics::Metrics;
use crate::sources::status::Count;

/// Largest batch per commit.
const MAX_BATCH: usize = 500;
/// Batches being committed at once per writer on PostgreSQL (storage latency, not CPU, bounds
/// one writer; SQLite: one); they finish in order, so ACKs keep the arrival order.
const IN_FLIGHT: usize = 2;
/// Longest wait between two attempts to store a batch while storage is unavailable.
const RETRY_CAP: Duration = Duration::from_millis(250);

/// What the writers use: storage, dispatch, metrics and live observers (not the source runtime,
/// which holds the writers' inputs).
pub struct WriterCtx {
    /// The connection pool.
    pub db: DatabaseConnection,
    /// Matching (and, for recovery, where events left undispatched go).
    pub dispatch: DispatchPool,
    /// The application's metrics.
    pub metrics: Arc<Metrics>,
    /// Live observers.
    pub publisher: Publisher,
}

/// Starts the `index`th writer (its batches are matched by the dispatch actor of that index);
/// answers its input.
pub(super) fn start(ctx: Arc<WriterCtx>, queue: usize, index: usize) -> mpsc::Sender<Queued> {
    let (tx, mut rx) = mpsc::channel::<Queued>(queue);
    actix::spawn(async move {
        let mut inflight = FuturesOrdered::new();
        let ordered = ctx.db.get_database_backend() == sea_orm::DbBackend::Postgres;
        // SQLite writes one transaction at a time: a second batch taken early would only wait
        // for the write turn, and be smaller than one taken once the turn is free.
        let in_flight = if ordered { IN_FLIGHT } else { 1 };
        let mut order = BatchOrder::new(ordered);
        let mut open = true;
        while open || !inflight.is_empty() {
            let mut batch = Vec::new();
            tokio::select! {
                received = rx.recv_many(&mut batch, MAX_BATCH), if open && inflight.len() < in_flight => {
                    if received == 0 {
                        open = false;
                    } else {
                        if received == MAX_BATCH || rx.len() >= MAX_BATCH {
                            ctx.dispatch.matcher().notifier().ingest().saturated();
                        }
                        let (place, committed) = order.next(batch_keys(&batch));
                        inflight.push_back(insert(ctx.clone(), index, batch, place, committed));
                    }
                }
                Some(inserted) = inflight.next() => finish(&ctx, inserted),
            }
        }
    });
    tx
}

/// The keys of the events a batch will insert (see [`BatchOrder`]).
fn batch_keys(batch: &[Queued]) -> std::collections::HashSet<RowKey> {
    batch
        .iter()
        .filter_map(|queued| {
            let event = queued.item.event.as_ref()?;
            let spec = &queued.link.spec;
            Some(keys_of(
                spec.org_id,
                &spec.slug,
                event.dedup_key.as_deref(),
                None,
            ))
        })
        .flatten()
        .collect()
}

/// One committed batch: per row, its link and what storage made of it; per message, the link
/// and the ACK frame; what matching decided and the runs created.
struct Inserted {
    rows: Vec<(Arc<Link>, entity::event::Model)>,
    stored: Vec<RowOutcome>,
    frames: Vec<(Arc<Link>, (String, Instant))>,
    matched: Matched,
    created: Vec<uuid::Uuid>,
    now: chrono::DateTime<chrono::Utc>,
}

async fn insert(
    ctx: Arc<WriterCtx>,
    index: usize,
    batch: Vec<Queued>,
    place: Place,
    committed: Option<tokio::sync::oneshot::Sender<()>>,
) -> Inserted {
    let now = db::now();
    let mut frames = Vec::new();
    let mut rows = Vec::with_capacity(batch.len());
    for Queued { link, item, room } in batch {
        drop(room);
        if let Some(ack) = item.ack {
            frames.push((link.clone(), (ack, item.received)));
        }
        if let Some(event) = item.event {
            let row = event_row(&link, *event, item.meta, now);
            rows.push((link, row));
        }
    }
    let copy = || rows.iter().map(|(_, row)| row.clone()).collect::<Vec<_>>();
    let (models, matched) = match ctx.dispatch.prepare(index, copy()).await {
        Some(prepared) => prepared,
        None => {
            let mut models = copy();
            let matched = ctx.dispatch.matcher().prepare(&mut models);
            (models, matched)
        }
    };
    let started = Instant::now();
    let commit = insert_with_retry(&ctx, &rows, &models, &matched.runs, &place).await;
    drop(committed);
    if !models.is_empty() {
        ctx.metrics.db_write("events", started.elapsed());
    }
    Inserted {
        rows,
        stored: commit.outcomes,
        frames,
        matched,
        created: commit.created,
        now,
    }
}

/// What one connection gets from a committed batch.
#[derive(Default)]
struct PerLink {
    frames: Vec<(String, Instant)>,
    new: u64,
    duplicates: u64,
}

fn finish(ctx: &Arc<WriterCtx>, inserted: Inserted) {
    let Inserted {
        rows,
        stored,
        frames,
        matched,
        created,
        now,
    } = inserted;
    let ids: Vec<uuid::Uuid> = rows.iter().map(|(_, row)| row.id).collect();
    if ctx.publisher.has_subscribers() {
        publish_received(ctx, &rows, &stored);
    }
    // By link, in order of first appearance, so each source's events keep their order.
    let mut groups: Vec<(Arc<Link>, PerLink)> = Vec::new();
    let mut index: HashMap<*const Link, usize> = HashMap::new();
    let mut group_of = |link: &Arc<Link>, groups: &mut Vec<(Arc<Link>, PerLink)>| {
        *index.entry(Arc::as_ptr(link)).or_insert_with(|| {
            groups.push((link.clone(), PerLink::default()));
            groups.len() - 1
        })
    };
    for ((link, _), outcome) in rows.iter().zip(&stored) {
        let at = group_of(link, &mut groups);
        let per = &mut groups[at].1;
        match outcome {
            RowOutcome::Stored => per.new += 1,
            RowOutcome::Duplicate => per.duplicates += 1,
            RowOutcome::Refused(reason) => {
                // Logged without the message; ACKed with the others (it can never be stored).
                tracing::warn!(source_id = %link.spec.id, reason = %reason, "message rejected by storage");
                link.counters.rejected(reason);
            }
        }
    }
    for (link, frame) in frames {
        let at = group_of(&link, &mut groups);
        groups[at].1.frames.push(frame);
    }
    for (link, per) in groups {
        settle(&link, per, now);
    }
    ctx.dispatch
        .matcher()
        .committed(matched, &ids, &stored, &created);
}

/// Counts and ACKs what one connection had in a committed batch.
fn settle(link: &Link, per: PerLink, now: chrono::DateTime<chrono::Utc>) {
    let counters = &link.counters;
    counters.add(Count::EventsStored, per.new);
    counters.add(Count::Duplicates, per.duplicates);
    if per.new > 0 {
        counters.event_stored_at(now);
    }
    if !per.frames.is_empty() {
        counters.add(Count::Acks, per.frames.len() as u64);
        // The connection may be gone: the sender then redelivers, and dedup absorbs it.
        let _ = link.acks.send(Box::new(per.frames));
    }
}

/// Tells live observers about every committed event, and about every duplicate with the id of
/// the event it repeats once that is looked up (after the ACKs, off the receive path).
fn publish_received(
    ctx: &Arc<WriterCtx>,
    rows: &[(Arc<Link>, entity::event::Model)],
    stored: &[RowOutcome],
) {
    let mut duplicates: HashMap<(uuid::Uuid, String), Vec<entity::event::Model>> = HashMap::new();
    for ((_, row), outcome) in rows.iter().zip(stored) {
        match outcome {
            RowOutcome::Stored => ctx.publisher.publish(received(row, Some(row.id), false)),
            RowOutcome::Duplicate => duplicates
                .entry((row.org_id, row.source.clone()))
                .or_default()
                .push(row.clone()),
            RowOutcome::Refused(_) => {}
        }
    }
    for ((org_id, source), rows) in duplicates {
        let ctx = ctx.clone();
        actix::spawn(async move {
            let keys = rows.iter().map(|r| r.dedup_key.clone()).collect();
            let earlier = db::events::find_event_ids_by_dedup_keys(&ctx.db, org_id, &source, keys)
                .await
                .unwrap_or_else(|err| {
                    tracing::debug!(error = %err, "looking up the events duplicates repeat failed");
                    HashMap::new()
                });
            for row in &rows {
                let event_id = earlier.get(&row.dedup_key).copied();
                ctx.publisher.publish(received(row, event_id, true));
            }
        });
    }
}

fn received(
    row: &entity::event::Model,
    event_id: Option<uuid::Uuid>,
    duplicate: bool,
) -> Published {
    Published::EventReceived {
        org_id: row.org_id,
        event_id,
        origin: "websocket",
        source: row.source.clone(),
        event_key: row.event_key.clone(),
        status: row.status.clone(),
        duplicate,
        received_at: row.received_at,
    }
}

/// Inserts the batch with its runs, isolating rows storage refuses (each refused alone, every
/// other row of every source stored); retries while storage is unavailable (nothing is
/// acknowledged until stored). A storage error is counted on every source with a row in the
/// batch.
async fn insert_with_retry(
    ctx: &WriterCtx,
    rows: &[(Arc<Link>, entity::event::Model)],
    models: &[entity::event::Model],
    runs: &[Vec<entity::automation_run::Model>],
    place: &Place,
) -> MatchedCommit {
    let mut delay = Duration::from_millis(50);
    loop {
        match db::inbox::insert_matched_isolating(&ctx.db, models, runs, place).await {
            Ok(stored) => return stored,
            Err(err) => {
                let mut counted: Vec<*const Link> = Vec::new();
                for (link, _) in rows {
                    if !counted.contains(&Arc::as_ptr(link)) {
                        counted.push(Arc::as_ptr(link));
                        link.counters.add(Count::StorageErrors, 1);
                    }
                }
                tracing::warn!(error = %err, batch = models.len(), retry_in_ms = delay.as_millis() as u64,
                    "storing events failed; retrying (nothing is acknowledged until stored)");
                tokio::time::sleep(delay).await;
                // Capped low: once storage is back, ACKs resume within this long.
                delay = (delay * 2).min(RETRY_CAP);
            }
        }
    }
}

fn event_row(
    link: &Link,
    event: crate::pipeline::ingest::PreparedEvent,
    meta: serde_json::Value,
    now: chrono::DateTime<chrono::Utc>,
) -> entity::event::Model {
    let spec = &link.spec;
    let from = crate::pipeline::event_row::EventOrigin {
        org_id: spec.org_id,
        origin: "websocket",
        source: &spec.slug,
        source_id: spec.id,
    };
    crate::pipeline::event_row::event_row(from, event, meta, now)
}
