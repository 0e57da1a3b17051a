//! What a connection actor reports to its source actor (the only holder of its address), and how
//! a connection ended.

use std::time::Duration;

use actix::prelude::*;

use crate::sources::failure::FailureClass;

/// Connection actor → its source actor: the connection of `generation` is ready (connected,
/// handshake done). Sent at most once per connection; answers nothing.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct ConnectionReady {
    /// The connection's generation.
    pub generation: u64,
    /// Connections the peer counts for this source's credentials (Slack `hello`), when it says.
    pub num_connections: Option<u32>,
}

/// Connection actor → its source actor: the connection of `generation` ended. Sent exactly once
/// per connection; answers nothing. Reports of a generation the source no longer runs are ignored.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct ConnectionEnded {
    /// The connection's generation.
    pub generation: u64,
    /// Why.
    pub reason: DownReason,
}

/// Connection actor → its source actor: the connection of `generation` should be replaced: it
/// reached `max_connection_age_s`, Slack asked for a refresh (`disconnect` `warning` /
/// `refresh_requested`) or its proactive refresh is due. The source starts a replacement and
/// retires this one once the replacement is ready (make-before-break). A replacement is routine:
/// it never counts as a failure. Sent at most once per connection; answers nothing.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct ReplacementDue {
    /// The aging connection's generation.
    pub generation: u64,
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
