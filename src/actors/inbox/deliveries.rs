//! The webhook deliveries' group commit. Every accepted delivery's event row goes to one writer
//! task, which commits whatever has arrived while its previous commit ran in one transaction (up
//! to [`MAX_BATCH`] rows and [`MAX_BATCH_BYTES`] of bodies, a larger body alone; [`IN_FLIGHT`]
//! batches at once, answered in order) together with the runs they match, then answers each
//! delivery with what storage made of its row and tells claims and live observers. A webhook's answer (200)
//! therefore still follows the commit that holds its event, but a thousand deliveries a second
//! cost a few commits a second, not a thousand.
//!
//! Unlike the WebSocket writers, nothing is retried here: while storage is unavailable each
//! delivery in the failed batch is answered [`StoreError::Unavailable`] (the handler answers 503
//! with `Retry-After`) and its sender retries, as it would after any 5xx. The same answer goes to
//! a delivery that finds [`QUEUED_BYTES`] of bodies already waiting, or that is not answered
//! within [`ANSWER_DEADLINE`]: a slow database sheds load instead of piling up requests. Such a
//! delivery may still be stored; its retry is then answered as a duplicate of it.

use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt as _;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesOrdered;
use sea_orm::DatabaseConnection;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::actors::dispatch::{DispatchPool, Matched};
use crate::actors::publisher::{Published, Publisher};
use crate::db;
use crate::db::inbox::{Place, RowOutcome};
use crate::metrics::Metrics;

/// Most deliveries per batch.
const MAX_BATCH: usize = 500;
/// Most bytes of bodies per batch (a larger body goes alone).
const MAX_BATCH_BYTES: usize = 8 << 20;
/// Batches being committed at once on PostgreSQL (storage latency, not CPU, bounds the writer;
/// SQLite: one, see `run`).
const IN_FLIGHT: usize = 2;
/// Deliveries queued at most.
const QUEUE: usize = 4096;
/// Deliveries waiting in the queue from which a second batch is committed beside the first
/// (PostgreSQL).
const BUSY_QUEUE: usize = 32;
/// Deliveries in one batch, or waiting behind it, from which the writer counts as saturated:
/// claims then take turns (`queue::ingest_first`).
const SATURATED: usize = 128;
/// Bytes of bodies queued or being committed at most; a delivery beyond waits for room, up to
/// [`ANSWER_DEADLINE`].
pub const QUEUED_BYTES: usize = 256 << 20;
/// The longest a delivery waits for room and for its commit before it is answered 503.
pub const ANSWER_DEADLINE: std::time::Duration = std::time::Duration::from_secs(8);

/// Why a delivery's row was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Storage is unavailable (or the process is stopping): nothing was stored; the sender
    /// should retry.
    #[error("storage is unavailable")]
    Unavailable,
}

/// What storage made of one delivery's row.
type Answer = Result<RowOutcome, StoreError>;

/// One delivery waiting for its commit.
struct Delivery {
    row: entity::event::Model,
    /// Its body's size (bounds a batch's size).
    bytes: usize,
    answer: oneshot::Sender<Answer>,
    /// Its share of [`QUEUED_BYTES`], released once it is answered.
    _room: OwnedSemaphorePermit,
}

/// The input of the deliveries' writer (cheap to clone; held by the HTTP handlers' state).
#[derive(Clone)]
pub struct DeliveryInbox {
    tx: mpsc::Sender<Delivery>,
    /// [`QUEUED_BYTES`] in KiB.
    room: Arc<Semaphore>,
}

/// What the writer uses: storage, dispatch, metrics and live observers.
pub struct DeliveryCtx {
    /// The connection pool.
    pub db: DatabaseConnection,
    /// Matching.
    pub dispatch: DispatchPool,
    /// The application's metrics.
    pub metrics: Arc<Metrics>,
    /// Live observers.
    pub publisher: Publisher,
}

impl DeliveryInbox {
    /// Starts the writer task on the current arbiter; it ends once every handle is dropped and
    /// its queue is committed.
    pub fn start(ctx: DeliveryCtx) -> DeliveryInbox {
        let (tx, rx) = mpsc::channel(QUEUE);
        actix::spawn(run(Arc::new(ctx), rx));
        DeliveryInbox {
            tx,
            room: Arc::new(Semaphore::new(QUEUED_BYTES / 1024)),
        }
    }

    /// Queues `row` (from a body of `bytes`) for the next commit and waits for it: `Stored` (the
    /// event is committed and on its way to dispatch), `Duplicate` (its dedup key was stored
    /// before, or earlier in the same batch) or `Refused` (storage cannot hold it).
    /// [`StoreError::Unavailable`] when the writer is gone or the answer does not come within
    /// [`ANSWER_DEADLINE`].
    pub async fn store(&self, row: entity::event::Model, bytes: usize) -> Answer {
        let waited = tokio::time::timeout(ANSWER_DEADLINE, async {
            let kib = u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
            let room = self.room.clone().acquire_many_owned(kib).await;
            let room = room.map_err(|_| StoreError::Unavailable)?;
            let (answer, answered) = oneshot::channel();
            let delivery = Delivery {
                row,
                bytes,
                answer,
                _room: room,
            };
            self.tx
                .send(delivery)
                .await
                .map_err(|_| StoreError::Unavailable)?;
            answered.await.map_err(|_| StoreError::Unavailable)?
        });
        waited.await.unwrap_or(Err(StoreError::Unavailable))
    }
}

