//! Prometheus metrics (`GET /metrics`, text exposition format). Two kinds:
//!
//! - instruments updated where things happen (histograms of ACK latency, ingest-to-run latency,
//!   dispatch batch size and database write latency; counters of runs created, reconnects by
//!   reason and terminal failures; the live connection gauge) — all lock-free atomics;
//! - values read at scrape time from what the service already counts (per-source counters and
//!   states from the supervisor, webhook outcomes), so the receive path pays nothing for them.
//!
//! The only unbounded label is the source slug, and only the first [`MAX_SOURCE_LABELS`] slugs
//! (in order) get their own series; the rest are summed under `source="other"`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::sources::status::SourceState;

/// Sources with their own `source` label value; the rest are `other`.
pub const MAX_SOURCE_LABELS: usize = 200;

/// Per-source counters exported (status counter name → metric name and help). Error kinds are
/// exported as one family with a `kind` label.
const SOURCE_COUNTERS: &[(&str, &str, &str)] = &[
    (
        "frames",
        "switchboard_frames_received",
        "Data frames received from sources.",
    ),
    (
        "events_stored",
        "switchboard_events_stored",
        "Events committed to the inbox.",
    ),
    (
        "duplicates",
        "switchboard_duplicates",
        "Messages whose dedup key was already stored (ACKed, not stored again).",
    ),
    (
        "filtered",
        "switchboard_prefiltered",
        "Messages the source's pre-filter rejected.",
    ),
    (
        "no_key",
        "switchboard_events_without_key",
        "Events stored without an event key (no automation's `on` can match them).",
    ),
    ("acks", "switchboard_acks", "ACK frames sent after commit."),
];

/// Status counter names exported as `switchboard_source_errors_total{kind=…}`.
const ERROR_KINDS: &[(&str, &str)] = &[
    ("storage_errors", "storage"),
    ("expression_errors", "expression"),
    ("oversized", "oversized"),
    ("non_json", "non_json"),
    ("ignored", "ignored"),
    ("rejected", "rejected"),
];

/// Every state, so each has a series (zero included).
const STATES: [SourceState; 7] = [
    SourceState::Disabled,
    SourceState::Connecting,
    SourceState::Connected,
    SourceState::Backoff,
    SourceState::Failing,
    SourceState::Paused,
    SourceState::Failed,
];

/// Why a connection was replaced, for `switchboard_reconnects_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconnectReason {
    /// A network error, timeout or close: retried with backoff.
    Transient,
    /// The peer asked to wait (HTTP 429, Slack `ratelimited`).
    RateLimited,
    /// The peer refused more connections (Slack `too_many_websockets`).
    Throttled,
    /// A routine make-before-break replacement (Slack refresh, `max_connection_age_s`).
    Refresh,
    /// An operator's `reconnect`.
    Operator,
}

impl ReconnectReason {
    fn label(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::RateLimited => "rate_limited",
            Self::Throttled => "throttled",
            Self::Refresh => "refresh",
            Self::Operator => "operator",
        }
    }
}

/// One source as the supervisor sees it at scrape time.
#[derive(Debug, Clone)]
pub struct SourceSample {
    /// Its slug (the `source` label).
    pub slug: String,
    /// Its state.
    pub state: SourceState,
    /// Sockets it holds right now.
    pub connections: u64,
    /// Its status counters (`frames`, `events_stored`, …).
    pub counters: serde_json::Value,
}

