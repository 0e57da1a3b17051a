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
//! - history (only with `--only history`): 10,000,000 events and 20,000,000 runs bulk-loaded
//!   (`--history-events N` for another size), then p50/p99 of the first and the 100th page of every
//!   documented history filter over HTTP (see `support/history.rs`).
//!
//! Options (after `--`): `--events N` (firehose size, default 100000), `--quick` (smaller runs),
//! `--only NAME` (ceiling | firehose | latency | idle | idle-wss | slack), `--backend postgres|sqlite`,
//! `--automations N` (firehose with N automations only), `--without-history-indexes` (firehose
//! with the indexes of migration m20261203_000001 dropped). The WebSocket peers run in a child
//! process (this binary with `peer …`) so their memory and CPU are not counted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, EntityTrait, PaginatorTrait};
use secrecy::SecretString;
use serde_json::{Value, json};
use switchboard::actors::publisher::Published;
use switchboard::config::Settings;
use switchboard::crypto::Keyring;
use switchboard::startup::Application;
use tokio::sync::broadcast::error::RecvError;
use tokio_tungstenite::tungstenite::Message;

#[path = "support/history.rs"]
mod history_scenario;
mod workers;

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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("peer") {
        return peer_main(&args[2..]);
    }
    let quick = args.iter().any(|a| a == "--quick");
    let events = arg_value(&args, "--events").unwrap_or(if quick { 20_000 } else { 100_000 });
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    let history_only = only.as_deref() == Some("history");
    let want = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let backend = args
        .iter()
        .position(|a| a == "--backend")
        .and_then(|i| args.get(i + 1).cloned());
    let backends: Vec<Backend> = [Backend::Postgres, Backend::Sqlite]
        .into_iter()
        .filter(|b| backend.as_deref().is_none_or(|name| name == b.name()))
        .collect();
    let automation_counts: Vec<usize> =
        arg_value(&args, "--automations").map_or_else(|| vec![10, 1], |n| vec![n]);
    println!("Switchboard benchmark on {} cores\n", num_cores());
    actix_web::rt::System::new().block_on(async move {
        // First, while the heap is fresh: later scenarios leave freed memory behind that new
        // connections would reuse, hiding their real cost.
        if want("idle") {
            idle(Backend::Postgres, 1_000, false).await;
            println!();
        }
        if want("idle-wss") {
            idle(Backend::Postgres, 1_000, true).await;
            println!();
        }
        if want("ceiling") {
            for backend in backends.iter().copied() {
                let env = Env::new(backend).await;
                let rows = ceiling(&env.admin_db().await).await;
                println!(
                    "ceiling   {:<9} {:>9.0} rows/s (100-row INSERTs, 2 connections)",
                    backend.name(),
                    rows
                );
            }
            println!();
        }
        if want("firehose") {
            for backend in backends.iter().copied() {
                for automations in automation_counts.clone() {
                    firehose(backend, automations, events).await;
                }
            }
            println!();
        }
        if history_only {
            let events = arg_value(&args, "--history-events").unwrap_or(10_000_000);
            for backend in backends.iter().copied() {
                history_scenario::history(backend, events).await;
            }
            println!();
        }
        if want("latency") {
            for backend in backends.iter().copied() {
                latency(backend, 1_000, if quick { 5 } else { 10 }).await;
            }
            println!();
        }
        if want("slack") {
            for backend in backends.iter().copied() {
                slack(
                    backend,
                    SlackLoad::Burst(if quick { 5_000 } else { 20_000 }),
                )
                .await;
                slack(backend, SlackLoad::Paced(1_000, if quick { 5 } else { 10 })).await;
            }
            println!();
        }
        if want("workers-latency") {
            for backend in backends.iter().copied() {
                workers::latency(backend, 1_000, if quick { 5 } else { 10 }).await;
            }
            println!();
        }
        if want("workers-throughput") {
            for backend in backends.iter().copied() {
                workers::throughput(backend, events).await;
            }
            println!();
        }
        println!(
            "peak RSS of the benchmark process: {:.1} MiB",
            proc_kib("VmHWM") as f64 / 1024.0
        );
    });
}

