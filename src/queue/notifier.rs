//! Wakes claims waiting for work (`POST /v1/runs/claim` with `wait_s`) when runs may have become
//! claimable: the dispatch commit path, the watchdog, the scheduler, fails back to PENDING and the
//! retry endpoint call [`RunNotifier::signal`] after their commit. Waiters in this process wake at
//! once; with replicas, the signal is also announced to the others through PostgreSQL `NOTIFY`
//! (coalesced: one announcement covers every signal raised while the previous one was sent), whose
//! listener calls [`RunNotifier::wake_local`].
//!
//! **Who wakes.** Waiting claims are kept per org, in two groups. A claim that takes any run of its
//! org (no `automation_ids`, no `sources`) is *open*: a signal wakes one open claim per org, the
//! longest waiting, and a woken claim that filled its `limit` passes the wake on to the next
//! ([`Waiters::pass_on`]), since more runs may be waiting. Every open claim would take the same
//! runs, so waking them all would only make the others look and find nothing (on SQLite, each
//! look takes the one write turn the inbox needs too). A *filtered* claim may want runs the open
//! ones leave: every filtered claim wakes at every signal.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use uuid::Uuid;

/// The claims of one org that wait for work.
#[derive(Default)]
pub struct Waiters {
    /// Claims of any run of the org: one wakes per signal.
    open: Notify,
    /// Claims limited to some automations or sources: all wake at every signal.
    filtered: Notify,
}

impl Waiters {
    /// A registered waiter for the next signal; `filtered` for a claim limited to some automations
    /// or sources. Create it (and `enable` it) *before* looking for work, so a signal sent in
    /// between is not lost.
    pub fn waiter(&self, filtered: bool) -> tokio::sync::futures::Notified<'_> {
        if filtered {
            self.filtered.notified()
        } else {
            self.open.notified()
        }
    }

    /// An open claim woke and took a full page: more runs may be waiting, for the next open claim.
    pub fn pass_on(&self) {
        self.open.notify_one();
    }

    /// A guard, disarmed, that passes a wake-up on when it is dropped armed: a claim arms it
    /// once its wait ended (it may hold the wake-up for new runs) and disarms it once it looked.
    /// A claim dropped in between (its client gone, an error) does not swallow the wake-up.
    pub fn wake_guard(&self) -> WakeGuard<'_> {
        WakeGuard {
            waiters: self,
            armed: false,
        }
    }

    fn wake(&self) {
        self.open.notify_one();
        self.filtered.notify_waiters();
    }

    fn wake_all(&self) {
        self.open.notify_waiters();
        self.filtered.notify_waiters();
    }
}

/// See [`Waiters::wake_guard`].
pub struct WakeGuard<'a> {
    waiters: &'a Waiters,
    armed: bool,
}

impl WakeGuard<'_> {
    /// The claim may hold a wake-up from now on.
    pub fn arm(&mut self) {
        self.armed = true;
    }

    /// The claim has looked for runs.
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for WakeGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.waiters.pass_on();
        }
    }
}

/// The wake-up signal shared by committers and waiting claims (cheap to clone).
#[derive(Clone, Default)]
pub struct RunNotifier {
    /// Per org, the claims waiting; an org's entry is made by its first waiting claim and kept.
    orgs: Arc<Mutex<HashMap<Uuid, Arc<Waiters>>>>,
    /// Raised at every signal; the cluster's announcer waits on it.
    outbound: Arc<Notify>,
    /// The service is stopping: claims answer at once instead of waiting.
    closing: Arc<AtomicBool>,
    /// Whether ingest is saturated, and the claims' turns while it is.
    ingest: super::ingest_first::IngestFirst,
}

impl RunNotifier {
    /// A notifier nobody waits on yet.
    pub fn new() -> RunNotifier {
        RunNotifier::default()
    }

    /// Runs may have become claimable: wakes waiting claims (see the module's docs), here and
    /// (with replicas) on the other replicas.
    pub fn signal(&self) {
        self.wake_local();
        self.outbound.notify_one();
    }

    /// Runs committed by another replica: wakes the claims waiting here only.
    pub fn wake_local(&self) {
        for waiters in self.all() {
            waiters.wake();
        }
    }

