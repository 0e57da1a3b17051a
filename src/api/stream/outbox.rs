//! The send queue between a stream session and its socket. The session's WebSocket context is
//! driven by a task of its own and its encoded frames wait here until the HTTP layer takes them,
//! so a client that stops reading never stops its session (pings, timeouts, counting what it
//! misses) and never stops anyone else. The session reads [`Outbox::queued`] and drops messages
//! (telling the client how many) instead of queueing beyond its limit.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use actix_web::web::Bytes;
use futures_util::{Stream, StreamExt as _};
use tokio::sync::mpsc;

/// Bytes a session may have waiting for a slow client before it drops messages.
pub const SEND_QUEUE_BYTES: usize = 256 * 1024;

/// Counts the bytes encoded for the socket that the HTTP layer has not taken yet.
#[derive(Clone, Default)]
pub struct Outbox {
    queued: Arc<AtomicUsize>,
}

impl Outbox {
    /// A queue with nothing in it.
    pub fn new() -> Outbox {
        Outbox::default()
    }

    /// Bytes waiting for the client.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Whether the session should hold back data messages.
    pub fn is_full(&self) -> bool {
        self.queued() >= SEND_QUEUE_BYTES
    }

    /// Drives `frames` (a WebSocket context: the session and its encoder) on a task of its own and
    /// returns the response body that hands its bytes to the HTTP layer. When the client is gone
    /// the task drops `frames`, which stops the session.
    pub fn pump<S>(&self, frames: S) -> OutboxBody
    where
        S: Stream<Item = Result<Bytes, actix_web::Error>> + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = self.queued.clone();
        actix::spawn(async move {
            let mut frames = std::pin::pin!(frames);
            while let Some(chunk) = frames.next().await {
                let size = chunk.as_ref().map_or(0, Bytes::len);
                queued.fetch_add(size, Ordering::AcqRel);
                if tx.send(chunk).is_err() {
                    break;
                }
            }
        });
        OutboxBody {
            rx,
            queued: self.queued.clone(),
        }
    }
}

/// The response body of a stream session: what the pump queued, in order.
pub struct OutboxBody {
    rx: mpsc::UnboundedReceiver<Result<Bytes, actix_web::Error>>,
    queued: Arc<AtomicUsize>,
}

impl Stream for OutboxBody {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.rx.poll_recv(cx);
        if let Poll::Ready(Some(Ok(bytes))) = &polled {
            self.queued.fetch_sub(bytes.len(), Ordering::AcqRel);
        }
        polled
    }
}
