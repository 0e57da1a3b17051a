//! The commands of the source actors: the API sends them to the [`SourceSupervisor`], which routes
//! each to the [`SourceActor`] of its source (the same message, unchanged) or answers it itself
//! for a source that has none running (disabled, or stopped after too many restarts).
//!
//! [`SourceSupervisor`]: super::supervisor::SourceSupervisor
//! [`SourceActor`]: super::source::SourceActor

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use uuid::Uuid;

use super::spec::SourceSpec;
use crate::metrics::SourceSample;
use crate::sources::status::StatusSnapshot;

/// API → supervisor → source actor: drop the current connections and connect again now, resetting
/// the backoff. Also brings a `failed` or `paused` source back. Answers whether the source is
/// known (the supervisor answers `false` for a source it does not know).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "bool")]
pub struct Reconnect {
    /// The source.
    pub source_id: Uuid,
}

/// API → supervisor → source actor: a new committed spec (create, change, enable, disable).
/// Revisions older than the one in force are ignored. The supervisor starts a source actor for a
/// newly enabled source and shuts it down for a disabled one; the source actor applies the rest
/// (expressions only: in place, without reconnecting; anything else: reconnect). Answers nothing.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Update {
    /// The spec, with its revision.
    pub spec: Arc<SourceSpec>,
}

/// API → supervisor: the source was deleted; shut its source actor down and forget it. Answers
/// nothing.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Remove {
    /// The source.
    pub source_id: Uuid,
}

/// API → supervisor → source actor: close the connections and do not reconnect until `Resume` or
/// `Reconnect`. Answers whether the source is known.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "bool")]
pub struct Pause {
    /// The source.
    pub source_id: Uuid,
}

/// API → supervisor → source actor: connect a paused (or failed) source again. Answers whether
/// the source is known.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "bool")]
pub struct Resume {
    /// The source.
    pub source_id: Uuid,
}

/// Why a [`SendFrame`] could not be delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The supervisor has no such source.
    #[error("no such source")]
    Unknown,
    /// The source has no ready connection right now.
    #[error("the source is not connected")]
    NotConnected,
}

/// API → supervisor → source actor → its ready connection: send one text frame. Answers once the
/// frame is written, or why it was not.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), SendError>")]
pub struct SendFrame {
    /// The source.
    pub source_id: Uuid,
    /// The frame's text.
    pub text: String,
}

/// API → supervisor: the live status of these sources (those this process knows). The supervisor
/// asks each source actor with [`GetSnapshot`] and answers with the snapshots it got.
#[derive(Message, Debug)]
#[rtype(result = "Vec<StatusSnapshot>")]
pub struct GetStatus {
    /// The sources.
    pub source_ids: Vec<Uuid>,
}

/// Supervisor → source actor: its live status. Answers the snapshot.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "StatusSnapshot")]
pub struct GetSnapshot;

/// Metrics endpoint → supervisor: every source's slug, state, socket count and counters. The
/// supervisor asks each source actor with [`GetSample`].
#[derive(Message, Debug)]
#[rtype(result = "Vec<SourceSample>")]
pub struct CollectMetrics;

/// Supervisor → source actor: its metrics sample. Answers the sample.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "SourceSample")]
pub struct GetSample;

/// Application → supervisor (for every source), supervisor → source actor (for one): close every
/// connection gracefully (finishing in-flight persists and ACKs) within `timeout`, write the
/// counters, then answer. A source actor stops once it answered.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Shutdown {
    /// Upper bound for the whole shutdown.
    pub timeout: Duration,
    /// The state the source shows once its actor is gone (`disabled` when the source was
    /// disabled), written as the actor's last status; `None` leaves the status as it was
    /// (the process stops, or the source was deleted).
    pub farewell: Option<crate::sources::status::SourceState>,
}

impl Shutdown {
    /// How long a source actor that is shut down outside process exit (a source disabled or
    /// deleted) may take to close its connections.
    pub const ON_CHANGE: Duration = Duration::from_secs(5);
}

/// Cluster coordinator → supervisor: this replica now holds the source's lease (or its previous
/// holder confirmed that it closed): start its actor when the source is enabled and none runs.
/// On a single node every source is held from the start and this is never sent. Answers whether
/// the supervisor knows the source (a source created on another replica may not have reached it
/// yet: the coordinator asks again at its next turn).
#[derive(Message, Debug, Clone)]
#[rtype(result = "bool")]
pub struct Hold {
    /// The source.
    pub source_id: Uuid,
    /// What its previous holder left it holding (an operator's pause, a terminal failure): the
    /// source starts held so, as it would have stayed.
    pub kept: Option<(crate::sources::status::SourceState, Option<String>)>,
}

/// Cluster coordinator → supervisor: this replica no longer holds the source (it handed it over,
/// its lease lapsed, or the replica is stopping): close its connections within `within` and stop
/// its actor, leaving its status to the new holder. Answers once the actor has stopped (or a
/// second after `within`).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct LetGo {
    /// The source.
    pub source_id: Uuid,
    /// How long the connections may take to close (finishing in-flight writes and ACKs):
    /// [`Shutdown::ON_CHANGE`] for a hand-over, a second when the replica fences itself (its
    /// lease may be taken soon, and storage is likely unreachable anyway).
    pub within: Duration,
}
