//! End-to-end benchmark of Switchboard on this machine (see `docs/benchmarks.md`).
//!
//! `cargo bench --bench throughput` runs every scenario and prints its figures:
//! - the storage ceiling (100-row multi-row INSERTs over two connections), per engine;
//! - firehose: one generic source reading ~200-byte JSON messages as fast as it can, with 10
//!   automations (`data.amount > \`100\``, half the messages match) and with 1 automation, on
//!   PostgreSQL and SQLite: events/s and runs/s until every run is committed;
//! - paced latency: 1,000 events/s, message sent → run committed, p50/p99/max;
//! - idle: 1,000 connected generic sources, resident memory per connection and CPU; `idle-wss`
//!   the same over `wss://` (a TLS peer with a certificate from a CA made at run time and
//!   trusted through `SWITCHBOARD_TLS_CA_FILE`), so the TLS state per connection shows;
//! - slack: a Slack Socket Mode source (2 connections) against a local Slack peer, a 20,000-
//!   envelope burst and a paced 1,000 envelopes/s, 10 automations: ACK latency (envelope sent →
//!   ACK received, measured by the peer) and events/s until every run is committed;
//! - workers-latency: 1,000 webhook events/s, four workers waiting in long-poll claims: event
//!   received → run claimed, p50/p99/max;
//! - workers-throughput: 100,000 pending runs drained by 8 HTTP workers (batched claim and
//!   complete), with the database's own ceiling for the same updates (see `workers/mod.rs`);
//! - workers-ingest: the 10-automation firehose alone, then while 8 HTTP workers drain its runs
//!   (see `workers/ingest.rs`);
//! - automations: 10,000 automations created through the API (10 on the firehose source, 100 on
//!   one source, the rest over 5,000 sources): create latency of the last 1,000 at 100/s with
//!   `GET /v1/me` meanwhile, memory per automation, and the firehose with 10 automations among
//!   them against a fresh service (see `support/automations.rs`);
//! - reconnect: 5,000 generic sources over 50 loopback hosts (`--quick`: 1,000): a restart until
//!   every source is connected, then the peer drops every socket at once until all are back; the
//!   peer's accept times per host are checked against the per-host connect rate (see
//!   `support/reconnect.rs`);
//! - many-sources: 5,000 generic sources x 1 message/s, one automation each, for a minute
//!   (`--quick`: 15 s): send -> run p50/p99/max, every event and run committed, CPU and RSS (see
//!   `support/many_sources.rs`);
//! - replicas (PostgreSQL): 5,000 generic sources over 50 hosts (`--quick`: 1,000) held by one
//!   replica; time until a second replica (a child process) has its even share with every source
//!   connected once, then until the second one's sources are back after a SIGKILL (see
//!   `support/replicas.rs`);
//! - history (only with `--only history`): 10,000,000 events and 20,000,000 runs bulk-loaded
//!   (`--history-events N` for another size), then p50/p99 of the first and the 100th page of every
//!   documented history filter over HTTP (see `support/history.rs`).
//!
//! Options (after `--`): `--events N` (firehose size, default 100000), `--quick` (smaller runs),
//! `--only NAME` (ceiling | firehose | latency | automations | idle | idle-wss | slack | reconnect | replicas |
//! many-sources | history | workers-latency | workers-throughput | workers-ingest),
//! `--backend postgres|sqlite`, `--automations N` (firehose with N automations only),
//! `--idle-sources N` (idle with N sources), `--without-history-indexes` (firehose
//! with the history indexes dropped, see `support/history.rs`), `--breakdown` (firehose: also the
//! service's mean storage write per batch; workers-latency: see `support/workers`). The WebSocket peers run in a child
//! process (this binary with `peer …`) so their memory and CPU are not counted.

#![warn(clippy::too_many_lines)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "support/automations.rs"]
mod automations;
#[path = "support/env.rs"]
mod env;
#[path = "support/history_load.rs"]
mod history_load;
#[path = "support/history.rs"]
mod history_scenario;
#[path = "support/hosts_peer.rs"]
mod hosts_peer;
#[path = "support/idle.rs"]
mod idle;
#[path = "support/ingest.rs"]
mod ingest;
#[path = "support/many_sources.rs"]
mod many_sources;
#[path = "support/peer.rs"]
mod peer;
#[path = "support/reconnect.rs"]
mod reconnect;
#[path = "support/replicas.rs"]
mod replicas;
#[path = "support/slack.rs"]
mod slack;
mod workers;