fn arg_value(args: &[String], name: &str) -> Option<usize> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1)?.parse().ok()
}

fn num_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// A fresh database plus the settings to reach it.
struct Env {
    settings: Settings,
    _dir: tempfile::TempDir,
    pg_name: Option<String>,
}

impl Env {
    async fn new(backend: Backend) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let (url, pg_name) = match backend {
            Backend::Sqlite => (None, None),
            Backend::Postgres => {
                let name = format!("sb_bench_{}", uuid::Uuid::new_v4().simple());
                let admin = Database::connect(format!("{}/postgres", pg_base()))
                    .await
                    .unwrap();
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .unwrap();
                (Some(format!("{}/{name}", pg_base())), Some(name))
            }
        };
        let settings = Settings {
            bind: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_path_buf(),
            database_url: url,
            database_max_connections: 10,
            secret_keys: Some(SecretString::from(Keyring::generate_entry("b1"))),
            bootstrap_api_key: Some(SecretString::from(KEY.to_owned())),
            allow_private_networks: true,
            log_level: "warn".to_owned(),
            connects_per_second: 2_000.0,
            ..Settings::default()
        };
        Env {
            settings,
            _dir: dir,
            pg_name,
        }
    }

    async fn admin_db(&self) -> DatabaseConnection {
        let db = switchboard::db::connect(&self.settings).await.unwrap();
        switchboard::db::migrate(&db).await.unwrap();
        db
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let admin = Database::connect(format!("{}/postgres", pg_base()))
                        .await
                        .unwrap();
                    let _ = admin
                        .execute_unprepared(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .await;
                });
            })
            .join();
        }
    }
}

