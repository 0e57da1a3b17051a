//! The source actor's mailbox: the API's commands (routed by the supervisor) and its connections'
//! reports. Each handler feeds the board one event and carries out the effects.

use std::time::Instant;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::super::commands::{
    GetSample, GetSnapshot, Pause, Reconnect, Resume, SendError, SendFrame, Shutdown, Update,
};
use super::super::connection::{
    AbortConnection, ConnectionEnded, ConnectionReady, ReplacementDue, StopConnection, WriteFrame,
};
use super::board::Shown;
use super::{SourceActor, show};
use crate::metrics::SourceSample;
use crate::sources::status::{ConnectionCounts, StatusSnapshot};

impl Handler<Reconnect> for SourceActor {
    type Result = bool;

    fn handle(&mut self, _: Reconnect, ctx: &mut Context<Self>) -> bool {
        let effects = self.board.reconnect();
        self.apply(effects, ctx);
        true
    }
}

impl Handler<Pause> for SourceActor {
    type Result = bool;

    fn handle(&mut self, _: Pause, ctx: &mut Context<Self>) -> bool {
        let effects = self.board.pause();
        self.apply(effects, ctx);
        true
    }
}

impl Handler<Resume> for SourceActor {
    type Result = bool;

    fn handle(&mut self, _: Resume, ctx: &mut Context<Self>) -> bool {
        let effects = self.board.resume();
        self.apply(effects, ctx);
        true
    }
}

impl Handler<Update> for SourceActor {
    type Result = ();

    fn handle(&mut self, msg: Update, ctx: &mut Context<Self>) {
        let spec = msg.spec;
        if spec.id != self.spec.id || spec.revision < self.spec.revision {
            return;
        }
        let same_connection = self.spec.same_connection(&spec);
        self.pacing_host = spec.pacing_host();
        self.spec = spec;
        let effects = self.board.update(
            self.spec.connections(),
            self.spec.backoff(),
            same_connection,
        );
        self.apply(effects, ctx);
    }
}

impl Handler<SendFrame> for SourceActor {
    type Result = ResponseFuture<Result<(), SendError>>;

    fn handle(&mut self, msg: SendFrame, _: &mut Context<Self>) -> Self::Result {
        let target = self
            .board
            .writable()
            .and_then(|generation| self.connections.get(&generation).cloned());
        Box::pin(async move {
            let addr = target.ok_or(SendError::NotConnected)?;
            addr.send(WriteFrame { text: msg.text })
                .await
                .unwrap_or(Err(SendError::NotConnected))
        })
    }
}

impl Handler<GetSnapshot> for SourceActor {
    type Result = MessageResult<GetSnapshot>;

    fn handle(&mut self, _: GetSnapshot, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.snapshot(&self.board.aggregate()))
    }
}

impl Handler<GetSample> for SourceActor {
    type Result = MessageResult<GetSample>;

    fn handle(&mut self, _: GetSample, _: &mut Context<Self>) -> Self::Result {
        MessageResult(SourceSample {
            slug: self.spec.slug.clone(),
            state: self.board.aggregate().state,
            connections: self.board.sockets() as u64,
            counters: self.shared.counters.to_json(),
        })
    }
}

impl Handler<Shutdown> for SourceActor {
    type Result = ResponseActFuture<Self, ()>;

    /// Stops every connection; shows the farewell state at once (so that it is this source's last
    /// status write, before any actor started for it later writes); then waits for the
    /// connections to end, at most `timeout`, cuts off any still open, writes the counters and
    /// stops.
    fn handle(&mut self, msg: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        self.exit.mark_clean();
        let effects = self.board.shutdown();
        self.apply(effects, ctx);
        if let Some(state) = msg.farewell {
            let connections = ConnectionCounts {
                configured: u32::try_from(self.spec.connections()).unwrap_or(u32::MAX),
                ready: 0,
                reported: None,
            };
            let shown = Shown::held(state, None, 0);
            show::show(
                &self.rt,
                &self.spec,
                &shown,
                &self.shared.counters,
                connections,
            );
        }
        self.flush_counters();
        let (tx, rx) = oneshot::channel();
        self.drained.push(tx);
        self.wake_drained();
        Box::pin(
            async move {
                let _ = tokio::time::timeout(msg.timeout, rx).await;
            }
            .into_actor(self)
            .map(|(), act, ctx| {
                act.flush_counters();
                // Whatever has not closed by the deadline is cut off: the caller counts on it
                // (a replica fencing itself must be rid of its sockets before its lease expires).
                for connection in act.connections.values() {
                    connection.do_send(AbortConnection);
                }
                ctx.stop();
            }),
        )
    }
}

impl Handler<ConnectionReady> for SourceActor {
    type Result = ();

    fn handle(&mut self, msg: ConnectionReady, ctx: &mut Context<Self>) {
        let effects = self.board.ready(
            msg.generation,
            msg.num_connections,
            Instant::now(),
            crate::db::now(),
        );
        self.apply(effects, ctx);
    }
}

impl Handler<ConnectionEnded> for SourceActor {
    type Result = ();

    fn handle(&mut self, msg: ConnectionEnded, ctx: &mut Context<Self>) {
        self.connections.remove(&msg.generation);
        let effects = self.board.ended(
            msg.generation,
            &msg.reason,
            Instant::now(),
            crate::db::now(),
            &mut self.rng,
        );
        self.apply(effects, ctx);
        self.wake_drained();
    }
}

impl Handler<ReplacementDue> for SourceActor {
    type Result = ();

    fn handle(&mut self, msg: ReplacementDue, ctx: &mut Context<Self>) {
        let effects = self.board.replacement_due(msg.generation);
        if !effects.is_empty() {
            tracing::info!(source_id = %self.spec.id, "replacing a connection (make-before-break)");
        }
        self.apply(effects, ctx);
    }
}

impl SourceActor {
    fn snapshot(&self, shown: &Shown) -> StatusSnapshot {
        show::snapshot(
            &self.spec,
            shown,
            &self.shared.counters,
            self.board.connection_counts(),
        )
    }
}

impl Drop for SourceActor {
    /// A source actor that goes away without a shutdown (an error exit, a panic) closes the
    /// connections it still holds, so that its restarted successor does not run beside them.
    fn drop(&mut self) {
        for addr in self.connections.values() {
            addr.do_send(StopConnection);
        }
    }
}
