//! Wakes claims waiting for work (`POST /v1/runs/claim` with `wait_s`) when runs may have become
//! claimable: the dispatch commit path, the watchdog and the retry endpoints call
//! [`RunNotifier::signal`] after their commit. Waiters in this process wake at once; with replicas,
//! the signal is also announced to the others through PostgreSQL `NOTIFY` (coalesced: one
//! announcement covers every signal raised while the previous one was sent), whose listener calls
//! [`RunNotifier::wake_local`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// The wake-up signal shared by committers and waiting claims (cheap to clone).
#[derive(Clone, Default)]
pub struct RunNotifier {
    notify: Arc<Notify>,
    /// Raised at every signal; the cluster's announcer waits on it.
    outbound: Arc<Notify>,
}

impl RunNotifier {
    /// A notifier nobody waits on yet.
    pub fn new() -> RunNotifier {
        RunNotifier::default()
    }

    /// Runs may have become claimable: wakes every waiting claim, here and (with replicas) on the
    /// other replicas.
    pub fn signal(&self) {
        self.notify.notify_waiters();
        self.outbound.notify_one();
    }

    /// Runs committed by another replica: wakes the claims waiting here only.
    pub fn wake_local(&self) {
        self.notify.notify_waiters();
    }

    /// Resolves at the next [`RunNotifier::signal`] (or at once when one was raised since the
    /// last call): the announcer to other replicas waits here.
    pub async fn signalled(&self) {
        self.outbound.notified().await;
    }

    /// Waits for the next signal, at most `timeout`. Create the waiter with
    /// [`RunNotifier::waiter`] *before* looking for work, so a signal sent in between is not lost.
    pub async fn wait(
        waiter: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
        timeout: Duration,
    ) {
        let _ = tokio::time::timeout(timeout, waiter).await;
    }

    /// A registered waiter for the next signal.
    pub fn waiter(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_signal_after_registration_is_not_lost() {
        let n = RunNotifier::new();
        let waiter = n.waiter();
        tokio::pin!(waiter);
        waiter.as_mut().enable();
        n.signal();
        let started = std::time::Instant::now();
        RunNotifier::wait(waiter, Duration::from_secs(5)).await;
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
