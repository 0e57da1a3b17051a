//! The many-sources scenario: `sources` generic sources (spread over 50 loopback hosts, see
//! `hosts_peer.rs`), one automation each (`on: order.*`, no filter: one run per event), each
//! source receiving one message a second for `seconds` seconds at its own random phase. Measures
//! message sent → run committed (p50/p99/max, from the `run.created` live messages), that every
//! event and every run is committed, the service's average CPU over the run and its resident
//! memory.
//!
//! The automations are written straight into the database and the service restarted to load
//! them: creating 5,000 automations one by one through the API is what issue 15's target 1 is
//! about, and not what this scenario measures.

use std::time::{Duration, Instant};

use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::json;
use switchboard::actors::publisher::Published;
use tokio::sync::broadcast::error::RecvError;

use super::env::{Backend, Env, RunningApp, start_app};
use super::idle::{cpu_seconds, proc_kib};
use super::reconnect::{HostsPeer, check_open_files, create_sources};

pub(crate) async fn many_sources(backend: Backend, sources: usize, seconds: usize) {
    check_open_files(sources + 1_000);
    let env = Env::new(backend).await;
    let mut peer = HostsPeer::spawn(50);
    let app = prepare(&env, &mut peer, sources).await;
    let runs = app.publisher.subscribe();
    let total = sources * seconds;
    let (rss_before, cpu_before, started) = (proc_kib("VmRSS"), cpu_seconds(), Instant::now());
    let going = peer.ask(&format!("go {seconds}"));
    // On stderr, for scripts that profile only the sending phase (perf, /proc/PID/io).
    eprintln!("many-sources: the peer is sending");
    let deadline = started + Duration::from_secs(seconds as u64 + 60);
    let (mut samples, rss_max) = collect(&app, runs, total, deadline).await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = (cpu_seconds() - cpu_before) / elapsed;
    let events = entity::event::Entity::find().count(&app.db).await.unwrap();
    let committed = entity::automation_run::Entity::find()
        .count(&app.db)
        .await
        .unwrap();
    samples.sort_unstable();
    let pct = |p: f64| {
        let i = ((samples.len() as f64 * p) as usize).min(samples.len().saturating_sub(1));
        samples.get(i).copied().unwrap_or(0) as f64 / 1000.0
    };
    println!(
        "many-sources {:<9} {sources} sources x 1 msg/s for {seconds} s (peer {going}): {events} of {total} events stored, {committed} runs committed; send -> run p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} runs measured); CPU {:.2} cores on average over {elapsed:.1} s; RSS {:.1} MiB before, at most {:.1} MiB",
        backend.name(),
        pct(0.5),
        pct(0.99),
        pct(1.0),
        samples.len(),
        cpu,
        rss_before as f64 / 1024.0,
        rss_max as f64 / 1024.0,
    );
    println!("             {}", app.stage_means().await);
    peer.kill();
    app.stop().await;
}

/// Creates the sources, writes their automations, restarts the service so it loads them, and
/// waits until every source is connected (and a little longer, for the start to settle).
async fn prepare(env: &Env, peer: &mut HostsPeer, sources: usize) -> RunningApp {
    let app = start_app(env).await;
    create_sources(&app, peer, sources).await;
    insert_automations(&app, sources).await;
    app.stop().await;
    peer.wait_closed(Duration::from_secs(10)).await;
    let app = start_app(env).await;
    let connected = peer
        .wait_open(sources, Instant::now(), Duration::from_secs(120))
        .await;
    assert!(
        connected.is_ok(),
        "not all sources connected: {connected:?}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    app
}

/// Send → run latencies (µs) of the first run of each event until `total` runs were created
/// (or the deadline), and the highest resident memory seen meanwhile (KiB).
async fn collect(
    app: &RunningApp,
    mut runs: tokio::sync::broadcast::Receiver<Published>,
    total: usize,
    deadline: Instant,
) -> (Vec<u64>, u64) {
    let (mut samples, mut rss_max) = (Vec::with_capacity(total), proc_kib("VmRSS"));
    let mut seen = std::collections::HashSet::new();
    let mut last_rss = Instant::now();
    while (app.metrics.runs_created.get() as usize) < total && Instant::now() < deadline {
        if last_rss.elapsed() >= Duration::from_secs(1) {
            rss_max = rss_max.max(proc_kib("VmRSS"));
            last_rss = Instant::now();
        }
        match tokio::time::timeout(Duration::from_millis(200), runs.recv()).await {
            Ok(Ok(Published::RunCreated {
                event_id,
                event_payload,
                ..
            })) => {
                if seen.insert(event_id) {
                    let sent = event_payload["payload"]["sent_us"].as_u64().unwrap_or(0);
                    samples.push(now_us().saturating_sub(sent));
                }
            }
            Ok(Ok(_) | Err(RecvError::Lagged(_))) | Err(_) => {}
            Ok(Err(RecvError::Closed)) => break,
        }
    }
    (samples, rss_max.max(proc_kib("VmRSS")))
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// One automation per source `r-{i}`, written in batches of 500 rows.
async fn insert_automations(app: &RunningApp, sources: usize) {
    let me = app.get("/v1/me").await;
    let org_id: uuid::Uuid = me["org_id"].as_str().unwrap().parse().unwrap();
    let now = chrono::Utc::now();
    let rows: Vec<entity::automation::ActiveModel> = (0..sources)
        .map(|i| {
            sea_orm::IntoActiveModel::into_active_model(entity::automation::Model {
                id: uuid::Uuid::now_v7(),
                org_id,
                name: format!("a-{i}"),
                enabled: true,
                trigger: json!({"type": "event", "source": format!("r-{i}"), "on": "order.*"}),
                retry: None,
                lease_s: None,
                max_concurrency: None,
                created_at: now,
                updated_at: now,
            })
        })
        .collect();
    for chunk in rows.chunks(500) {
        entity::automation::Entity::insert_many(chunk.to_vec())
            .exec(&app.db)
            .await
            .unwrap();
    }
}
