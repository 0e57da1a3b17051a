//! The supervisor's side of the cluster: the coordinator tells it which sources this replica
//! holds. A held, enabled source gets an actor; a source let go has its actor shut down (its
//! connections closed gracefully) before the answer, so the coordinator can tell the next holder
//! that it may connect.

use std::time::Duration;

use actix::prelude::*;

use super::SourceSupervisor;
use crate::actors::commands::{Hold, LetGo, Shutdown};

impl Handler<Hold> for SourceSupervisor {
    type Result = bool;

    fn handle(&mut self, msg: Hold, ctx: &mut Context<Self>) -> bool {
        let Some(entry) = self.entries.get_mut(&msg.source_id) else {
            return false;
        };
        entry.held = true;
        if entry.actor.is_none() && entry.spec.enabled && !self.stopping {
            if let Some((state, detail)) = msg.kept {
                entry.kept.hold(state, detail);
            }
            entry.restarts.reset();
            self.spawn(msg.source_id, Duration::ZERO, ctx);
        }
        true
    }
}

impl Handler<LetGo> for SourceSupervisor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: LetGo, _: &mut Context<Self>) -> Self::Result {
        let Some(entry) = self.entries.get_mut(&msg.source_id) else {
            return Box::pin(async {});
        };
        entry.held = false;
        let Some(addr) = entry.actor.take() else {
            return Box::pin(async {});
        };
        self.closing.insert(entry.incarnation, addr.clone());
        let within = msg.within;
        Box::pin(async move {
            let shutdown = Shutdown {
                timeout: within,
                farewell: None,
            };
            let asked = addr.send(shutdown);
            let _ = tokio::time::timeout(within + Duration::from_secs(1), asked).await;
        })
    }
}