/// The metrics of one running application.
pub struct Metrics {
    registry: Registry,
    /// Message received → its ACK frame written (seconds).
    pub ack_latency: Histogram,
    /// Event received → its runs committed (seconds).
    pub ingest_to_run: Histogram,
    /// Events per dispatch transaction.
    pub dispatch_batch: Histogram,
    /// Inbox inserts (`op="events"`) and dispatch commits (`op="dispatch"`), seconds.
    pub db_write: Family<Vec<(&'static str, &'static str)>, Histogram>,
    /// Runs created.
    pub runs_created: Counter,
    /// Connections replaced, by reason.
    pub reconnects: Family<Vec<(&'static str, &'static str)>, Counter>,
    /// Sources that went `failed`.
    pub terminal_failures: Counter,
    /// The run queue's instruments.
    pub queue: crate::queue::metrics::QueueMetrics,
    scraped: std::sync::Arc<ScrapeValues>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Metrics {
    /// Fresh metrics (all zero).
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let ack_latency = latency_histogram();
        let ingest_to_run = latency_histogram();
        let dispatch_batch = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        let db_write = Family::<Vec<(&'static str, &'static str)>, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let runs_created = Counter::default();
        let reconnects = Family::<Vec<(&'static str, &'static str)>, Counter>::default();
        let terminal_failures = Counter::default();
        registry.register(
            "switchboard_ack_latency_seconds",
            "From a message's arrival to its ACK frame being written (sent only after commit).",
            ack_latency.clone(),
        );
        registry.register(
            "switchboard_ingest_to_run_seconds",
            "From an event's arrival to the commit of its runs.",
            ingest_to_run.clone(),
        );
        registry.register(
            "switchboard_dispatch_batch_events",
            "Events per dispatch transaction.",
            dispatch_batch.clone(),
        );
        registry.register(
            "switchboard_db_write_seconds",
            "Database write latency: inbox inserts (op=events) and dispatch commits (op=dispatch).",
            db_write.clone(),
        );
        registry.register(
            "switchboard_runs_created",
            "Runs created.",
            runs_created.clone(),
        );
        registry.register(
            "switchboard_reconnects",
            "Connections replaced, by reason (transient, rate_limited, throttled, refresh, operator).",
            reconnects.clone(),
        );
        registry.register(
            "switchboard_terminal_failures",
            "Sources that went failed (retrying could not help).",
            terminal_failures.clone(),
        );
        let queue = crate::queue::metrics::QueueMetrics::register(&mut registry);
        let scraped = std::sync::Arc::new(ScrapeValues::default());
        registry.register_collector(Box::new(scraped.clone()));
        Metrics {
            registry,
            ack_latency,
            ingest_to_run,
            dispatch_batch,
            db_write,
            runs_created,
            reconnects,
            terminal_failures,
            queue,
            scraped,
        }
    }

    /// Counts a replaced connection.
    pub fn reconnected(&self, reason: ReconnectReason) {
        self.reconnects
            .get_or_create(&vec![("reason", reason.label())])
            .inc();
    }

    /// Observes a database write.
    pub fn db_write(&self, op: &'static str, took: Duration) {
        self.db_write
            .get_or_create(&vec![("op", op)])
            .observe(took.as_secs_f64());
    }

