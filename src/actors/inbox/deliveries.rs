//! The webhook deliveries' group commit. Every accepted delivery's event row goes to one writer
//! task, which commits whatever has arrived while its previous commit ran in one transaction (up
//! to [`MAX_BATCH`] rows and [`MAX_BATCH_BYTES`] of bodies; [`IN_FLIGHT`] batches at once,
//! finishing in order), then answers
//! each delivery with what storage made of its row, tells live observers and hands the stored
//! events to dispatch. A webhook's answer (200) therefore still follows the commit that holds its
//! event, but a thousand deliveries a second cost a few commits a second, not a thousand.
//!
//! Unlike the WebSocket writers, nothing is retried here: while storage is unavailable each
//! delivery in the failed batch is answered [`StoreError::Unavailable`] (the handler answers 503
//! with `Retry-After`) and its sender retries, as it would after any 5xx.

use std::time::Instant;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesOrdered;
use sea_orm::DatabaseConnection;
use tokio::sync::{mpsc, oneshot};

use crate::actors::dispatch::{DispatchPool, PendingEvent};
use crate::actors::publisher::{Published, Publisher};
use crate::db;
use crate::db::inbox::RowOutcome;
use crate::metrics::Metrics;

/// Most deliveries taken at once.
const MAX_BATCH: usize = 500;
/// Most bytes of bodies per transaction (a batch of large deliveries commits in several).
const MAX_BATCH_BYTES: usize = 8 << 20;
/// Batches being committed at once (storage latency, not CPU, bounds the writer).
const IN_FLIGHT: usize = 2;
/// Deliveries queued before handlers wait for room (each waiting handler holds its request).
const QUEUE: usize = 4096;

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
    /// Its body's size (bounds a transaction's size).
    bytes: usize,
    answer: oneshot::Sender<Answer>,
}

/// The input of the deliveries' writer (cheap to clone; held by the HTTP handlers' state).
#[derive(Clone)]
pub struct DeliveryInbox {
    tx: mpsc::Sender<Delivery>,
}

/// What the writer uses: storage, dispatch, metrics and live observers.
pub struct DeliveryCtx {
    /// The connection pool.
    pub db: DatabaseConnection,
    /// Where committed events go.
    pub dispatch: DispatchPool,
    /// The application's metrics.
    pub metrics: std::sync::Arc<Metrics>,
    /// Live observers.
    pub publisher: Publisher,
}

impl DeliveryInbox {
    /// Starts the writer task on the current arbiter; it ends once every handle is dropped and
    /// its queue is committed.
    pub fn start(ctx: DeliveryCtx) -> DeliveryInbox {
        let (tx, rx) = mpsc::channel(QUEUE);
        actix::spawn(run(std::sync::Arc::new(ctx), rx));
        DeliveryInbox { tx }
    }

    /// Queues `row` (from a body of `bytes`) for the next commit and waits for it: `Stored` (the
    /// event is committed and on its way to dispatch), `Duplicate` (its dedup key was stored
    /// before, or earlier in the same batch) or `Refused` (storage cannot hold it).
    pub async fn store(&self, row: entity::event::Model, bytes: usize) -> Answer {
        let (answer, answered) = oneshot::channel();
        self.tx
            .send(Delivery { row, bytes, answer })
            .await
            .map_err(|_| StoreError::Unavailable)?;
        answered.await.map_err(|_| StoreError::Unavailable)?
    }
}

async fn run(ctx: std::sync::Arc<DeliveryCtx>, mut rx: mpsc::Receiver<Delivery>) {
    let mut inflight = FuturesOrdered::new();
    let mut open = true;
    while open || !inflight.is_empty() {
        let mut batch = Vec::new();
        tokio::select! {
            received = rx.recv_many(&mut batch, MAX_BATCH), if open && inflight.len() < IN_FLIGHT => {
                if received == 0 {
                    open = false;
                } else {
                    inflight.push_back(commit(ctx.clone(), batch));
                }
            }
            Some((batch, answers)) = inflight.next() => settle(&ctx, batch, answers),
        }
    }
}