/// Rows/s of 100-row multi-row INSERTs (~200-byte JSON each) over two connections for 3 s.
async fn ceiling(db: &DatabaseConnection) -> f64 {
    let json_type = if db.get_database_backend() == sea_orm::DbBackend::Postgres {
        "jsonb"
    } else {
        "text"
    };
    db.execute_unprepared(&format!(
        "CREATE TABLE bench_ceiling (id TEXT PRIMARY KEY, body {json_type} NOT NULL)"
    ))
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..2 {
        let db = db.clone();
        tasks.push(actix_web::rt::spawn(async move {
            let mut rows = 0u64;
            let mut batch = 0u64;
            while Instant::now() < deadline {
                let values: Vec<String> = (0..100)
                    .map(|i| format!("('{worker}-{batch}-{i}', '{}')", message(i, batch as usize)))
                    .collect();
                db.execute_unprepared(&format!(
                    "INSERT INTO bench_ceiling (id, body) VALUES {}",
                    values.join(",")
                ))
                .await
                .unwrap();
                rows += 100;
                batch += 1;
            }
            rows
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// A ~200-byte order message; even sequence numbers have amount 50, odd ones 150.
fn message(seq: usize, salt: usize) -> String {
    let sent_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let amount = if seq.is_multiple_of(2) { 50 } else { 150 };
    json!({
        "type": "order.created", "id": format!("o{salt}-{seq:08}"), "seq": seq, "sent_us": sent_us as u64,
        "data": {"amount": amount, "currency": "EUR", "customer": format!("cust-{:06}", seq % 999_999), "items": 3},
        "meta": {"region": "eu-west-1", "channel": "web"}
    })
    .to_string()
}

struct RunningApp {
    base: String,
    client: awc::Client,
    app_handle: actix_web::dev::ServerHandle,
    publisher: switchboard::actors::publisher::Publisher,
    metrics: std::sync::Arc<switchboard::metrics::Metrics>,
    db: DatabaseConnection,
}

async fn start_app(env: &Env) -> RunningApp {
    let app = Application::build(env.settings.clone()).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let app_handle = app.handle();
    let publisher = app.publisher().clone();
    let metrics = app.metrics().clone();
    actix_web::rt::spawn(app.run_until_stopped());
    let db = switchboard::db::connect(&env.settings).await.unwrap();
    RunningApp {
        base,
        client: awc::Client::default(),
        app_handle,
        publisher,
        metrics,
        db,
    }
}

impl RunningApp {
    async fn post(&self, path: &str, body: Value) -> Value {
        let mut res = self
            .client
            .post(format!("{}{path}", self.base))
            .insert_header(("Authorization", format!("Bearer {KEY}")))
            .send_json(&body)
            .await
            .unwrap();
        let value: Value = res.json().limit(1 << 20).await.unwrap();
        assert!(res.status().is_success(), "{path}: {value}");
        value
    }

    async fn automations(&self, count: usize) {
        self.automations_on("orders", "order.*", "data.amount > `100`", count)
            .await;
    }

    async fn automations_on(&self, source: &str, on: &str, filter: &str, count: usize) {
        for i in 0..count {
            self.post(
                "/v1/automations",
                json!({"name": format!("a{i}"),
                "trigger": {"type": "event", "source": source, "on": on, "filter": filter}}),
            )
            .await;
        }
    }

    async fn source(&self, slug: &str, url: &str) {
        self.post(
            "/v1/websocket-sources",
            json!({"name": slug, "source": slug, "kind": "generic",
            "event_key_expr": "type", "dedup_key_expr": "id", "config": {"url": url}}),
        )
        .await;
    }

    /// Waits (at most two minutes without progress) until `runs` runs were created.
    async fn wait_for_runs(&self, runs: usize) {
        let (mut last, mut progress) = (0, Instant::now());
        loop {
            let created = self.metrics.runs_created.get() as usize;
            if created >= runs {
                return;
            }
            if created != last {
                (last, progress) = (created, Instant::now());
            } else if progress.elapsed() > Duration::from_secs(120) {
                println!("  (stalled at {created} of {runs} runs)");
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn stop(self) {
        self.app_handle.stop(true).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[derive(Clone, Copy)]
enum SlackLoad {
    /// This many envelopes as fast as the service reads.
    Burst(usize),
    /// Envelopes/s for seconds.
    Paced(usize, usize),
}

async fn slack(backend: Backend, load: SlackLoad) {
    let mut env = Env::new(backend).await;
    let (total, args) = match load {
        SlackLoad::Burst(n) => (n, vec!["slack".to_owned(), "0".to_owned(), n.to_string()]),
        SlackLoad::Paced(rate, seconds) => (
            rate * seconds,
            vec![
                "slack".to_owned(),
                rate.to_string(),
                (rate * seconds).to_string(),
            ],
        ),
    };
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("peer")
        .args(&args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port = lines.next().unwrap().unwrap();
    env.settings.slack_api_base = format!("http://127.0.0.1:{}/api", port.trim());
    let app = start_app(&env).await;
    app.automations_on("slack", "message", "amount > `100`", 10)
        .await;
    let expected_runs = (total / 2) * 10;
    let started = Instant::now();
    app.post(
        "/v1/websocket-sources",
        json!({"name": "slack", "source": "slack", "kind": "slack",
            "config": {"app_token": "xapp-bench", "connections": 2}}),
    )
    .await;
    app.wait_for_runs(expected_runs).await;
    let elapsed = started.elapsed().as_secs_f64();
    // The peer prints its ACK latencies once every envelope is ACKed.
    let report = tokio::task::spawn_blocking(move || lines.next())
        .await
        .ok()
        .flatten()
        .and_then(Result::ok)
        .unwrap_or_default();
    let ms: Vec<f64> = report
        .split_whitespace()
        .filter_map(|v| v.parse::<f64>().ok())
        .map(|us| us / 1000.0)
        .collect();
    let stored = entity::event::Entity::find().count(&app.db).await.unwrap();
    let committed_runs = entity::automation_run::Entity::find()
        .count(&app.db)
        .await
        .unwrap();
    let what = match load {
        SlackLoad::Burst(n) => format!("burst of {n}"),
        SlackLoad::Paced(rate, seconds) => format!("{rate}/s for {seconds} s"),
    };
    println!(
        "slack     {:<9} {what}: ACK p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {:.0} events/s to committed runs (stored {stored}, runs {committed_runs})",
        backend.name(),
        ms.first().copied().unwrap_or(f64::NAN),
        ms.get(1).copied().unwrap_or(f64::NAN),
        ms.get(2).copied().unwrap_or(f64::NAN),
        total as f64 / elapsed,
    );
    let _ = child.kill();
    let _ = child.wait();
    app.stop().await;
}

/// Spawns this binary as a WebSocket peer; returns the child and its `ws://` URL.
fn spawn_peer(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("peer")
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, format!("ws://127.0.0.1:{}/ws", line.trim()))
}

async fn firehose(backend: Backend, automations: usize, events: usize) {
    let env = Env::new(backend).await;
    let app = start_app(&env).await;
    if std::env::args().any(|a| a == "--without-history-indexes") {
        history_scenario::drop_history_indexes(&app.db).await;
    }
    app.automations(automations).await;
    let expected_runs = (events / 2) * automations;
    let (mut peer, url) = spawn_peer(&["firehose", &events.to_string()]);
    let started = Instant::now();
    app.source("orders", &url).await;
    app.wait_for_runs(expected_runs).await;
    let elapsed = started.elapsed().as_secs_f64();
    let stored = entity::event::Entity::find().count(&app.db).await.unwrap();
    let committed_runs = entity::automation_run::Entity::find()
        .count(&app.db)
        .await
        .unwrap();
    println!(
        "firehose  {:<9} {:>2} automation(s): {:>7} events in {:>6.2} s = {:>7.0} events/s, {:>7.0} runs/s, {:>7.0} rows/s (stored {stored}, runs {committed_runs})",
        backend.name(),
        automations,
        events,
        elapsed,
        events as f64 / elapsed,
        committed_runs as f64 / elapsed,
        (stored + committed_runs) as f64 / elapsed,
    );
    let _ = peer.kill();
    app.stop().await;
}

async fn latency(backend: Backend, rate: usize, seconds: usize) {
    let env = Env::new(backend).await;
    let app = start_app(&env).await;
    app.automations(10).await;
    let mut runs = app.publisher.subscribe();
    let total = rate * seconds;
    let (mut peer, url) = spawn_peer(&["paced", &rate.to_string(), &total.to_string()]);
    app.source("orders", &url).await;
    let mut samples = Vec::with_capacity(total / 2);
    let mut seen_events = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs((seconds + 30) as u64);
    while seen_events.len() < total / 2 && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), runs.recv()).await {
            Ok(Ok(Published::RunCreated {
                event_id,
                event_payload,
                ..
            })) => {
                if seen_events.insert(event_id) {
                    let now_us = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_micros()) as u64;
                    let sent = event_payload["payload"]["sent_us"]
                        .as_u64()
                        .unwrap_or(now_us);
                    samples.push(now_us.saturating_sub(sent));
                }
            }
            // Other live messages (source.status, event.received, event.dispatched).
            Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) => {}
            Ok(Err(RecvError::Closed)) | Err(_) => break,
        }
    }
    samples.sort_unstable();
    let pct = |p: f64| {
        samples
            .get(((samples.len() as f64 * p) as usize).min(samples.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    println!(
        "latency   {:<9} {rate}/s for {seconds} s, 10 automations: send -> run committed p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} events measured)",
        backend.name(),
        pct(0.50),
        pct(0.99),
        pct(1.0),
        samples.len()
    );
    let _ = peer.kill();
    app.stop().await;
}

async fn idle(backend: Backend, sources: usize, tls: bool) {
    let mut env = Env::new(backend).await;
    let (mut peer, url) = if tls {
        let dir = env.settings.data_dir.clone();
        let (ca, cert, key) = write_test_pki(&dir);
        env.settings.tls_ca_file = Some(ca);
        let (peer, plain) = spawn_peer(&["idle-tls", cert.as_str(), key.as_str()]);
        (peer, plain.replace("ws://127.0.0.1:", "wss://localhost:"))
    } else {
        spawn_peer(&["idle"])
    };
    let app = start_app(&env).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = proc_kib("VmRSS");
    let heap_before = heap_bytes();
    for i in 0..sources {
        app.source(&format!("idle-{i}"), &url).await;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut connected = 0;
    while Instant::now() < deadline {
        let row = app
            .db
            .query_one_raw(sea_orm::Statement::from_string(
                app.db.get_database_backend(),
                "SELECT COUNT(*) AS n FROM source_status WHERE state = 'connected'",
            ))
            .await
            .unwrap()
            .unwrap();
        connected = row.try_get::<i64>("", "n").unwrap();
        if connected as usize >= sources {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = proc_kib("VmRSS");
    let heap = heap_bytes().saturating_sub(heap_before);
    let cpu_before = cpu_seconds();
    let window = Duration::from_secs(10);
    tokio::time::sleep(window).await;
    let cpu = (cpu_seconds() - cpu_before) / window.as_secs_f64() * 100.0;
    println!(
        "idle{}  {:<9} {connected} connected sources: RSS +{:.1} MiB = {:.1} KiB per connection (heap in use {:.1} KiB per connection); CPU {cpu:.2} % of a core while idle",
        if tls { "-wss" } else { "    " },
        backend.name(),
        (after.saturating_sub(before)) as f64 / 1024.0,
        after.saturating_sub(before) as f64 / sources as f64,
        heap as f64 / 1024.0 / sources as f64,
    );
    let _ = peer.kill();
    app.stop().await;
}

/// Writes a CA (PEM), and a server certificate for `localhost` it issued with its key, into
/// `dir`; answers the three paths.
fn write_test_pki(dir: &std::path::Path) -> (std::path::PathBuf, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    let text = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    (paths.0.clone(), text(&paths.1), text(&paths.2))
}

/// A TLS acceptor serving the certificate and key at these paths.
fn tls_acceptor(cert: &str, key: &str) -> tokio_rustls::TlsAcceptor {
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = vec![CertificateDer::from_pem_file(cert).unwrap()];
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(
        std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider()),
    )
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config))
}

/// Bytes the allocator has handed out and not taken back (jemalloc's `stats.allocated`).
fn heap_bytes() -> u64 {
    tikv_jemalloc_ctl::epoch::advance().unwrap();
    tikv_jemalloc_ctl::stats::allocated::read().unwrap() as u64
}

fn proc_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    ticks / 100.0
}

/// The child-process peer: `peer firehose N`, `peer paced RATE COUNT`, `peer idle`,
/// `peer idle-tls CERT KEY` (`wss://`, certificate and key PEM files) or
/// `peer slack RATE COUNT` (RATE 0: a burst). Prints its port on the first line of stdout.
fn peer_main(args: &[String]) {
    if args.first().map(String::as_str) == Some("slack") {
        return slack_peer_main(args);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap().port());
        std::io::stdout().flush().unwrap();
        let mode = args.first().cloned().unwrap_or_default();
        let n: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
        let m: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(0);
        let tls = (mode == "idle-tls").then(|| tls_acceptor(&args[1], &args[2]));
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            if let Some(acceptor) = tls.clone() {
                tokio::spawn(async move {
                    if let Ok(stream) = acceptor.accept(tcp).await
                        && let Ok(ws) = tokio_tungstenite::accept_async(stream).await
                    {
                        let (_sink, mut stream) = ws.split();
                        while let Some(Ok(_)) = stream.next().await {}
                    }
                });
                continue;
            }
            let mode = mode.clone();
            tokio::spawn(async move {
                let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let (mut sink, mut stream) = ws.split();
                tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
                match mode.as_str() {
                    "firehose" => {
                        for seq in 0..n {
                            if sink.feed(Message::text(message(seq, 0))).await.is_err() {
                                return;
                            }
                        }
                        let _ = sink.flush().await;
                    }
                    "paced" => {
                        let mut tick =
                            tokio::time::interval(Duration::from_secs_f64(1.0 / n.max(1) as f64));
                        for seq in 0..m {
                            tick.tick().await;
                            if sink.send(Message::text(message(seq, 0))).await.is_err() {
                                return;
                            }
                        }
                    }
                    _ => {}
                }
                std::future::pending::<()>().await;
            });
        }
    });
}

/// One envelope, ~400 bytes like a small Slack message event; half have `amount` over 100.
fn slack_envelope(seq: usize) -> (String, String) {
    let envelope_id = format!("env-{seq:08}");
    let text = json!({
        "envelope_id": envelope_id, "type": "events_api", "accepts_response_payload": false,
        "retry_attempt": 0, "retry_reason": "",
        "payload": {"team_id": "T1", "api_app_id": "A1", "type": "event_callback",
            "event_id": format!("Ev{seq:010}"), "event_time": 1_700_000_000u64,
            "event": {"type": "message", "user": "U1", "channel": "C1", "text": "hello",
                "ts": format!("1700000000.{seq:06}"), "amount": if seq.is_multiple_of(2) { 150 } else { 50 }}}
    })
    .to_string();
    (envelope_id, text)
}

/// The Slack peer: `apps.connections.open` on one port (printed first), the Socket Mode endpoint
/// on another. Every connection gets `hello`; once two are open, envelope `seq` goes to
/// connection `seq % 2`, as fast as it reads (RATE 0) or at RATE/s in all. When every envelope is
/// ACKed it prints `p50 p99 max` of the ACK latency in microseconds.
fn slack_peer_main(args: &[String]) {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let rate: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    let total: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws_port = ws.local_addr().unwrap().port();
        println!("{}", api.local_addr().unwrap().port());
        std::io::stdout().flush().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut tcp, _) = api.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let mut read = 0;
                    while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                        match tcp.read(&mut buf[read..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => read += n,
                        }
                    }
                    let body = json!({"ok": true, "url": format!("ws://127.0.0.1:{ws_port}/link/?ticket={}", uuid::Uuid::new_v4())}).to_string();
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tcp.write_all(answer.as_bytes()).await;
                    let _ = tcp.shutdown().await;
                });
            }
        });
        let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let latencies: Arc<Mutex<Vec<u64>>> = Arc::default();
        let (open_tx, open_rx) = tokio::sync::watch::channel(0usize);
        let mut conn = 0usize;
        loop {
            let (tcp, _) = ws.accept().await.unwrap();
            let Ok(socket) = tokio_tungstenite::accept_async(tcp).await else {
                continue;
            };
            let index = conn;
            conn += 1;
            let (mut sink, mut stream) = socket.split();
            let (sent_r, latencies_r) = (sent.clone(), latencies.clone());
            tokio::spawn(async move {
                while let Some(Ok(message)) = stream.next().await {
                    let Message::Text(text) = message else { continue };
                    let Ok(ack) = serde_json::from_str::<Value>(&text) else { continue };
                    let Some(id) = ack["envelope_id"].as_str() else { continue };
                    let Some(at) = sent_r.lock().unwrap().remove(id) else { continue };
                    let mut all = latencies_r.lock().unwrap();
                    all.push(at.elapsed().as_micros() as u64);
                    if all.len() == total {
                        all.sort_unstable();
                        let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
                        println!("{} {} {}", pct(0.5), pct(0.99), all[all.len() - 1]);
                        std::io::stdout().flush().unwrap();
                    }
                }
            });
            let hello = json!({"type": "hello", "num_connections": index + 1,
                "debug_info": {"host": "bench", "approximate_connection_time": 18060},
                "connection_info": {"app_id": "A1"}});
            if sink.send(Message::text(hello.to_string())).await.is_err() {
                continue;
            }
            open_tx.send_modify(|n| *n += 1);
            if index > 1 {
                continue;
            }
            let (sent, mut open) = (sent.clone(), open_rx.clone());
            tokio::spawn(async move {
                let _ = open.wait_for(|n| *n >= 2).await;
                let mut tick = (rate > 0)
                    .then(|| tokio::time::interval(Duration::from_secs_f64(2.0 / rate as f64)));
                for seq in (index..total).step_by(2) {
                    if let Some(tick) = tick.as_mut() {
                        tick.tick().await;
                    }
                    let (id, text) = slack_envelope(seq);
                    sent.lock().unwrap().insert(id, Instant::now());
                    let result = if tick.is_some() {
                        sink.send(Message::text(text)).await
                    } else {
                        sink.feed(Message::text(text)).await
                    };
                    if result.is_err() {
                        return;
                    }
                }
                let _ = sink.flush().await;
                std::future::pending::<()>().await;
            });
        }
    });
}