use env::{Backend, Env, RunningApp, message, start_app};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The same allocator as the `switchboard` binary, so the figures are the service's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const KEY: &str = "sbk_benchadminkey000000000000000000000000";
/// The PostgreSQL server the benchmark creates its databases on (`BENCH_DATABASE_URL`, a server
/// URL without database; default the local server over TCP).
fn pg_base() -> String {
    std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// The command line (after `--`).
struct Options {
    quick: bool,
    /// Firehose size (`--events`).
    events: usize,
    /// `--only NAME`.
    only: Option<String>,
    /// The engines to run on (`--backend`, default both).
    backends: Vec<Backend>,
    /// Firehose automation counts (`--automations N`, default 10 then 1).
    automation_counts: Vec<usize>,
    /// `--history-events N`.
    history_events: usize,
}

impl Options {
    fn parse(args: &[String]) -> Options {
        let quick = args.iter().any(|a| a == "--quick");
        let value_of = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1).cloned())
        };
        let backend = value_of("--backend");
        Options {
            quick,
            events: arg_value(args, "--events").unwrap_or(if quick { 20_000 } else { 100_000 }),
            only: value_of("--only"),
            backends: [Backend::Postgres, Backend::Sqlite]
                .into_iter()
                .filter(|b| backend.as_deref().is_none_or(|name| name == b.name()))
                .collect(),
            automation_counts: arg_value(args, "--automations")
                .map_or_else(|| vec![10, 1], |n| vec![n]),
            history_events: arg_value(args, "--history-events").unwrap_or(10_000_000),
        }
    }

    /// Whether scenario `name` runs (`history` only when asked for by name).
    fn want(&self, name: &str) -> bool {
        match self.only.as_deref() {
            None => name != "history",
            Some(only) => only == name,
        }
    }

    /// `quick` or `full`, as the run asks.
    fn pick(&self, quick: usize, full: usize) -> usize {
        if self.quick { quick } else { full }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("peer") {
        if args.get(2).map(String::as_str) == Some("hosts") {
            let hosts = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(50);
            return hosts_peer::hosts_peer_main(hosts);
        }
        return peer::peer_main(&args[2..]);
    }
    let options = Options::parse(&args);
    println!("Switchboard benchmark on {} cores\n", num_cores());
    actix_web::rt::System::new().block_on(async move {
        // First, while the heap is fresh: later scenarios leave freed memory behind that new
        // connections would reuse, hiding their real cost.
        if options.want("idle") {
            let sources = arg_value(&args, "--idle-sources").unwrap_or(1_000);
            idle::idle(Backend::Postgres, sources, false).await;
            println!();
        }
        if options.want("idle-wss") {
            idle::idle(Backend::Postgres, 1_000, true).await;
            println!();
        }
        ingest_scenarios(&options).await;
        if options.want("slack") {
            for backend in options.backends.iter().copied() {
                let burst = slack::SlackLoad::Burst(options.pick(5_000, 20_000));
                slack::slack(backend, burst).await;
                let paced = slack::SlackLoad::Paced(1_000, options.pick(5, 10));
                slack::slack(backend, paced).await;
            }
            println!();
        }
        worker_scenarios(&options).await;
        if options.want("many-sources") {
            for backend in options.backends.iter().copied() {
                many_sources::many_sources(backend, 5_000, options.pick(15, 60)).await;
            }
            println!();
        }
        if options.want("replicas") {
            replicas::replicas(options.pick(1_000, 5_000)).await;
            println!();
        }
        if options.want("reconnect") {
            for backend in options.backends.iter().copied() {
                reconnect::reconnect(backend, options.pick(1_000, 5_000), 50).await;
            }
            println!();
        }
        println!(
            "peak RSS of the benchmark process: {:.1} MiB",
            idle::proc_kib("VmHWM") as f64 / 1024.0
        );
    });
}

/// The storage ceiling, the firehose, history and paced latency, as asked.
async fn ingest_scenarios(options: &Options) {
    if options.want("ceiling") {
        for backend in options.backends.iter().copied() {
            let env = Env::new(backend).await;
            let rows = ingest::ceiling(&env.admin_db().await).await;
            println!(
                "ceiling   {:<9} {:>9.0} rows/s (100-row INSERTs, 2 connections)",
                backend.name(),
                rows
            );
        }
        println!();
    }
    if options.want("firehose") {
        for backend in options.backends.iter().copied() {
            for automations in options.automation_counts.clone() {
                ingest::firehose(backend, automations, options.events).await;
            }
        }
        println!();
    }
    if options.want("history") {
        for backend in options.backends.iter().copied() {
            history_scenario::history(backend, options.history_events).await;
        }
        println!();
    }
    if options.want("latency") {
        for backend in options.backends.iter().copied() {
            ingest::latency(backend, 1_000, options.pick(5, 10)).await;
        }
        println!();
    }
    if options.want("automations") {
        for backend in options.backends.iter().copied() {
            automations::automations(backend, options.events).await;
        }
        println!();
    }
}

/// The run queue scenarios, as asked.
async fn worker_scenarios(options: &Options) {
    if options.want("workers-latency") {
        for backend in options.backends.iter().copied() {
            workers::latency(backend, 1_000, options.pick(5, 10)).await;
        }
        println!();
    }
    if options.want("workers-throughput") {
        for backend in options.backends.iter().copied() {
            workers::throughput(backend, options.events).await;
        }
        println!();
    }
    if options.want("workers-ingest") {
        for backend in options.backends.iter().copied() {
            workers::ingest(backend, options.events).await;
        }
        println!();
    }
}

fn arg_value(args: &[String], name: &str) -> Option<usize> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1)?.parse().ok()
}

fn num_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
