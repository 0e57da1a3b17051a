//! How a connection failure is classified: the vocabulary the protocol adapters answer in and the
//! restart policy decides on.

use std::time::Duration;

/// Why a connection went down, as classified by the source actor or its adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureClass {
    /// Network error, timeout, close by the peer: retry with backoff.
    Transient,
    /// Retrying cannot help (HTTP 401/403 on upgrade, Slack `invalid_auth`, a `fail_expr` match).
    Terminal {
        /// What the user should fix, shown in the source status.
        reason: String,
    },
    /// The peer asked us to wait (HTTP 429 with `Retry-After`).
    RateLimited {
        /// The peer's `Retry-After`; the next attempt never comes sooner.
        retry_after: Duration,
    },
    /// The peer refuses more connections for now (Slack `too_many_websockets`: at least 30 s).
    Throttled {
        /// Minimum wait before the next attempt; jitter is added on top.
        min_delay: Duration,
    },
}
