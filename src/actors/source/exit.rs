//! How the supervisor learns that a source actor is gone, however it went: a [`SourceExited`]
//! sent from the actor's `Drop`, which runs on a clean stop, on an error exit and while a panic
//! unwinds alike.

use actix::prelude::*;
use uuid::Uuid;

/// Source actor → supervisor (sent when the actor is dropped): the source actor of this
/// incarnation is gone. `clean`: it was shut down on purpose; otherwise the supervisor restarts it
/// (within its restart intensity). Answers nothing.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct SourceExited {
    /// The source.
    pub source_id: Uuid,
    /// Which start of its actor this was (the supervisor counts them).
    pub incarnation: u64,
    /// Whether the actor was shut down on purpose.
    pub clean: bool,
}

/// Sends [`SourceExited`] when dropped.
pub struct ExitNotice {
    to: Recipient<SourceExited>,
    source_id: Uuid,
    incarnation: u64,
    clean: bool,
}

impl ExitNotice {
    /// A notice for this incarnation of the source's actor.
    pub fn new(to: Recipient<SourceExited>, source_id: Uuid, incarnation: u64) -> ExitNotice {
        ExitNotice {
            to,
            source_id,
            incarnation,
            clean: false,
        }
    }

    /// The actor is being shut down on purpose.
    pub fn mark_clean(&mut self) {
        self.clean = true;
    }
}

impl Drop for ExitNotice {
    fn drop(&mut self) {
        self.to.do_send(SourceExited {
            source_id: self.source_id,
            incarnation: self.incarnation,
            clean: self.clean,
        });
    }
}