    /// The exposition text, with the sources and webhook outcomes read at scrape time.
    pub fn render(
        &self,
        sources: Vec<SourceSample>,
        webhooks: BTreeMap<&'static str, u64>,
    ) -> Result<String, fmt::Error> {
        if let Ok(mut values) = self.scraped.values.lock() {
            *values = (sources, webhooks);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// The values read at scrape time, encoded by the registry as a collector.
#[derive(Debug, Default)]
struct ScrapeValues {
    values: Mutex<(Vec<SourceSample>, BTreeMap<&'static str, u64>)>,
}

impl Collector for ScrapeValues {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let Ok(values) = self.values.lock() else {
            return Ok(());
        };
        let (sources, webhooks) = &*values;
        encode_states(&mut encoder, sources)?;
        encode_source_counters(&mut encoder, sources)?;
        encode_webhooks(&mut encoder, webhooks)?;
        let metric = encoder.encode_descriptor(
            "switchboard_undecodable_rows",
            "Stored JSON documents that could not be decoded when read (shown as error markers).",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(crate::db::event_rows::undecodable_rows()).encode(metric)?;
        Ok(())
    }
}

/// `switchboard_sources` by state (every state, zero included) and `switchboard_connections`.
fn encode_states(
    encoder: &mut DescriptorEncoder<'_>,
    sources: &[SourceSample],
) -> Result<(), fmt::Error> {
    let mut states: BTreeMap<&'static str, i64> =
        STATES.iter().map(|state| (state.as_str(), 0)).collect();
    let mut connections = 0u64;
    for source in sources {
        *states.entry(source.state.as_str()).or_insert(0) += 1;
        connections += source.connections;
    }
    let mut metric = encoder.encode_descriptor(
        "switchboard_sources",
        "Sources by state.",
        None,
        MetricType::Gauge,
    )?;
    for (state, count) in &states {
        ConstGauge::new(*count).encode(metric.encode_family(&[("state", *state)])?)?;
    }
    let metric = encoder.encode_descriptor(
        "switchboard_connections",
        "Live source connections (sockets), aging ones being replaced included.",
        None,
        MetricType::Gauge,
    )?;
    ConstGauge::new(i64::try_from(connections).unwrap_or(i64::MAX)).encode(metric)
}

/// The per-source counters of [`SOURCE_COUNTERS`] and `switchboard_source_errors` by kind.
fn encode_source_counters(
    encoder: &mut DescriptorEncoder<'_>,
    sources: &[SourceSample],
) -> Result<(), fmt::Error> {
    let by_label = per_source_label(sources);
    for (key, name, help) in SOURCE_COUNTERS {
        let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (label, counters) in &by_label {
            let value = counters.get(*key).copied().unwrap_or(0);
            ConstCounter::new(value)
                .encode(metric.encode_family(&[("source", label.as_str())])?)?;
        }
    }
    let mut metric = encoder.encode_descriptor(
        "switchboard_source_errors",
        "Source errors by kind (storage, expression, oversized, non_json, ignored, rejected).",
        None,
        MetricType::Counter,
    )?;
    for (label, counters) in &by_label {
        for (key, kind) in ERROR_KINDS {
            let value = counters.get(*key).copied().unwrap_or(0);
            ConstCounter::new(value)
                .encode(metric.encode_family(&[("source", label.as_str()), ("kind", *kind)])?)?;
        }
    }
    Ok(())
}

/// `switchboard_webhook_requests` by result.
fn encode_webhooks(
    encoder: &mut DescriptorEncoder<'_>,
    webhooks: &BTreeMap<&'static str, u64>,
) -> Result<(), fmt::Error> {
    let mut metric = encoder.encode_descriptor(
        "switchboard_webhook_requests",
        "Inbound webhook deliveries by result.",
        None,
        MetricType::Counter,
    )?;
    for (result, count) in webhooks {
        ConstCounter::new(*count).encode(metric.encode_family(&[("result", *result)])?)?;
    }
    Ok(())
}

/// The counters summed per `source` label: the first [`MAX_SOURCE_LABELS`] slugs in order, the
/// rest under `other`.
fn per_source_label(sources: &[SourceSample]) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut slugs: Vec<&str> = sources.iter().map(|s| s.slug.as_str()).collect();
    slugs.sort_unstable();
    slugs.dedup();
    slugs.truncate(MAX_SOURCE_LABELS);
    let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for source in sources {
        let label = if slugs.binary_search(&source.slug.as_str()).is_ok() {
            source.slug.clone()
        } else {
            "other".to_owned()
        };
        let entry = out.entry(label).or_default();
        if let Some(counters) = source.counters.as_object() {
            for (name, value) in counters {
                *entry.entry(name.clone()).or_insert(0) += value.as_u64().unwrap_or(0);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    fn sample(slug: &str, state: SourceState, stored: u64) -> SourceSample {
        SourceSample {
            slug: slug.to_owned(),
            state,
            connections: u64::from(state == SourceState::Connected),
            counters: json!({"events_stored": stored, "frames": stored + 1, "oversized": 1}),
        }
    }

    #[test]
    fn renders_states_counters_and_histograms() {
        let metrics = Metrics::new();
        metrics.runs_created.inc_by(3);
        metrics.reconnected(ReconnectReason::Refresh);
        metrics.ack_latency.observe(0.002);
        metrics.db_write("events", Duration::from_millis(3));
        let text = metrics
            .render(
                vec![
                    sample("a", SourceState::Connected, 5),
                    sample("b", SourceState::Failed, 2),
                ],
                BTreeMap::from([("accepted", 4), ("bad_signature", 1)]),
            )
            .unwrap();
        for line in [
            "switchboard_sources{state=\"connected\"} 1",
            "switchboard_sources{state=\"failed\"} 1",
            "switchboard_sources{state=\"paused\"} 0",
            "switchboard_connections 1",
            "switchboard_events_stored_total{source=\"a\"} 5",
            "switchboard_frames_received_total{source=\"b\"} 3",
            "switchboard_source_errors_total{source=\"a\",kind=\"oversized\"} 1",
            "switchboard_webhook_requests_total{result=\"bad_signature\"} 1",
            "switchboard_runs_created_total 3",
            "switchboard_reconnects_total{reason=\"refresh\"} 1",
            "switchboard_ack_latency_seconds_count 1",
            "switchboard_db_write_seconds_count{op=\"events\"} 1",
        ] {
            assert!(text.contains(line), "missing `{line}` in:\n{text}");
        }
    }

    #[test]
    fn caps_source_labels() {
        let sources: Vec<SourceSample> = (0..MAX_SOURCE_LABELS + 5)
            .map(|i| sample(&format!("s{i:04}"), SourceState::Connected, 1))
            .collect();
        let labels = per_source_label(&sources);
        assert_eq!(labels.len(), MAX_SOURCE_LABELS + 1);
        assert_eq!(labels["other"]["events_stored"], 5);
    }
}
