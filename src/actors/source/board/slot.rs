//! One connection slot of a source board.

use chrono::{DateTime, Utc};

use crate::actors::policy::{BackoffConfig, RestartPolicy};
use crate::sources::status::SourceState;

use super::Generation;

/// Whether a slot's current generation is idle, waiting to start, or running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Nothing runs or is scheduled.
    Idle,
    /// A start is scheduled.
    Scheduled,
    /// The connection runs.
    Running,
}

/// One connection slot (one for generic sources, `connections` for Slack): losing one never
/// touches the others.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Slot {
    pub(super) generation: Generation,
    pub(super) phase: Phase,
    /// The current connection reported ready (a repeated report changes nothing).
    pub(super) ready: bool,
    /// What the slot shows once its aging connection goes, when a failed replacement left a
    /// retry pending meanwhile (`backoff` or `failing`).
    pub(super) after_drain: Option<SourceState>,
    /// The aging connection kept serving until its replacement is ready.
    pub(super) draining: Option<Generation>,
    pub(super) policy: RestartPolicy,
    /// `Connecting`, `Connected`, `Backoff` or `Failing`.
    pub(super) state: SourceState,
    pub(super) detail: Option<String>,
    pub(super) connected_at: Option<DateTime<Utc>>,
    pub(super) next_retry_at: Option<DateTime<Utc>>,
}

impl Slot {
    pub(super) fn new(backoff: &BackoffConfig) -> Slot {
        Slot {
            generation: 0,
            phase: Phase::Idle,
            ready: false,
            after_drain: None,
            draining: None,
            policy: RestartPolicy::new(backoff.clone()),
            state: SourceState::Connecting,
            detail: None,
            connected_at: None,
            next_retry_at: None,
        }
    }

    pub(super) fn is_live(&self) -> bool {
        self.phase != Phase::Idle
    }

    pub(super) fn sockets(&self) -> usize {
        usize::from(self.phase == Phase::Running) + usize::from(self.draining.is_some())
    }
}
