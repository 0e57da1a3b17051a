//! Ingest before consumption. Storing what arrives is what may never fall behind (a sender waits,
//! a provider retries, a feed's backlog grows); runs already stored wait safely in the queue. So
//! while the inbox is saturated — a writer took a full batch, or a full batch was left waiting —
//! claims take turns process-wide: one claim at a time, at most one per [`CLAIM_PACE`], each
//! still taking up to its `limit` runs; a claim waits for its turn no longer than its own
//! deadline (at least [`TURN_WAIT`]), then goes ahead without one. Workers keep draining (up to `limit` × 1 s /
//! [`CLAIM_PACE`] runs per second per process) while the storage, CPU and connections the
//! claims and their completions would take go to ingest. Once no writer has been saturated for
//! [`QUIET_AFTER`], claims run freely again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::recently::Recently;

/// While the inbox is saturated, a claim starts at most this often (process-wide).
pub const CLAIM_PACE: Duration = Duration::from_millis(20);
/// The longest a claim waits for its turn beyond its own deadline (a claim with `wait_s: 0`).
pub const TURN_WAIT: Duration = Duration::from_millis(250);
/// The inbox counts as saturated for this long after a writer last was.
pub const QUIET_AFTER: Duration = Duration::from_millis(250);

/// Whether ingest is saturated, and the claims' turns while it is (cheap to clone).
#[derive(Clone)]
pub struct IngestFirst {
    /// When a writer was last saturated.
    saturated_at: Arc<Recently>,
    /// One claim at a time while saturated.
    turns: Arc<Semaphore>,
}

impl Default for IngestFirst {
    fn default() -> Self {
        IngestFirst {
            saturated_at: Arc::new(Recently::new()),
            turns: Arc::new(Semaphore::new(1)),
        }
    }
}

/// A claim's turn while ingest is saturated: the next claim may start [`CLAIM_PACE`] after this
/// one started, whenever this one ends.
pub struct ClaimTurn {
    permit: Option<OwnedSemaphorePermit>,
    started: Instant,
}

impl Drop for ClaimTurn {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let release_at = self.started + CLAIM_PACE;
        if Instant::now() >= release_at {
            return;
        }
        // Held for the rest of the pace, without holding up this claim's answer. Outside a
        // runtime (never in the service) the turn is simply released.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                tokio::time::sleep_until(release_at.into()).await;
                drop(permit);
            });
        }
    }
}

impl IngestFirst {
    /// Nothing saturated yet.
    pub fn new() -> IngestFirst {
        IngestFirst::default()
    }

    /// A writer took a full batch or left one waiting (called by the inbox writers).
    pub fn saturated(&self) {
        self.saturated_at.mark();
    }

    /// Whether a writer was saturated in the last [`QUIET_AFTER`].
    pub fn is_saturated(&self) -> bool {
        self.saturated_at.within(QUIET_AFTER)
    }

    /// Waits for a claim's turn while ingest is saturated (`None` at once when it is not); hold
    /// it while claiming. A claim waits for its turn until `until` at most (its own deadline, or
    /// [`TURN_WAIT`] from now for a claim that does not wait), then goes ahead without one
    /// (`None`): pacing never holds a claim past the time its worker waits for an answer.
    pub async fn claim_turn(&self, until: Instant) -> Option<ClaimTurn> {
        if !self.is_saturated() {
            return None;
        }
        let until = until.max(Instant::now() + TURN_WAIT);
        let acquire = self.turns.clone().acquire_owned();
        let permit = tokio::time::timeout_at(until.into(), acquire)
            .await
            .ok()?
            .ok()?;
        Some(ClaimTurn {
            permit: Some(permit),
            started: Instant::now(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn claims_run_freely_until_ingest_saturates_then_take_paced_turns() {
        let ingest = IngestFirst::new();
        let later = || Instant::now() + Duration::from_secs(5);
        assert!(
            ingest.claim_turn(later()).await.is_none(),
            "no turns while ingest keeps up"
        );
        ingest.saturated();
        let started = Instant::now();
        drop(ingest.claim_turn(later()).await.unwrap());
        drop(ingest.claim_turn(later()).await.unwrap());
        drop(ingest.claim_turn(later()).await.unwrap());
        assert!(
            started.elapsed() >= CLAIM_PACE * 2,
            "three turns span two paces: {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn claims_run_freely_again_once_ingest_is_quiet() {
        let ingest = IngestFirst::new();
        ingest.saturated();
        assert!(ingest.is_saturated());
        tokio::time::sleep(QUIET_AFTER + Duration::from_millis(20)).await;
        assert!(!ingest.is_saturated());
        assert!(ingest.claim_turn(Instant::now()).await.is_none());
    }

    #[tokio::test]
    async fn a_claim_waits_for_its_turn_no_longer_than_its_deadline() {
        let ingest = IngestFirst::new();
        ingest.saturated();
        let held = ingest.claim_turn(Instant::now()).await;
        assert!(held.is_some());
        let started = Instant::now();
        // The turn is taken: a claim that does not wait goes ahead after `TURN_WAIT`.
        assert!(ingest.claim_turn(Instant::now()).await.is_none());
        assert!(started.elapsed() >= TURN_WAIT);
        assert!(started.elapsed() < TURN_WAIT + Duration::from_secs(2));
    }
}
