//! `workers-throughput`: `N` pending runs (default 100,000) drained by 8 HTTP workers with
//! batched claim (100) and batched complete; then the same claims and completions issued by 8
//! tasks straight through the repository functions (no HTTP), as the database's own ceiling for
//! the same updates.

mod http_worker;
mod ingest;
mod latency;

pub use ingest::ingest;
pub use latency::latency;

use super::*;
use http_worker::Until;
use switchboard::db;
use switchboard::db::inbox::{self, DispatchRecord};
use switchboard::db::queue::{ClaimRequest, Finish, Leases};
use switchboard::db::statuses::RunStatus;

/// Stores `count` events of source `jobs` and a PENDING run for each, 1,000 per transaction.
async fn seed(db: &DatabaseConnection, org: uuid::Uuid, automation: uuid::Uuid, count: usize) {
    for chunk in 0..count.div_ceil(1000) {
        let n = (count - chunk * 1000).min(1000);
        let now = db::now();
        let events: Vec<entity::event::Model> = (0..n)
            .map(|i| entity::event::Model {
                id: db::new_id(),
                org_id: org,
                origin: "webhook".into(),
                source: "jobs".into(),
                source_id: None,
                dedup_key: format!("j{chunk}-{i}"),
                event_key: Some("job.run".into()),
                raw: serde_json::from_str(&message(i, chunk)).unwrap(),
                payload: None,
                meta: json!({}),
                status: "received".into(),
                error: None,
                outcome: None,
                received_at: now,
                dispatched_at: None,
                replay_key: None,
            })
            .collect();
        inbox::insert_events(db, &events).await.unwrap();
        let millis = u64::try_from(now.timestamp_millis()).unwrap();
        let records: Vec<DispatchRecord> = events
            .iter()
            .map(|e| DispatchRecord {
                event_id: e.id,
                outcome: json!([]),
                runs: vec![inbox::pending_run(
                    inbox::run_id(automation, e.id, millis),
                    org,
                    automation,
                    (e.id, "jobs"),
                )],
            })
            .collect();
        inbox::commit_dispatch(db, &records).await.unwrap();
    }
}

/// The scenario on one engine.
pub async fn throughput(backend: Backend, runs: usize) {
    let env = Env::new(backend).await;
    let app = start_app(&env).await;
    let automation = app
        .post(
            "/v1/automations",
            json!({"name": "jobs", "trigger": {"type": "event", "source": "jobs", "on": "*"}}),
        )
        .await;
    let automation: uuid::Uuid = automation["id"].as_str().unwrap().parse().unwrap();
    let worker_key = worker_key(&app).await;
    let org: uuid::Uuid = app.get("/v1/me").await["org_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    seed(&app.db, org, automation, runs).await;

    let started = Instant::now();
    let workers = http_worker::start(&app.base, &worker_key, 8, 100, &Until::Empty);
    let completed = http_worker::completed(workers).await;
    let http_rate = completed as f64 / started.elapsed().as_secs_f64();

    // The same claims and completions without HTTP: every run back to PENDING, then 8 tasks.
    app.db
        .execute_unprepared(
            "UPDATE automation_runs SET status = 'PENDING', lease_token = NULL, \
             lease_expires_at = NULL, completed_at = NULL, result = NULL",
        )
        .await
        .unwrap();
    let started = Instant::now();
    let direct = drain_direct(&app.db, org).await;
    let db_rate = direct as f64 / started.elapsed().as_secs_f64();
    println!(
        "workers-throughput {:<9} {runs} runs: {:>7.0} runs/s over HTTP (8 workers, claim 100 + batch complete; {completed} completed) | database ceiling for the same claims and completions: {:>7.0} runs/s ({direct} runs, 8 tasks, no HTTP)",
        backend.name(),
        http_rate,
        db_rate,
    );
    app.stop().await;
}

/// A new `worker` key.
pub(super) async fn worker_key(app: &RunningApp) -> String {
    app.post("/v1/api-keys", json!({"name": "w", "role": "worker"}))
        .await["key"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The same claims and completions as the HTTP workers' through the repository functions, 8
/// tasks.
async fn drain_direct(db: &DatabaseConnection, org: uuid::Uuid) -> usize {
    let mut tasks = Vec::new();
    for w in 0..8 {
        let db = db.clone();
        tasks.push(actix_web::rt::spawn(async move {
            let mut done = 0usize;
            loop {
                let req = ClaimRequest {
                    org_id: org,
                    limit: 100,
                    automation_ids: None,
                    sources: None,
                    worker: Some(format!("c{w}")),
                    token: format!("lt_bench_{w}_{done}"),
                    leases: Leases::uniform(60),
                    now: db::now(),
                };
                let rows = db::queue::claim(&db, &req, &Vec::new()).await.unwrap();
                if rows.is_empty() {
                    return done;
                }
                let finishes: Vec<Finish> = rows
                    .iter()
                    .map(|r| Finish {
                        id: r.id,
                        token: r.lease_token.clone().unwrap_or_default(),
                        status: RunStatus::Succeeded,
                        result: Some(json!({"ok": true})),
                        error: None,
                        available_at: None,
                    })
                    .collect();
                let applied = db::queue::finish(&db, org, &finishes, db::now())
                    .await
                    .unwrap();
                done += applied.iter().filter(|a| **a).count();
            }
        }));
    }
    let mut direct = 0;
    for t in tasks {
        direct += t.await.unwrap();
    }
    direct
}
