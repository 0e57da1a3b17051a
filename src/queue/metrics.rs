//! The run queue's Prometheus instruments: claims (wait, event-to-claim latency), outcomes by
//! status, run duration, lease expiries, retries, schedule ticks and open runs by status. Registered into the
//! application's registry by [`crate::metrics::Metrics::new`].

use std::time::Duration;

use entity::automation_run;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::db::statuses::RunStatus;

/// Queue instruments (lock-free atomics).
#[derive(Debug)]
pub struct QueueMetrics {
    /// How long a claim call took, waiting included (seconds).
    pub claim_wait: Histogram,
    /// From an event's arrival to its run being claimed, first attempts only (seconds).
    pub event_to_claim: Histogram,
    /// From a claim to its run's completion or failure (seconds).
    pub run_duration: Histogram,
    /// Runs claimed.
    pub claimed: Counter,
    /// Attempts that ended, by the status they led to (`SUCCEEDED`, `FAILED`, `PENDING` = retry).
    pub finished: Family<Vec<(&'static str, &'static str)>, Counter>,
    /// Leases that expired (the watchdog re-queued or failed the run).
    pub lease_expiries: Counter,
    /// Attempts re-queued for another try (after a failure, an expiry or by hand).
    pub retries: Counter,
    /// Schedule ticks that created a run.
    pub schedule_ticks: Counter,
    /// Runs PENDING and RUNNING, counted at scrape time ([`QueueMetrics::set_open_runs`]).
    pub runs: Family<Vec<(&'static str, &'static str)>, Gauge>,
}

fn seconds() -> Histogram {
    // 0.25 ms … ~2 h.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 25))
}

impl QueueMetrics {
    /// Creates the instruments and registers them.
    pub fn register(registry: &mut Registry) -> QueueMetrics {
        let m = QueueMetrics {
            claim_wait: seconds(),
            event_to_claim: seconds(),
            run_duration: seconds(),
            claimed: Counter::default(),
            finished: Family::default(),
            lease_expiries: Counter::default(),
            retries: Counter::default(),
            schedule_ticks: Counter::default(),
            runs: Family::default(),
        };
        registry.register(
            "switchboard_claim_wait_seconds",
            "How long POST /v1/runs/claim took, long-poll wait included.",
            m.claim_wait.clone(),
        );
        registry.register(
            "switchboard_event_to_claim_seconds",
            "From an event's arrival to the first claim of its run.",
            m.event_to_claim.clone(),
        );
        registry.register(
            "switchboard_run_duration_seconds",
            "From a run's claim to its completion or failure.",
            m.run_duration.clone(),
        );
        registry.register(
            "switchboard_runs_claimed",
            "Runs claimed by workers.",
            m.claimed.clone(),
        );
        registry.register(
            "switchboard_run_attempts_finished",
            "Attempts that ended, by the status they led to (PENDING: retried).",
            m.finished.clone(),
        );
        registry.register(
            "switchboard_lease_expiries",
            "Leases that expired before the worker finished.",
            m.lease_expiries.clone(),
        );
        registry.register(
            "switchboard_run_retries",
            "Attempts re-queued for another try (failure, expiry or by hand).",
            m.retries.clone(),
        );
        registry.register(
            "switchboard_schedule_ticks",
            "Schedule ticks that created a run.",
            m.schedule_ticks.clone(),
        );
        registry.register(
            "switchboard_runs_by_status",
            "Runs waiting (PENDING) and under a lease (RUNNING) at scrape time, all orgs.",
            m.runs.clone(),
        );
        m
    }

    /// Sets the `switchboard_runs_by_status` gauge from counts by status.
    pub fn set_open_runs(&self, counts: &[(RunStatus, i64)]) {
        for (status, n) in counts {
            self.runs
                .get_or_create(&vec![("status", status.as_str())])
                .set(*n);
        }
    }

    /// Observes a claim call and what it claimed.
    pub fn observe_claim(&self, took: Duration, rows: &[automation_run::Model]) {
        self.claim_wait.observe(took.as_secs_f64());
        self.claimed.inc_by(rows.len() as u64);
        let now = chrono::Utc::now();
        // First attempts of runs claimable since they were created (not retried by hand, not
        // backed off) and created with their event (not by a replay long after it).
        let fresh = |r: &&automation_run::Model| {
            r.attempts == 1 && r.available_at.is_none_or(|at| at == r.created_at)
        };
        for row in rows.iter().filter(fresh) {
            // The run id carries its event's arrival time (UUID v7).
            let Some(ts) = row.id.get_timestamp() else {
                continue;
            };
            let (secs, nanos) = ts.to_unix();
            let Some(at) = chrono::DateTime::from_timestamp(secs as i64, nanos) else {
                continue;
            };
            if row.created_at - at > chrono::Duration::seconds(60) {
                continue;
            }
            let latency = (now - at).to_std().unwrap_or_default();
            self.event_to_claim.observe(latency.as_secs_f64());
        }
    }

    /// Observes an attempt that ended in `status` (the row as it was while RUNNING).
    pub fn observe_finish(&self, status: RunStatus, row: Option<&automation_run::Model>) {
        self.finished
            .get_or_create(&vec![("status", status.as_str())])
            .inc();
        if status == RunStatus::Pending {
            self.retries.inc();
        }
        if let Some(started) = row.and_then(|r| r.started_at) {
            let took = (chrono::Utc::now() - started).to_std().unwrap_or_default();
            self.run_duration.observe(took.as_secs_f64());
        }
    }
}
