//! Showing a source's status: the snapshot the API and the live stream see, and the one place a
//! status change is logged, written (off the actor's path; the writer keeps each source's last
//! state) and published.

use super::super::publisher::Published;
use super::super::runtime::{SourceRuntime, StatusWrite};
use super::super::spec::SourceSpec;
use super::board::Shown;
use crate::db::status::StateRecord;
use crate::sources::status::{ConnectionCounts, SourceCounters, StatusSnapshot};

/// The live status of a source from what its board shows and its counters.
pub fn snapshot(
    spec: &SourceSpec,
    shown: &Shown,
    counters: &SourceCounters,
    connections: ConnectionCounts,
) -> StatusSnapshot {
    StatusSnapshot {
        source_id: spec.id,
        state: shown.state,
        detail: shown.detail.clone(),
        connected_at: shown.connected_at,
        last_event_at: counters.last_event_at(),
        next_retry_at: shown.next_retry_at,
        consecutive_failures: shown.consecutive_failures,
        counters: counters.to_json(),
        connections: Some(connections),
    }
}

/// Logs, writes and publishes a status change of `spec`'s source.
pub fn show(
    rt: &SourceRuntime,
    spec: &SourceSpec,
    shown: &Shown,
    counters: &SourceCounters,
    connections: ConnectionCounts,
) {
    tracing::info!(source_id = %spec.id, state = shown.state.as_str(), detail = shown.detail.as_deref().unwrap_or(""), "source state");
    let record = StateRecord {
        state: shown.state.as_str().to_owned(),
        detail: shown.detail.clone(),
        connected_at: shown.connected_at,
        next_retry_at: shown.next_retry_at,
        consecutive_failures: i32::try_from(shown.consecutive_failures).unwrap_or(i32::MAX),
    };
    rt.status.write(StatusWrite::State(spec.id, record));
    if rt.publisher.has_subscribers() {
        let snapshot = snapshot(spec, shown, counters, connections);
        let message = Published::source_status(spec.org_id, &spec.slug, &snapshot);
        rt.publisher.publish(message);
    }
}

/// Writes the counters when they changed since they were last written.
pub fn flush_counters(rt: &SourceRuntime, spec: &SourceSpec, counters: &SourceCounters) {
    if counters.take_unwritten() {
        rt.status.write(StatusWrite::Counters(
            spec.id,
            counters.to_json(),
            counters.last_event_at(),
        ));
    }
}
