//! The inbox writer of one connection: takes prepared messages from a bounded channel (the
//! buffer; when it is full the connection stops reading its socket), commits them in batches,
//! retrying while storage is down (never dropping), then hands back the ACK frames of committed
//! or duplicate messages, passes stored events to dispatch and tells live observers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use futures_util::stream::FuturesOrdered;
use tokio::sync::mpsc;

use crate::actors::dispatch::PendingEvent;
use crate::actors::publisher::Published;
use crate::actors::runtime::SourceRuntime;
use crate::actors::spec::SourceSpec;
use crate::db;
use crate::db::inbox::RowOutcome;
use crate::pipeline::ingest::PreparedEvent;
use crate::sources::status::{Count, SourceCounters};

/// Messages buffered per connection before reading stops.
pub const BUFFER: usize = 4096;
/// Largest batch per insert.
const MAX_BATCH: usize = 500;
/// Batches inserted concurrently per connection.
const IN_FLIGHT: usize = 2;
/// Longest wait between two attempts to store a batch while storage is unavailable.
const RETRY_CAP: Duration = Duration::from_millis(250);

/// One prepared message and the ACK frame to send once it is durable.
#[derive(Debug)]
pub struct Inbound {
    /// What to store; `None` for a message the pre-filter rejected, which is only acknowledged
    /// (in order with the messages around it, so the sender does not redeliver it forever).
    pub event: Option<Box<PreparedEvent>>,
    /// Meta to store with it (origin details).
    pub meta: serde_json::Value,
    /// The ACK frame, sent after commit (or duplicate detection).
    pub ack: Option<String>,
    /// When the message arrived (for the ACK latency metric).
    pub received: Instant,
}

/// ACK frames to send, each with the arrival time of its message.
pub type AckFrames = Vec<(String, Instant)>;

/// Starts the writer; returns its input. `acks` receives ACK frames after each commit and is
/// dropped when the input is closed and everything in it is committed.
pub fn start(
    spec: Arc<SourceSpec>,
    rt: Arc<SourceRuntime>,
    counters: Arc<SourceCounters>,
    acks: mpsc::UnboundedSender<AckFrames>,
) -> mpsc::Sender<Inbound> {
    let (tx, mut rx) = mpsc::channel::<Inbound>(BUFFER);
    actix::spawn(async move {
        // Up to `IN_FLIGHT` batches are being inserted at once (storage latency, not CPU, bounds a
        // single writer); they finish in order, so ACKs and dispatch keep the arrival order.
        let mut inflight = FuturesOrdered::new();
        let mut open = true;
        while open || !inflight.is_empty() {
            // Grown by `recv_many` as messages come: an idle connection holds no batch buffer.
            let mut batch = Vec::new();
            tokio::select! {
                received = rx.recv_many(&mut batch, MAX_BATCH), if open && inflight.len() < IN_FLIGHT => {
                    if received == 0 {
                        open = false;
                    } else {
                        inflight.push_back(insert(spec.clone(), rt.clone(), counters.clone(), batch));
                    }
                }
                Some(inserted) = inflight.next() => finish(&spec, &rt, &counters, &acks, inserted),
            }
        }
    });
    tx
}

/// One committed batch.
struct Inserted {
    rows: Vec<entity::event::Model>,
    /// Per row: stored, a duplicate, or refused by storage.
    stored: Vec<RowOutcome>,
    frames: AckFrames,
    now: chrono::DateTime<chrono::Utc>,
}

async fn insert(
    spec: Arc<SourceSpec>,
    rt: Arc<SourceRuntime>,
    counters: Arc<SourceCounters>,
    items: Vec<Inbound>,
) -> Inserted {
    let now = db::now();
    let mut frames = Vec::new();
    let rows: Vec<entity::event::Model> = items
        .into_iter()
        .filter_map(|item| {
            frames.extend(item.ack.map(|ack| (ack, item.received)));
            item.event.map(|event| row(&spec, *event, item.meta, now))
        })
        .collect();
    let started = Instant::now();
    let stored = insert_with_retry(&rt, &counters, &rows).await;
    if !rows.is_empty() {
        rt.metrics.db_write("events", started.elapsed());
    }
    Inserted {
        rows,
        stored,
        frames,
        now,
    }
}

