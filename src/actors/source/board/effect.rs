//! What comes out of a source board: the effects its actor carries out, and the status it shows.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Generation;
use crate::metrics::ReconnectReason;
use crate::sources::status::SourceState;

/// What the board asks its actor to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// After `after`, and after a free connect permit, report
    /// [`Board::start_due`](super::Board::start_due) for this slot and generation (replacing any
    /// start scheduled for the slot before).
    Schedule {
        /// The slot.
        slot: usize,
        /// The generation to start.
        generation: Generation,
        /// How long to wait first.
        after: Duration,
    },
    /// Forget the start scheduled for this slot (its generation is stale now anyway).
    Unschedule {
        /// The slot.
        slot: usize,
    },
    /// Start a connection of `generation` now.
    Start {
        /// The slot.
        slot: usize,
        /// Its generation.
        generation: Generation,
    },
    /// Close this connection gracefully.
    Stop {
        /// The connection.
        generation: Generation,
    },
    /// A ready replacement took over from this connection: let it drain.
    Retire {
        /// The connection.
        generation: Generation,
    },
    /// Give these connections the new spec (expressions only; they keep running).
    Swap {
        /// The connections.
        generations: Vec<Generation>,
    },
    /// The source's status changed: write, log and publish it.
    Show(Shown),
    /// Count a reconnect (the source's `reconnects` counter, except for a routine refresh, and
    /// the reconnect metric by reason).
    Reconnected(ReconnectReason),
    /// Count a terminal failure.
    TerminalFailure,
    /// The peer counts more connections for these credentials than the source holds.
    GhostConnections {
        /// The peer's count.
        reported: u32,
        /// What the status says about it.
        warning: String,
    },
}

/// What the status of a source shows; an [`Effect::Show`] comes only when it changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Shown {
    /// The state.
    pub state: SourceState,
    /// Why (a failure, a pause, partial readiness, a ghost-connection warning).
    pub detail: Option<String>,
    /// Since when the earliest ready connection is ready.
    pub connected_at: Option<DateTime<Utc>>,
    /// When the next attempt is due.
    pub next_retry_at: Option<DateTime<Utc>>,
    /// The most consecutive failures of any slot.
    pub consecutive_failures: u32,
}

impl Shown {
    /// A source held in `state` (disabled, paused, failed) with no connection.
    pub fn held(state: SourceState, detail: Option<String>, consecutive_failures: u32) -> Shown {
        Shown {
            state,
            detail,
            connected_at: None,
            next_retry_at: None,
            consecutive_failures,
        }
    }
}
