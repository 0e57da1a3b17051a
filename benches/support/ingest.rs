//! The ingest scenarios: the storage ceiling, the firehose and paced latency, with the child-process
//! WebSocket peer that feeds them.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait};
use switchboard::actors::publisher::Published;
use tokio::sync::broadcast::error::RecvError;

use super::env::{Backend, Env, RunningApp, message, start_app};
use super::history_scenario;

/// Rows/s of 100-row multi-row INSERTs (~200-byte JSON each) over two connections for 3 s.
pub(crate) async fn ceiling(db: &DatabaseConnection) -> f64 {
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

/// Spawns this binary as a WebSocket peer; returns the child and its `ws://` URL.
pub(crate) fn spawn_peer(args: &[&str]) -> (Child, String) {
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

pub(crate) async fn firehose(backend: Backend, automations: usize, events: usize) {
    let env = Env::new(backend).await;
    let app = start_app(&env).await;
    if std::env::args().any(|a| a == "--without-history-indexes") {
        history_scenario::drop_history_indexes(&app.db).await;
    }
    app.automations(automations).await;
    let rate = firehose_on(&app, automations, events).await;
    println!(
        "firehose  {:<9} {:>2} automation(s): {:>7} events in {:>6.2} s = {:>7.0} events/s, {:>7.0} runs/s, {:>7.0} rows/s (stored {}, runs {})",
        backend.name(),
        automations,
        events,
        rate.seconds,
        events as f64 / rate.seconds,
        rate.runs as f64 / rate.seconds,
        (rate.stored + rate.runs) as f64 / rate.seconds,
        rate.stored,
        rate.runs,
    );
    if std::env::args().any(|a| a == "--breakdown") {
        println!(
            "firehose  {:<9} service: {}",
            backend.name(),
            app.stage_means().await
        );
    }
    app.stop().await;
}

/// What one firehose pass took: seconds from the source's creation to the last run committed,
/// and the events and runs then stored.
pub(crate) struct FirehoseRate {
    pub(crate) seconds: f64,
    pub(crate) stored: u64,
    pub(crate) runs: u64,
}

/// Feeds `events` firehose messages through a new source `orders` of `app`, whose `automations`
/// automations (on `order.*`, half the messages match) are already there; times it.
pub(crate) async fn firehose_on(
    app: &RunningApp,
    automations: usize,
    events: usize,
) -> FirehoseRate {
    let expected_runs = (events / 2) * automations;
    let (mut peer, url) = spawn_peer(&["firehose", &events.to_string()]);
    let started = Instant::now();
    app.source("orders", &url).await;
    app.wait_for_runs(expected_runs).await;
    let seconds = started.elapsed().as_secs_f64();
    let stored = entity::event::Entity::find().count(&app.db).await.unwrap();
    let runs = entity::automation_run::Entity::find()
        .count(&app.db)
        .await
        .unwrap();
    let _ = peer.kill();
    FirehoseRate {
        seconds,
        stored,
        runs,
    }
}

/// Feeds `events` firehose messages to a new source `orders` of `app` (whose `automations`
/// automations match half of them) and waits until every run is committed; answers the seconds
/// from the source's creation until then.
pub(crate) async fn feed_firehose(app: &RunningApp, automations: usize, events: usize) -> f64 {
    firehose_on(app, automations, events).await.seconds
}

pub(crate) async fn latency(backend: Backend, rate: usize, seconds: usize) {
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
