//! The webhook deliveries' group commit. Every accepted delivery's event row goes to one writer
//! task, which commits whatever has arrived while its previous commit ran in one transaction (up
//! to [`MAX_BATCH`] rows, [`IN_FLIGHT`] transactions at once, finishing in order), then answers
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

/// Largest batch per commit.
const MAX_BATCH: usize = 500;
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

/// One delivery waiting for its commit.
struct Delivery {
    row: entity::event::Model,
    answer: oneshot::Sender<Result<RowOutcome, StoreError>>,
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

    /// Queues `row` for the next commit and waits for it: `Stored` (the event is committed and
    /// on its way to dispatch), `Duplicate` (its dedup key was stored before, or earlier in the
    /// same batch) or `Refused` (storage cannot hold it).
    pub async fn store(&self, row: entity::event::Model) -> Result<RowOutcome, StoreError> {
        let (answer, answered) = oneshot::channel();
        self.tx
            .send(Delivery { row, answer })
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
            Some((batch, outcomes)) = inflight.next() => settle(&ctx, batch, outcomes),
        }
    }
}

/// A batch: the rows in arrival order, and beside each the delivery waiting for it.
struct Batch {
    rows: Vec<entity::event::Model>,
    answers: Vec<oneshot::Sender<Result<RowOutcome, StoreError>>>,
}

/// Commits one batch; `Err` when storage is unavailable (nothing of it is stored).
async fn commit(
    ctx: std::sync::Arc<DeliveryCtx>,
    deliveries: Vec<Delivery>,
) -> (Batch, Result<Vec<RowOutcome>, StoreError>) {
    let (rows, answers) = deliveries
        .into_iter()
        .map(|Delivery { row, answer }| (row, answer))
        .unzip();
    let batch = Batch { rows, answers };
    let started = Instant::now();
    let outcomes = match db::inbox::insert_events_isolating(&ctx.db, &batch.rows).await {
        Ok(outcomes) => Ok(outcomes),
        Err(err) => {
            tracing::warn!(error = %err, batch = batch.rows.len(), "storing webhook deliveries failed; answering 503");
            Err(StoreError::Unavailable)
        }
    };
    ctx.metrics.db_write("events", started.elapsed());
    (batch, outcomes)
}

/// Answers each delivery of a committed batch, then publishes and dispatches the stored events
/// (grouped by route, in commit order, so each webhook's events keep their order).
fn settle(ctx: &DeliveryCtx, batch: Batch, outcomes: Result<Vec<RowOutcome>, StoreError>) {
    let Batch { rows, answers } = batch;
    let outcomes = match outcomes {
        Ok(outcomes) => outcomes,
        Err(err) => {
            for answer in answers {
                let _ = answer.send(Err(err));
            }
            return;
        }
    };
    let mut routes: Vec<(uuid::Uuid, Vec<PendingEvent>)> = Vec::new();
    for ((row, answer), outcome) in rows.into_iter().zip(answers).zip(outcomes) {
        if outcome == RowOutcome::Stored {
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
        // The handler may have gone (the client hung up); the event is stored all the same.
        let _ = answer.send(Ok(outcome));
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
