//! What a source board answers about itself: the status it adds up to (the documented function of
//! its slots), its connection counts, and which connection can write.

use super::slot::{Phase, Slot};
use super::{Board, Generation, Shown};
use crate::sources::status::{ConnectionCounts, SourceState};

impl Board {
    /// The generation of a ready connection that can write a frame (none while held).
    pub fn writable(&self) -> Option<Generation> {
        if self.held.is_some() || self.closed {
            return None;
        }
        // A slot's ready connection: its current one once ready, else (during a make-before-break
        // replacement) the aging one that is still serving.
        self.slots
            .iter()
            .filter(|slot| slot.state == SourceState::Connected)
            .find_map(|slot| {
                let current =
                    (slot.phase == Phase::Running && slot.ready).then_some(slot.generation);
                current.or(slot.draining)
            })
    }

    /// The source's status from its slots (the documented function, DESIGN §4.6): a held state
    /// (paused, failed) wins; else `connected` while any slot is ready (the detail says how many
    /// when not all are, else the ghost-connection warning); else the most alarming state of the
    /// slots (`failing` over `backoff` over `connecting`) with that slot's detail and the earliest
    /// retry. `consecutive_failures` is the most of any slot.
    pub fn aggregate(&self) -> Shown {
        let consecutive_failures = self
            .slots
            .iter()
            .map(|slot| slot.policy.consecutive_failures())
            .max()
            .unwrap_or(0);
        if let Some((state, detail)) = &self.held {
            return Shown::held(*state, detail.clone(), consecutive_failures);
        }
        let ready: Vec<&Slot> = self
            .slots
            .iter()
            .filter(|slot| slot.state == SourceState::Connected)
            .collect();
        if !ready.is_empty() {
            let total = self.slots.len();
            let detail = if ready.len() < total {
                Some(format!("{} of {total} connections ready", ready.len()))
            } else {
                self.warning.clone()
            };
            return Shown {
                state: SourceState::Connected,
                detail,
                connected_at: ready.iter().filter_map(|slot| slot.connected_at).min(),
                next_retry_at: None,
                consecutive_failures,
            };
        }
        let rank = |state: SourceState| match state {
            SourceState::Failing => 3,
            SourceState::Backoff => 2,
            _ => 1,
        };
        let worst = self.slots.iter().max_by_key(|slot| rank(slot.state));
        let state = worst.map_or(SourceState::Connecting, |slot| slot.state);
        let retrying = matches!(state, SourceState::Backoff | SourceState::Failing);
        Shown {
            state,
            detail: worst.and_then(|slot| slot.detail.clone()),
            connected_at: None,
            next_retry_at: retrying
                .then(|| self.slots.iter().filter_map(|s| s.next_retry_at).min())
                .flatten(),
            consecutive_failures,
        }
    }

    /// How many connections the source keeps, has ready, and the peer counts.
    pub fn connection_counts(&self) -> ConnectionCounts {
        let ready = self
            .slots
            .iter()
            .filter(|slot| slot.state == SourceState::Connected)
            .count();
        ConnectionCounts {
            configured: u32::try_from(self.slots.len()).unwrap_or(u32::MAX),
            ready: u32::try_from(ready).unwrap_or(u32::MAX),
            reported: self.num_connections,
        }
    }

    /// Sockets the source holds right now (aging and retiring ones included).
    pub fn sockets(&self) -> usize {
        self.slots.iter().map(Slot::sockets).sum::<usize>() + self.retiring.len()
    }
}