/// The ids of the stored events that duplicates repeat, by dedup key (best effort: on a storage
/// error the duplicates are shown without one).
async fn earlier_events(
    rt: &SourceRuntime,
    org_id: uuid::Uuid,
    source: &str,
    keys: Vec<String>,
) -> HashMap<String, uuid::Uuid> {
    db::events::find_event_ids_by_dedup_keys(&rt.db, org_id, source, keys)
        .await
        .unwrap_or_else(|err| {
            tracing::debug!(error = %err, "looking up the events duplicates repeat failed");
            HashMap::new()
        })
}

fn finish(
    spec: &SourceSpec,
    rt: &Arc<SourceRuntime>,
    counters: &SourceCounters,
    acks: &mpsc::UnboundedSender<AckFrames>,
    inserted: Inserted,
) {
    let Inserted {
        rows,
        stored,
        frames,
        now,
    } = inserted;
    if rt.publisher.has_subscribers() {
        publish_received(rt, &rows, &stored);
    }
    let mut pending = Vec::new();
    let (mut new, mut dup) = (0, 0);
    for (row, outcome) in rows.into_iter().zip(stored) {
        match outcome {
            RowOutcome::Stored => {}
            RowOutcome::Duplicate => {
                dup += 1;
                continue;
            }
            RowOutcome::Refused(reason) => {
                // Logged without the message; ACKed with the others (it can never be stored).
                tracing::warn!(source_id = %spec.id, reason = %reason, "message rejected by storage");
                counters.rejected(&reason);
                continue;
            }
        }
        new += 1;
        if row.dispatched_at.is_none() {
            pending.push(PendingEvent::from(row));
        }
    }
    counters.add(Count::EventsStored, new);
    counters.add(Count::Duplicates, dup);
    if new > 0 {
        counters.event_stored_at(now);
    }
    if !frames.is_empty() {
        counters.add(Count::Acks, frames.len() as u64);
        // The connection may be gone: the sender then redelivers, and dedup absorbs it.
        let _ = acks.send(frames);
    }
    rt.dispatch.dispatch(spec.id, pending);
}

/// Tells live observers about every committed event, and about every duplicate with the id of
/// the event it repeats once that is looked up (after the ACKs, off the receive path).
fn publish_received(rt: &Arc<SourceRuntime>, rows: &[entity::event::Model], stored: &[RowOutcome]) {
    let mut duplicates = Vec::new();
    for (row, outcome) in rows.iter().zip(stored) {
        match outcome {
            RowOutcome::Stored => rt.publisher.publish(received(row, Some(row.id), false)),
            RowOutcome::Duplicate => duplicates.push(row.clone()),
            RowOutcome::Refused(_) => {}
        }
    }
    let (Some(first), rt) = (duplicates.first(), rt.clone()) else {
        return;
    };
    let (org_id, source) = (first.org_id, first.source.clone());
    actix::spawn(async move {
        let keys = duplicates.iter().map(|r| r.dedup_key.clone()).collect();
        let earlier = earlier_events(&rt, org_id, &source, keys).await;
        for row in &duplicates {
            let event_id = earlier.get(&row.dedup_key).copied();
            rt.publisher.publish(received(row, event_id, true));
        }
    });
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

/// Inserts the batch, isolating rows storage refuses; retries while storage is unavailable
/// (nothing is acknowledged until stored).
async fn insert_with_retry(
    rt: &SourceRuntime,
    counters: &SourceCounters,
    rows: &[entity::event::Model],
) -> Vec<RowOutcome> {
    let mut delay = Duration::from_millis(50);
    loop {
        match db::inbox::insert_events_isolating(&rt.db, rows).await {
            Ok(stored) => return stored,
            Err(err) => {
                counters.add(Count::StorageErrors, 1);
                tracing::warn!(error = %err, batch = rows.len(), retry_in_ms = delay.as_millis() as u64,
                    "storing events failed; retrying (nothing is acknowledged until stored)");
                tokio::time::sleep(delay).await;
                // Capped low: once storage is back, ACKs resume within this long.
                delay = (delay * 2).min(RETRY_CAP);
            }
        }
    }
}

fn row(
    spec: &SourceSpec,
    event: PreparedEvent,
    meta: serde_json::Value,
    now: chrono::DateTime<chrono::Utc>,
) -> entity::event::Model {
    let from = crate::pipeline::event_row::EventOrigin {
        org_id: spec.org_id,
        origin: "websocket",
        source: &spec.slug,
        source_id: spec.id,
    };
    crate::pipeline::event_row::event_row(from, event, meta, now)
}