    /// The service is stopping (a stop signal, a drain): every waiting claim answers now with
    /// what it has (usually nothing) instead of holding the graceful stop for up to `wait_s`,
    /// and claims from now on do not wait.
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        for waiters in self.all() {
            waiters.wake_all();
        }
    }

    /// Ingest's priority over claims: the inbox writers report saturation here, claims take
    /// their turns here.
    pub fn ingest(&self) -> &super::ingest_first::IngestFirst {
        &self.ingest
    }

    /// Whether [`RunNotifier::close`] was called.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    fn all(&self) -> Vec<Arc<Waiters>> {
        match self.orgs.lock() {
            Ok(orgs) => orgs.values().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().values().cloned().collect(),
        }
    }

    /// Resolves at the next [`RunNotifier::signal`] (or at once when one was raised since the
    /// last call): the announcer to other replicas waits here.
    pub async fn signalled(&self) {
        self.outbound.notified().await;
    }

    /// The waiting claims of `org`.
    pub fn waiters(&self, org: Uuid) -> Arc<Waiters> {
        let mut orgs = match self.orgs.lock() {
            Ok(orgs) => orgs,
            Err(poisoned) => poisoned.into_inner(),
        };
        orgs.entry(org).or_default().clone()
    }

    /// Waits for the next signal, at most `timeout`.
    pub async fn wait(
        waiter: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
        timeout: Duration,
    ) {
        let _ = tokio::time::timeout(timeout, waiter).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SOON: Duration = Duration::from_millis(200);

    /// Whether `waiter` (registered) resolves within [`SOON`].
    async fn woke(waiter: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>) -> bool {
        tokio::time::timeout(SOON, waiter).await.is_ok()
    }

    #[tokio::test]
    async fn a_signal_after_registration_is_not_lost() {
        let n = RunNotifier::new();
        let waiters = n.waiters(Uuid::from_u128(1));
        let waiter = waiters.waiter(false);
        tokio::pin!(waiter);
        waiter.as_mut().enable();
        n.signal();
        assert!(woke(waiter).await);
    }

    #[tokio::test]
    async fn one_open_claim_wakes_per_signal_and_every_filtered_one() {
        let n = RunNotifier::new();
        let (org, other) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let (w, o) = (n.waiters(org), n.waiters(other));
        let open_a = w.waiter(false);
        let open_b = w.waiter(false);
        let filtered_a = w.waiter(true);
        let filtered_b = w.waiter(true);
        let other_org = o.waiter(false);
        tokio::pin!(open_a, open_b, filtered_a, filtered_b, other_org);
        for waiter in [
            open_a.as_mut(),
            open_b.as_mut(),
            filtered_a.as_mut(),
            filtered_b.as_mut(),
            other_org.as_mut(),
        ] {
            waiter.enable();
        }
        n.signal();
        assert!(
            woke(open_a.as_mut()).await,
            "the longest waiting open claim"
        );
        assert!(woke(filtered_a).await && woke(filtered_b).await);
        assert!(woke(other_org).await, "each org's own open claim");
        assert!(!woke(open_b.as_mut()).await, "one open claim per signal");
        // The first took a full page: it passes the wake on.
        w.pass_on();
        assert!(woke(open_b).await);
    }

    #[tokio::test]
    async fn a_guard_dropped_armed_passes_the_wake_on() {
        let n = RunNotifier::new();
        let w = n.waiters(Uuid::from_u128(1));
        let next = w.waiter(false);
        tokio::pin!(next);
        next.as_mut().enable();
        drop(w.wake_guard());
        assert!(
            !woke(next.as_mut()).await,
            "a disarmed guard passes nothing on"
        );
        let mut guard = w.wake_guard();
        guard.arm();
        drop(guard);
        assert!(woke(next).await);
    }

    #[tokio::test]
    async fn closing_wakes_every_waiting_claim() {
        let n = RunNotifier::new();
        let w = n.waiters(Uuid::from_u128(1));
        let (a, b) = (w.waiter(false), w.waiter(false));
        tokio::pin!(a, b);
        a.as_mut().enable();
        b.as_mut().enable();
        assert!(!n.is_closing());
        n.close();
        assert!(n.is_closing());
        assert!(woke(a).await && woke(b).await);
    }
}