/// A batch: the rows in arrival order, the size of each delivery's body, and beside each row the
/// delivery waiting for it.
struct Batch {
    rows: Vec<entity::event::Model>,
    bytes: Vec<usize>,
    answers: Vec<oneshot::Sender<Answer>>,
}

/// Commits one batch, in transactions of at most [`MAX_BATCH_BYTES`] of bodies (one at least);
/// answers per row. Once one transaction finds storage unavailable, it and the rest of the batch
/// are answered [`StoreError::Unavailable`] (nothing of them is stored).
async fn commit(
    ctx: std::sync::Arc<DeliveryCtx>,
    deliveries: Vec<Delivery>,
) -> (Batch, Vec<Answer>) {
    let mut batch = Batch {
        rows: Vec::with_capacity(deliveries.len()),
        bytes: Vec::with_capacity(deliveries.len()),
        answers: Vec::with_capacity(deliveries.len()),
    };
    for Delivery { row, bytes, answer } in deliveries {
        batch.rows.push(row);
        batch.bytes.push(bytes);
        batch.answers.push(answer);
    }
    let mut answers = Vec::with_capacity(batch.rows.len());
    let mut start = 0;
    while start < batch.rows.len() {
        let end = chunk_end(&batch.bytes, start);
        let rows = &batch.rows[start..end];
        let started = Instant::now();
        match db::inbox::insert_events_isolating(&ctx.db, rows).await {
            Ok(outcomes) => answers.extend(outcomes.into_iter().map(Ok)),
            Err(err) => {
                tracing::warn!(error = %err, deliveries = batch.rows.len() - start, "storing webhook deliveries failed; answering 503");
                answers.resize(batch.rows.len(), Err(StoreError::Unavailable));
                break;
            }
        }
        ctx.metrics.db_write("events", started.elapsed());
        start = end;
    }
    (batch, answers)
}

/// The end of the transaction starting at `start`: as many deliveries as fit in
/// [`MAX_BATCH_BYTES`] of bodies, one at least.
fn chunk_end(bytes: &[usize], start: usize) -> usize {
    let mut total = 0;
    let mut end = start;
    while end < bytes.len() && (end == start || total + bytes[end] <= MAX_BATCH_BYTES) {
        total += bytes[end];
        end += 1;
    }
    end
}

/// Answers each delivery of a committed batch, then publishes and dispatches the stored events
/// (grouped by route, in commit order, so each webhook's events keep their order).
fn settle(ctx: &DeliveryCtx, batch: Batch, answers: Vec<Answer>) {
    let Batch {
        rows,
        answers: waiting,
        ..
    } = batch;
    let mut routes: Vec<(uuid::Uuid, Vec<PendingEvent>)> = Vec::new();
    for ((row, waiting), answer) in rows.into_iter().zip(waiting).zip(answers) {
        if answer == Ok(RowOutcome::Stored) {
            if ctx.publisher.has_subscribers() {
                ctx.publisher.publish(received(&row));
            }
            if row.dispatched_at.is_none() {
                let pending = PendingEvent::from(row);
                match routes.iter_mut().find(|(route, _)| *route == pending.route) {
                    Some((_, events)) => events.push(pending),
                    None => routes.push((pending.route, vec![pending])),
                }
            }
        }
        // The handler may have gone (the client hung up); a stored event stays stored.
        let _ = waiting.send(answer);
    }
    for (route, events) in routes {
        ctx.dispatch.dispatch(route, events);
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
    use super::{MAX_BATCH_BYTES, chunk_end};

    #[test]
    fn transactions_are_cut_by_body_bytes_and_never_empty() {
        let small = vec![1024; 10];
        assert_eq!(
            chunk_end(&small, 0),
            10,
            "small bodies share one transaction"
        );
        let half = MAX_BATCH_BYTES / 2;
        let large = vec![half, half, half, 10];
        assert_eq!(chunk_end(&large, 0), 2, "two halves fill one transaction");
        assert_eq!(chunk_end(&large, 2), 4);
        let huge = vec![MAX_BATCH_BYTES * 3, 1];
        assert_eq!(
            chunk_end(&huge, 0),
            1,
            "an oversized body goes alone, never nowhere"
        );
        assert_eq!(chunk_end(&huge, 1), 2);
    }
}
