//! The operator's commands and new specs, as a source board takes them.

use super::slot::{Phase, Slot};
use super::{Board, Effect};
use crate::actors::policy::BackoffConfig;
use crate::metrics::ReconnectReason;
use crate::sources::status::SourceState;

impl Board {
    /// Operator `Reconnect`: every slot connects afresh now, backoff reset, nothing held.
    pub fn reconnect(&mut self) -> Vec<Effect> {
        let mut out = Vec::new();
        if self.closed {
            return out;
        }
        out.push(Effect::Reconnected(ReconnectReason::Operator));
        self.restart_all(&mut out);
        out
    }

    /// Operator `Pause`: every connection closes; nothing starts until `resume` or `reconnect`.
    pub fn pause(&mut self) -> Vec<Effect> {
        let mut out = Vec::new();
        if !self.closed {
            let detail = Some("paused by an operator".to_owned());
            self.hold(SourceState::Paused, detail, &mut out);
        }
        out
    }

    /// Operator `Resume`: a held (paused, failed) or idle source connects afresh; a running one is
    /// left alone.
    pub fn resume(&mut self) -> Vec<Effect> {
        let mut out = Vec::new();
        let idle = self.held.is_some() || !self.slots.iter().any(Slot::is_live);
        if !self.closed && idle {
            self.restart_all(&mut out);
        }
        out
    }

    /// A new spec. `same_connection`: only its expressions changed, so running connections take
    /// it in place; otherwise every slot restarts with the new slot count and backoff. A paused
    /// source stays paused whatever changed (only `resume` or `reconnect` start it), and a failed
    /// one stays failed unless its connection settings changed (the change may be the fix): the
    /// new slot count and backoff apply when it starts.
    pub fn update(
        &mut self,
        connections: usize,
        backoff: BackoffConfig,
        same_connection: bool,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        if self.closed {
            return out;
        }
        let paused = matches!(self.held, Some((SourceState::Paused, _)));
        if paused || (self.held.is_some() && same_connection) {
            self.slots = (0..connections.max(1))
                .map(|_| Slot::new(&backoff))
                .collect();
            self.backoff = backoff;
            // Fresh generations: a late report of a connection stopped before is stale.
            self.stop_all(&mut out);
            self.show(&mut out);
            return out;
        }
        let running = self.slots.iter().any(Slot::is_live);
        if running && same_connection {
            let generations = self
                .slots
                .iter()
                .flat_map(|slot| {
                    let current = (slot.phase == Phase::Running).then_some(slot.generation);
                    current.into_iter().chain(slot.draining)
                })
                .collect();
            out.push(Effect::Swap { generations });
            return out;
        }
        self.stop_all(&mut out);
        self.slots = (0..connections.max(1))
            .map(|_| Slot::new(&backoff))
            .collect();
        self.backoff = backoff;
        self.restart_all(&mut out);
        out
    }

    /// The source shuts down: every connection stops; nothing happens any more.
    pub fn shutdown(&mut self) -> Vec<Effect> {
        let mut out = Vec::new();
        self.stop_all(&mut out);
        self.closed = true;
        out
    }
}
