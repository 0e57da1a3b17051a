//! The many-automations scenario (issue 15, target 1): 10,000 automations through the API — 10 on
//! the firehose source `orders`, 100 on one busy source, the rest spread two by two over 5,000
//! other sources, over 1,000 distinct `on` patterns — then: create latency of the last 1,000
//! (paced at 100/s) with `GET /v1/me` polled meanwhile, memory per automation, and the firehose
//! with its 10 automations among all of them against the same firehose on a fresh service.
//!
//! The 5,001 other sources are slugs only: no source row is created for them (the API accepts an
//! automation on a slug nothing has yet, with a warning). The index is keyed by the trigger's
//! slug and never looks at source rows, so creating them would add only their own cost, which the
//! idle scenario measures; `orders` is a real generic source pointing at the firehose peer.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::json;

use super::KEY;
use super::env::{Backend, Env, RunningApp, start_app};
use super::idle::{heap_bytes, proc_kib};
use super::ingest::{FirehoseRate, firehose, firehose_on};

const TOTAL: usize = 10_000;
const TIMED: usize = 1_000;
const SPREAD_SOURCES: usize = 5_000;

/// `--baseline-first` runs the firehose on a fresh service before the 10,000 automations instead of
/// after them (to tell an order effect from a cost of the automations; the memory figures are
/// then taken on a heap the first service already grew).
pub(crate) async fn automations(backend: Backend, events: usize) {
    let baseline_first = std::env::args().any(|a| a == "--baseline-first");
    if baseline_first {
        firehose(backend, 10, events).await;
    }
    let env = Env::new(backend).await;
    let app = start_app(&env).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_before, heap_before) = (proc_kib("VmRSS"), heap_bytes());
    app.automations(10).await;
    app.automations_on("busy", "order.*", "data.amount > `100`", 100)
        .await;
    let spread = TOTAL - 110;
    futures_util::stream::iter(0..spread - TIMED)
        .map(|i| create_spread(&app, i))
        .buffer_unordered(4)
        .collect::<Vec<_>>()
        .await;
    let (creates, me) = paced_creates(&app, spread - TIMED..spread).await;
    let listed = timed(&app, "/v1/automations?limit=1", 100).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_after, heap_after) = (proc_kib("VmRSS"), heap_bytes());
    let per = |before: u64, after: u64| after.saturating_sub(before) as f64 / TOTAL as f64;
    let name = backend.name();
    println!(
        "automations {name:<9} {TOTAL} automations: create (last {TIMED}, 100/s) {}; GET /v1/me meanwhile {}; GET /v1/automations?limit=1 {}",
        summary(creates),
        summary(me),
        summary(listed),
    );
    println!(
        "automations {name:<9} memory per automation: RSS {:.2} KiB, heap {:.2} KiB",
        per(rss_before, rss_after),
        per(heap_before, heap_after) / 1024.0,
    );
    let many = firehose_on(&app, 10, events).await;
    app.stop().await;
    drop(env);
    print_firehose(backend, "with the other 9,990 automations", events, &many);
    if !baseline_first {
        firehose(backend, 10, events).await;
    }
}

/// Automation `i` of the spread: source `s-{i mod 5000}`, pattern `evt.{i mod 1000}.*`.
async fn create_spread(app: &RunningApp, i: usize) -> Duration {
    let started = Instant::now();
    app.post(
        "/v1/automations",
        json!({"name": format!("spread-{i}"), "trigger": {"type": "event",
            "source": format!("s-{:04}", i % SPREAD_SOURCES), "on": format!("evt.{}.*", i % 1_000),
            "filter": format!("data.amount > `{}`", i % 50)}}),
    )
    .await;
    started.elapsed()
}

/// Creates automations `range` at 100/s, one after the other, while another task asks
/// `GET /v1/me` every 10 ms; gives the latencies of both.
async fn paced_creates(
    app: &RunningApp,
    range: std::ops::Range<usize>,
) -> (Vec<Duration>, Vec<Duration>) {
    let stop = Rc::new(RefCell::new(false));
    let poller = {
        let (stop, base) = (stop.clone(), app.base.clone());
        actix_web::rt::spawn(async move {
            let client = awc::Client::default();
            let mut samples = Vec::new();
            while !*stop.borrow() {
                let started = Instant::now();
                let res = client
                    .get(format!("{base}/v1/me"))
                    .insert_header(("Authorization", format!("Bearer {KEY}")))
                    .send()
                    .await
                    .unwrap();
                assert!(res.status().is_success());
                samples.push(started.elapsed());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            samples
        })
    };
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut creates = Vec::with_capacity(range.len());
    for i in range {
        tick.tick().await;
        creates.push(create_spread(app, i).await);
    }
    *stop.borrow_mut() = true;
    (creates, poller.await.unwrap())
}

/// The latencies of `count` sequential `GET path`.
async fn timed(app: &RunningApp, path: &str, count: usize) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        app.get(path).await;
        samples.push(started.elapsed());
    }
    samples
}

/// `p50 … ms, p99 … ms, max … ms (n)`.
fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort_unstable();
    let at = |p: f64| {
        let i = ((samples.len() as f64 * p) as usize).min(samples.len().saturating_sub(1));
        samples.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} requests)",
        at(0.50),
        at(0.99),
        at(1.0),
        samples.len()
    )
}

fn print_firehose(backend: Backend, label: &str, events: usize, rate: &FirehoseRate) {
    println!(
        "firehose  {:<9} 10 automation(s) {label}: {events} events in {:.2} s = {:.0} events/s, {:.0} runs/s (stored {}, runs {})",
        backend.name(),
        rate.seconds,
        events as f64 / rate.seconds,
        rate.runs as f64 / rate.seconds,
        rate.stored,
        rate.runs,
    );
}
