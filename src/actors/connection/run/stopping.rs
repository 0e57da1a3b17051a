//! A graceful stop under way: how long a stopping connection keeps reading.

use std::time::Duration;

use tokio::time::Instant;

/// How long the peer must have sent no data frame before a stopping connection closes.
pub(super) const QUIET: Duration = Duration::from_millis(150);

/// The longest a stopping connection keeps reading for (less when `close_timeout_ms` is less).
pub(super) const MAX_QUIET_WAIT: Duration = Duration::from_secs(1);

/// A stop under way.
pub(super) struct Stopping {
    pub(super) deadline: Instant,
    pub(super) last_data: Instant,
    pub(super) until_peer_closes: bool,
}

impl Stopping {
    /// When the loop ends, unless the peer closes first.
    pub(super) fn quiet_at(&self) -> Instant {
        if self.until_peer_closes {
            return self.deadline;
        }
        (self.last_data + QUIET).min(self.deadline)
    }
}
