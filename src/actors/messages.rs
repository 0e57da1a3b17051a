//! Every message of the source actors. The API sends the supervisor's commands; source actors
//! report to the supervisor; the supervisor commands its children. Nobody but the supervisor holds
//! a child's address.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use uuid::Uuid;

use super::policy::FailureClass;
use super::spec::SourceSpec;
use super::status::StatusSnapshot;

/// API → supervisor: drop the current connection and connect again now, resetting the backoff.
/// Also brings a `failed` or `paused` source back. Answers whether the source is known.
#[derive(Message, Debug)]
#[rtype(result = "bool")]
pub struct Reconnect {
    /// The source.
    pub source_id: Uuid,
}

/// API → supervisor: a new committed spec (create, change, enable, disable). Older revisions than
/// the one running are ignored. Answers nothing.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Update {
    /// The spec, with its revision.
    pub spec: Arc<SourceSpec>,
}

/// API → supervisor: the source was deleted; close its connection and forget it.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Remove {
    /// The source.
    pub source_id: Uuid,
}

/// API → supervisor: close the connection and do not reconnect until `Resume`. Answers whether
/// the source is known.
#[derive(Message, Debug)]
#[rtype(result = "bool")]
pub struct Pause {
    /// The source.
    pub source_id: Uuid,
}

/// API → supervisor: connect a paused source again. Answers whether the source is known.
#[derive(Message, Debug)]
#[rtype(result = "bool")]
pub struct Resume {
    /// The source.
    pub source_id: Uuid,
}

/// Why a `Send` could not be delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The supervisor has no such source.
    #[error("no such source")]
    Unknown,
    /// The source has no ready connection right now.
    #[error("the source is not connected")]
    NotConnected,
}

/// API → supervisor → source actor: send one text frame on the ready connection.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), SendError>")]
pub struct Send {
    /// The source.
    pub source_id: Uuid,
    /// The frame's text.
    pub text: String,
}

/// API → supervisor: the live status of these sources (those this process runs).
#[derive(Message, Debug)]
#[rtype(result = "Vec<StatusSnapshot>")]
pub struct GetStatus {
    /// The sources.
    pub source_ids: Vec<Uuid>,
}

/// Metrics endpoint → supervisor: every source's slug, state, socket count and counters.
#[derive(Message, Debug)]
#[rtype(result = "Vec<crate::metrics::SourceSample>")]
pub struct CollectMetrics;

/// Application → supervisor: close every connection gracefully (finishing in-flight persists and
/// ACKs) within `timeout`, then answer.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Shutdown {
    /// Upper bound for the whole shutdown.
    pub timeout: Duration,
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// Closed on purpose (stop, pause, update, shutdown).
    Stopped,
    /// A transient failure: retry with backoff.
    Transient(String),
    /// A terminal failure: stop retrying (401/403 on upgrade, `fail_expr`, refused destination).
    Terminal(String),
    /// The peer asked us to slow down.
    RateLimited {
        /// What happened.
        detail: String,
        /// Wait at least this long.
        retry_after: Duration,
    },
    /// The peer refuses more connections for now (Slack `too_many_websockets`).
    Throttled {
        /// What happened.
        detail: String,
        /// Wait at least this long (jitter comes on top).
        min_delay: Duration,
    },
}

impl DownReason {
    /// The report for a failure the restart policy classified, with its detail.
    pub fn from_class(class: FailureClass, detail: String) -> DownReason {
        match class {
            FailureClass::Transient => DownReason::Transient(detail),
            FailureClass::Terminal { reason } => DownReason::Terminal(reason),
            FailureClass::RateLimited { retry_after } => DownReason::RateLimited {
                detail,
                retry_after,
            },
            FailureClass::Throttled { min_delay } => DownReason::Throttled { detail, min_delay },
        }
    }

    /// How the restart policy treats it (a stop is retried like a transient failure).
    pub fn class(&self) -> FailureClass {
        match self {
            Self::Terminal(reason) => FailureClass::Terminal {
                reason: reason.clone(),
            },
            Self::RateLimited { retry_after, .. } => FailureClass::RateLimited {
                retry_after: *retry_after,
            },
            Self::Throttled { min_delay, .. } => FailureClass::Throttled {
                min_delay: *min_delay,
            },
            Self::Stopped | Self::Transient(_) => FailureClass::Transient,
        }
    }

    /// The human-readable detail.
    pub fn detail(&self) -> &str {
        match self {
            Self::Stopped => "stopped",
            Self::Transient(d) | Self::Terminal(d) => d,
            Self::RateLimited { detail, .. } | Self::Throttled { detail, .. } => detail,
        }
    }
}

/// Source actor → supervisor: the connection of `generation` ended (sent exactly once per
/// generation). Reports of an older generation are ignored.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct SourceDown {
    /// The source.
    pub source_id: Uuid,
    /// The child's generation.
    pub generation: u64,
    /// Why.
    pub reason: DownReason,
    /// How long the connection was up.
    pub uptime: Duration,
}

/// Source actor → supervisor: the connection of `generation` is ready (connected, handshake done).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct SourceReady {
    /// The source.
    pub source_id: Uuid,
    /// The child's generation.
    pub generation: u64,
    /// Connections the peer counts for this source's credentials (Slack `hello`), when it says.
    pub num_connections: Option<u32>,
}

/// Source actor → supervisor: the connection of `generation` should be replaced: it reached
/// `max_connection_age_s`, Slack asked for a refresh (`disconnect` `warning`/`refresh_requested`)
/// or its proactive refresh is due. Start a replacement and close this one once the replacement is
/// ready (make-before-break). A rotation is routine: it never counts as a failure.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct RotateDue {
    /// The source.
    pub source_id: Uuid,
    /// The aging child's generation.
    pub generation: u64,
}

/// Supervisor → source actor: close gracefully and stop.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct StopSource;

/// Supervisor → source actor: a ready replacement took over from this connection
/// (make-before-break). It drains as [`connection::Command::Retire`](super::connection::Command)
/// says: until the peer closes it when the peer asked for the refresh, else at once.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct RetireSource;

/// Supervisor → source actor: a new spec whose connection settings are unchanged (expressions
/// only): apply it to the next message, without reconnecting.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct SwapSpec {
    /// The new spec.
    pub spec: Arc<SourceSpec>,
}

/// Supervisor → source actor: send a frame (answers `NotConnected` when not ready).
#[derive(Message, Debug)]
#[rtype(result = "Result<(), SendError>")]
pub struct SendFrame {
    /// The frame's text.
    pub text: String,
}
