//! The shared inbox writers: every connection's prepared messages go to one of a few writer
//! tasks (always the same one for a source, so a source's messages stay in order), which commit
//! whatever has arrived while the previous commit ran in one transaction, whichever connections
//! it came from (group commit). After the commit that covers a message, its ACK frame goes back
//! to its own connection, its event to dispatch. The queue of each writer is bounded, and so is
//! each connection's share of it: when either is full, a connection keeps the message in its
//! backlog and stops reading its socket (backpressure, never a drop).

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use uuid::Uuid;

use crate::actors::spec::SourceSpec;
use crate::pipeline::ingest::PreparedEvent;
use crate::sources::status::SourceCounters;

pub mod deliveries;
mod order;
mod writer;

pub use writer::WriterCtx;

/// Messages queued per writer before connections must wait (and stop reading).
pub const QUEUE: usize = 16 * 1024;
/// Room one connection has in its writer's queue, in units of [`ROOM_UNIT_BYTES`]: what it has
/// queued and not yet taken into a batch; beyond that it waits (and stops reading), so a firehose
/// cannot take the whole shared queue from quieter sources. A message takes one unit per started
/// 8 KiB, so a connection queues at most 4,096 small messages, or 32 MiB of large ones.
pub const PER_CONNECTION: usize = 4096;
/// The size of one unit of a connection's room.
pub const ROOM_UNIT_BYTES: usize = 8 * 1024;
/// Writer tasks on PostgreSQL (SQLite: one); a source always maps to the same one.
pub const WRITERS: usize = 2;

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
    /// Its size on the wire, which sets the room it takes (the first queued message of a frame
    /// holding several carries the whole frame's size, the others none).
    pub bytes: usize,
}

/// The units of a connection's room a message of `bytes` takes (at least one, at most all).
fn units(bytes: usize) -> u32 {
    let units = (bytes / ROOM_UNIT_BYTES + 1).min(PER_CONNECTION);
    u32::try_from(units).unwrap_or(1)
}

/// ACK frames to send, each with the arrival time of its message. Boxed on their way to the
/// connection: a channel allocates room for 32 items up front, so a one-pointer item keeps every
/// idle connection's ACK channel small.
pub type AckFrames = Box<Vec<(String, Instant)>>;

/// Who a queued message belongs to: its source and the way back to its connection. Every
/// queued message holds one; once the connection has let go of its [`InboxHandle`] and the last
/// of its messages is committed, the ACK channel closes, which tells the connection that
/// everything it handed over is settled.
pub struct Link {
    /// The source's spec (the row is built from it).
    pub spec: Arc<SourceSpec>,
    /// The source's counters.
    pub counters: Arc<SourceCounters>,
    /// ACK frames of committed messages, back to the connection.
    pub acks: mpsc::UnboundedSender<AckFrames>,
}

/// A message in a writer's queue.
pub struct Queued {
    /// Its connection.
    pub link: Arc<Link>,
    /// The message.
    pub item: Inbound,
    /// Its units of its connection's [`PER_CONNECTION`], freed when the writer takes it.
    pub room: OwnedSemaphorePermit,
}

/// The writers' inputs, shared by every connection (held by the source runtime).
#[derive(Clone)]
pub struct SharedInbox {
    writers: Arc<[mpsc::Sender<Queued>]>,
}

impl SharedInbox {
    /// Starts [`WRITERS`] writer tasks (one on SQLite) on the current arbiter. They end once every handle (and
    /// this) is dropped and their queues are committed.
    pub fn start(ctx: WriterCtx) -> SharedInbox {
        let writers = match ctx.db.get_database_backend() {
            // One write turn at a time: a second writer only cuts the batches in two.
            sea_orm::DbBackend::Sqlite => 1,
            _ => WRITERS,
        };
        Self::start_with(ctx, writers, QUEUE)
    }

