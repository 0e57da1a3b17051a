//! `workers-ingest`: the 10-automation firehose alone, then the same firehose on a fresh service
//! while 8 HTTP workers drain its runs (claims of 100, long-polling; one batched completion per
//! claim): how much ingest throughput the queue's consumers cost.

use std::cell::Cell;
use std::rc::Rc;

use super::http_worker::{self, Until};
use super::*;
use crate::ingest::feed_firehose;

/// The scenario on one engine: `events` firehose messages, 10 automations.
pub async fn ingest(backend: Backend, events: usize) {
    let (alone, _) = firehose(backend, events, false).await;
    let (with_workers, completed) = firehose(backend, events, true).await;
    let runs = events / 2 * 10;
    println!(
        "workers-ingest     {:<9} firehose 10 automations, {events} events: alone {:>7.0} events/s | while 8 workers drain {:>7.0} events/s ({:+.0} %; {completed} of {runs} runs completed meanwhile)",
        backend.name(),
        events as f64 / alone,
        events as f64 / with_workers,
        (alone / with_workers - 1.0) * 100.0,
    );
}

/// One firehose on a fresh service, with or without 8 workers draining; answers its seconds and
/// the runs the workers completed by the time every run was committed.
async fn firehose(backend: Backend, events: usize, workers: bool) -> (f64, usize) {
    let env = Env::new(backend).await;
    let app = start_app(&env).await;
    app.automations(10).await;
    let key = worker_key(&app).await;
    let stop = Rc::new(Cell::new(false));
    let drain = if workers {
        http_worker::start(&app.base, &key, 8, 100, &Until::Stopped(stop.clone()))
    } else {
        Vec::new()
    };
    let elapsed = feed_firehose(&app, 10, events).await;
    let completed_by_then = app
        .metrics
        .queue
        .finished
        .get_or_create(&vec![("status", "SUCCEEDED")])
        .get() as usize;
    stop.set(true);
    http_worker::completed(drain).await;
    app.stop().await;
    (elapsed, completed_by_then)
}