async fn run(ctx: Arc<DeliveryCtx>, mut rx: mpsc::Receiver<Delivery>) {
    let mut inflight = FuturesOrdered::new();
    let ordered = ctx.db.get_database_backend() == sea_orm::DbBackend::Postgres;
    // SQLite writes one transaction at a time: a second batch taken early would only wait for
    // the write turn, and be smaller than one taken once the turn is free (more transactions,
    // each taking the turn from claims and completions).
    let in_flight = if ordered { IN_FLIGHT } else { 1 };
    let mut order = super::order::BatchOrder::new(ordered);
    // A delivery taken from the queue that did not fit the batch before it.
    let mut carried: Option<Delivery> = None;
    let mut open = true;
    while open || carried.is_some() || !inflight.is_empty() {
        // A second batch goes early only under load: at a trickle, two small batches at once
        // cost more than they overlap (measured: `workers-latency`, docs/benchmarks.md).
        let room = inflight.is_empty() || (inflight.len() < in_flight && rx.len() >= BUSY_QUEUE);
        tokio::select! {
            first = next(&mut rx, &mut carried), if (open || carried.is_some()) && room => {
                match first {
                    Some(first) => {
                        let batch = gather(first, &mut rx, &mut carried);
                        if batch.len() >= SATURATED || rx.len() >= SATURATED {
                            ctx.dispatch.matcher().notifier().ingest().saturated();
                        }
                        // A panic while committing drops the batch's answers (503 each), not the
                        // writer: the next batch goes on.
                        let keys = batch
                            .iter()
                            .flat_map(|d| {
                                let row = &d.row;
                                super::order::keys_of(row.org_id, &row.source, Some(&row.dedup_key), row.replay_key.as_deref())
                            })
                            .collect();
                        let place = order.next(keys);
                        let committed = std::panic::AssertUnwindSafe(commit(ctx.clone(), batch, place));
                        inflight.push_back(committed.catch_unwind());
                    }
                    None => open = false,
                }
            }
            Some(committed) = inflight.next() => {
                let Ok((batch, answers)) = committed else {
                    tracing::error!("committing webhook deliveries panicked; their senders were answered 503");
                    continue;
                };
                let settled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| settle(&ctx, batch, answers)));
                if settled.is_err() {
                    tracing::error!("settling webhook deliveries panicked");
                }
            }
        }
    }
}

/// The carried delivery, else the next one queued; `None` once the queue is closed and empty.
async fn next(
    rx: &mut mpsc::Receiver<Delivery>,
    carried: &mut Option<Delivery>,
) -> Option<Delivery> {
    match carried.take() {
        Some(delivery) => Some(delivery),
        None => rx.recv().await,
    }
}

/// `first` and whatever else is queued now, up to [`MAX_BATCH`] deliveries and
/// [`MAX_BATCH_BYTES`] of bodies (`first` goes even when larger); the first delivery that does
/// not fit is `carried` to the next batch.
fn gather(
    first: Delivery,
    rx: &mut mpsc::Receiver<Delivery>,
    carried: &mut Option<Delivery>,
) -> Vec<Delivery> {
    let mut bytes = first.bytes;
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        let Ok(delivery) = rx.try_recv() else { break };
        if bytes + delivery.bytes > MAX_BATCH_BYTES {
            *carried = Some(delivery);
            break;
        }
        bytes += delivery.bytes;
        batch.push(delivery);
    }
    batch
}

/// A batch: the rows in arrival order, and beside each row the delivery waiting for it (with its
/// share of the queue's room).
struct Batch {
    rows: Vec<entity::event::Model>,
    waiting: Vec<(oneshot::Sender<Answer>, OwnedSemaphorePermit)>,
    /// What matching decided, and the runs the commit created.
    matched: Option<(Matched, Vec<uuid::Uuid>)>,
}