    /// [`start`](Self::start) with `writers` tasks of `queue` messages each (tests use small
    /// queues).
    pub fn start_with(ctx: WriterCtx, writers: usize, queue: usize) -> SharedInbox {
        let ctx = Arc::new(ctx);
        let writers: Vec<mpsc::Sender<Queued>> = (0..writers.max(1))
            .map(|index| writer::start(ctx.clone(), queue.max(1), index))
            .collect();
        SharedInbox {
            writers: writers.into(),
        }
    }

    /// The input of a new connection of `spec`'s source, and where its ACK frames will come.
    pub fn connect(
        &self,
        spec: Arc<SourceSpec>,
        counters: Arc<SourceCounters>,
    ) -> (InboxHandle, mpsc::UnboundedReceiver<AckFrames>) {
        let (acks, ack_rx) = mpsc::unbounded_channel();
        let tx = self.writers[writer_of(spec.id, self.writers.len())].clone();
        let link = Arc::new(Link {
            spec,
            counters,
            acks,
        });
        let room = Arc::new(Semaphore::new(PER_CONNECTION));
        (InboxHandle { tx, link, room }, ack_rx)
    }
}

/// The writer of a source: a fixed function of its id, so its messages are never reordered by
/// two writers committing at once.
fn writer_of(source: Uuid, writers: usize) -> usize {
    (source.as_u128() % writers.max(1) as u128) as usize
}

/// A connection's input to its writer (a clone is another handle on the same link and room).
#[derive(Clone)]
pub struct InboxHandle {
    tx: mpsc::Sender<Queued>,
    link: Arc<Link>,
    /// The connection's own room in the queue ([`PER_CONNECTION`] messages).
    room: Arc<Semaphore>,
}

/// Room for one message in a writer's queue.
pub struct InboxPermit<'a> {
    permit: mpsc::Permit<'a, Queued>,
    link: &'a Arc<Link>,
    room: OwnedSemaphorePermit,
}

impl InboxPermit<'_> {
    /// Queues `item` in the room reserved.
    pub fn send(self, item: Inbound) {
        self.permit.send(Queued {
            link: self.link.clone(),
            item,
            room: self.room,
        });
    }
}

impl InboxHandle {
    /// Queues `item` if there is room now; answers it back when the queue is full. A message for
    /// a writer that is gone (the process is stopping) is dropped unacknowledged: the sender
    /// redelivers it.
    pub fn try_send(&self, item: Inbound) -> Result<(), Inbound> {
        let Ok(room) = self.room.clone().try_acquire_many_owned(units(item.bytes)) else {
            return Err(item);
        };
        match self.tx.try_send(self.queued(item, room)) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => Ok(()),
            Err(mpsc::error::TrySendError::Full(queued)) => Err(queued.item),
        }
    }

    /// Waits for room for one message of `bytes` (the connection's own, then the writer's
    /// queue); `None` once the writer is gone.
    pub async fn reserve(&self, bytes: usize) -> Option<InboxPermit<'_>> {
        let room = self
            .room
            .clone()
            .acquire_many_owned(units(bytes))
            .await
            .ok()?;
        let permit = self.tx.reserve().await.ok()?;
        Some(InboxPermit {
            permit,
            link: &self.link,
            room,
        })
    }

    /// Waits for room and queues `item`; `Err` once the writer is gone.
    pub async fn send(&self, item: Inbound) -> Result<(), ()> {
        let permit = self.reserve(item.bytes).await.ok_or(())?;
        permit.send(item);
        Ok(())
    }

    fn queued(&self, item: Inbound, room: OwnedSemaphorePermit) -> Queued {
        Queued {
            link: self.link.clone(),
            item,
            room,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_takes_a_unit_per_started_8_kib_and_never_more_than_the_room() {
        assert_eq!(units(0), 1);
        assert_eq!(units(ROOM_UNIT_BYTES - 1), 1);
        assert_eq!(units(ROOM_UNIT_BYTES), 2);
        assert_eq!(units(1024 * 1024), 129);
        assert_eq!(units(64 * 1024 * 1024), PER_CONNECTION as u32);
    }
}