/// Matches one batch and commits it with its runs in one transaction (a row storage refuses is
/// isolated by splitting it), keeping its place behind the batch before; answers per row, every
/// row [`StoreError::Unavailable`] when storage is unavailable.
async fn commit(
    ctx: Arc<DeliveryCtx>,
    deliveries: Vec<Delivery>,
    place: (Place, Option<oneshot::Sender<()>>),
) -> (Batch, Vec<Answer>) {
    let (place, committed) = place;
    let mut rows = Vec::with_capacity(deliveries.len());
    let mut waiting = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        rows.push(delivery.row);
        waiting.push((delivery.answer, delivery._room));
    }
    // Spread over the dispatch actors by the first row's webhook (or org).
    let key = rows.first().map_or(0, |row| {
        row.source_id.unwrap_or(row.org_id).as_u128() as usize
    });
    let Some((rows, matched)) = ctx.dispatch.prepare(key, rows).await else {
        // The dispatch actors are gone: the process is stopping. Nothing was stored.
        for (waiter, _room) in waiting {
            let _ = waiter.send(Err(StoreError::Unavailable));
        }
        let batch = Batch {
            rows: Vec::new(),
            waiting: Vec::new(),
            matched: None,
        };
        return (batch, Vec::new());
    };
    let started = Instant::now();
    let stored = db::inbox::insert_matched_isolating(&ctx.db, &rows, &matched.runs, &place).await;
    drop(committed);
    ctx.metrics.db_write("events", started.elapsed());
    let (answers, matched) = match stored {
        Ok(done) => {
            let answers = done.outcomes.into_iter().map(Ok).collect();
            (answers, Some((matched, done.created)))
        }
        Err(err) => {
            tracing::warn!(error = %err, deliveries = rows.len(), "storing webhook deliveries failed; answering 503");
            (vec![Err(StoreError::Unavailable); rows.len()], None)
        }
    };
    let batch = Batch {
        rows,
        waiting,
        matched,
    };
    (batch, answers)
}

/// Answers each delivery of a committed batch, then tells live observers about the stored
/// events and claims and observers about the runs created.
fn settle(ctx: &DeliveryCtx, batch: Batch, answers: Vec<Answer>) {
    let Batch {
        rows,
        waiting,
        matched,
    } = batch;
    debug_assert_eq!(rows.len(), answers.len(), "one answer per row");
    let ids: Vec<uuid::Uuid> = rows.iter().map(|row| row.id).collect();
    let mut outcomes = Vec::with_capacity(rows.len());
    for ((row, waiting), answer) in rows.into_iter().zip(waiting).zip(answers) {
        if answer == Ok(RowOutcome::Stored) && ctx.publisher.has_subscribers() {
            ctx.publisher.publish(received(&row));
        }
        outcomes.push(answer.clone().unwrap_or(RowOutcome::Duplicate));
        // The handler may have gone (the client hung up, or its deadline passed); a stored event
        // stays stored.
        let (waiter, _room) = waiting;
        let _ = waiter.send(answer);
    }
    if let Some((matched, created)) = matched {
        ctx.dispatch
            .matcher()
            .committed(matched, &ids, &outcomes, &created);
    }
}

/// The live-stream notice of a stored delivery.
fn received(row: &entity::event::Model) -> Published {
    Published::EventReceived {
        org_id: row.org_id,
        event_id: Some(row.id),
        origin: "webhook",
        source: row.source.clone(),
        event_key: row.event_key.clone(),
        status: row.status.clone(),
        duplicate: false,
        received_at: row.received_at,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn delivery(bytes: usize, room: &Arc<Semaphore>) -> (Delivery, oneshot::Receiver<Answer>) {
        let (answer, answered) = oneshot::channel();
        let row = entity::event::Model {
            id: uuid::Uuid::now_v7(),
            org_id: uuid::Uuid::now_v7(),
            origin: "webhook".to_owned(),
            source: "s".to_owned(),
            source_id: None,
            dedup_key: "k".to_owned(),
            event_key: None,
            raw: serde_json::json!({}),
            payload: None,
            meta: serde_json::json!({}),
            status: "received".to_owned(),
            error: None,
            outcome: None,
            received_at: chrono::Utc::now(),
            dispatched_at: None,
            replay_key: None,
        };
        let permit = room.clone().try_acquire_owned().expect("room");
        let delivery = Delivery {
            row,
            bytes,
            answer,
            _room: permit,
        };
        (delivery, answered)
    }

    #[test]
    fn batches_are_cut_by_body_bytes_and_a_large_body_goes_alone() {
        let room = Arc::new(Semaphore::new(100));
        let (tx, mut rx) = mpsc::channel(100);
        let half = MAX_BATCH_BYTES / 2;
        let mut answers = Vec::new();
        for bytes in [1024, half, half, MAX_BATCH_BYTES * 2, 10, 10] {
            let (d, a) = delivery(bytes, &room);
            answers.push(a);
            assert!(tx.try_send(d).is_ok(), "queued");
        }
        let mut carried = None;
        let sizes = |batch: &[Delivery]| batch.iter().map(|d| d.bytes).collect::<Vec<_>>();
        let first = rx.try_recv().expect("first");
        let batch = gather(first, &mut rx, &mut carried);
        assert_eq!(
            sizes(&batch),
            vec![1024, half],
            "the next half would pass the budget"
        );
        let batch = gather(carried.take().expect("carried"), &mut rx, &mut carried);
        assert_eq!(
            sizes(&batch),
            vec![half],
            "an oversized body does not join it"
        );
        let batch = gather(carried.take().expect("carried"), &mut rx, &mut carried);
        assert_eq!(
            sizes(&batch),
            vec![MAX_BATCH_BYTES * 2],
            "an oversized body goes alone"
        );
        let batch = gather(carried.take().expect("carried"), &mut rx, &mut carried);
        assert_eq!(sizes(&batch), vec![10, 10]);
        assert!(carried.is_none());
    }
}
