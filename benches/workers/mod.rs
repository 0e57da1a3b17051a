//! `workers-throughput`: `N` pending runs (default 100,000) drained by 8 HTTP workers with
//! batched claim (100) and batched complete; then the same claims and completions issued by 8
//! tasks straight through the repository functions (no HTTP), as the database's own ceiling for
//! the same updates.

use super::*;
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

async fn post(client: &awc::Client, url: String, key: &str, body: Value) -> Value {
    let mut res = client
        .post(url)
        .insert_header(("Authorization", format!("Bearer {key}")))
        .send_json(&body)
        .await
        .unwrap();
    let value: Value = res.json().limit(64 << 20).await.unwrap();
    assert!(res.status().is_success(), "{value}");
    value
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
    let completed = drain_over_http(&app.base, &worker_key).await;
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
async fn worker_key(app: &RunningApp) -> String {
    app.post("/v1/api-keys", json!({"name": "w", "role": "worker"}))
        .await["key"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// 8 HTTP workers claim 100 at a time and complete each batch at once until nothing is left;
/// answers how many completions were applied.
async fn drain_over_http(base: &str, worker_key: &str) -> usize {
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (base, key) = (base.to_owned(), worker_key.to_owned());
        tasks.push(actix_web::rt::spawn(async move {
            let client = awc::Client::builder().timeout(Duration::from_secs(60)).finish();
            let mut done = 0usize;
            loop {
                let claimed = post(&client, format!("{base}/v1/runs/claim"), &key,
                    json!({"limit": 100, "worker": format!("b{w}")})).await;
                let items = claimed["items"].as_array().unwrap();
                if items.is_empty() {
                    return done;
                }
                let batch: Vec<Value> = items.iter()
                    .map(|r| json!({"id": r["id"], "lease_token": r["lease_token"], "result": {"ok": true}}))
                    .collect();
                let answer = post(&client, format!("{base}/v1/runs/complete"), &key, json!({"items": batch})).await;
                done += answer["items"].as_array().unwrap().iter().filter(|i| i["ok"] == true).count();
            }
        }));
    }
    let mut completed = 0;
    for t in tasks {
        completed += t.await.unwrap();
    }
    completed
}

/// The same as [`drain_over_http`] through the repository functions, 8 tasks.
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

/// Claim-to-event latencies in ms, shared by the waiting workers.
type Latencies = std::rc::Rc<std::cell::RefCell<Vec<f64>>>;

/// `workers-latency`: `rate` webhook deliveries per second for `seconds`, one automation, four
/// workers waiting in long-poll claims; per run, the time from the event's `received_at` (the
/// service's clock) to the claim returning it to a worker, p50/p99/max.
pub async fn latency(backend: Backend, rate: usize, seconds: usize) {
    let env = Env::new(backend).await;
    let app = start_app(&env).await;
    let hook = app
        .post(
            "/v1/webhooks",
            json!({"name": "Jobs", "source": "jobs", "verifier": {"preset": "stripe"}, "insecure": true}),
        )
        .await;
    let path = hook["webhook_url"]
        .as_str()
        .unwrap()
        .split_once("/v1/")
        .map(|(_, p)| format!("/v1/{p}"))
        .unwrap();
    app.post(
        "/v1/automations",
        json!({"name": "jobs", "trigger": {"type": "event", "source": "jobs", "on": "*"}}),
    )
    .await;
    let worker_key = worker_key(&app).await;
    let total = rate * seconds;
    let latencies: Latencies = std::rc::Rc::new(std::cell::RefCell::new(Vec::with_capacity(total)));
    let mut workers = Vec::new();
    for w in 0..4 {
        let worker = waiting_worker(
            app.base.clone(),
            worker_key.clone(),
            w,
            latencies.clone(),
            total,
        );
        workers.push(actix_web::rt::spawn(worker));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let url = format!("{}{path}", app.base);
    actix_web::rt::spawn(send_paced(url, rate, total))
        .await
        .unwrap();
    for w in workers {
        let _ = w.await;
    }
    let mut all = latencies.borrow().clone();
    all.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "workers-latency    {:<9} {rate} events/s for {seconds} s, 4 waiting workers: event received → run claimed p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} runs)",
        backend.name(),
        pick(0.50),
        pick(0.99),
        all.last().copied().unwrap_or(f64::NAN),
        all.len(),
    );
    app.stop().await;
}

/// Worker `w`: long-polls claims (20 at a time, waiting 3 s), records each run's latency and
/// completes the batch; stops once `total` latencies are in and a claim comes back empty.
async fn waiting_worker(base: String, key: String, w: usize, latencies: Latencies, total: usize) {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    loop {
        let claimed = post(
            &client,
            format!("{base}/v1/runs/claim"),
            &key,
            json!({"limit": 20, "wait_s": 3, "worker": format!("l{w}")}),
        )
        .await;
        let now = chrono::Utc::now();
        let items = claimed["items"].as_array().unwrap().clone();
        if items.is_empty() {
            if latencies.borrow().len() >= total {
                return;
            }
            continue;
        }
        for item in &items {
            let received: chrono::DateTime<chrono::Utc> =
                serde_json::from_value(item["event_payload"]["received_at"].clone()).unwrap();
            let ms = (now - received).num_microseconds().unwrap_or(0) as f64 / 1000.0;
            latencies.borrow_mut().push(ms);
        }
        let batch: Vec<Value> = items
            .iter()
            .map(|r| json!({"id": r["id"], "lease_token": r["lease_token"]}))
            .collect();
        post(
            &client,
            format!("{base}/v1/runs/complete"),
            &key,
            json!({"items": batch}),
        )
        .await;
    }
}

/// Delivers `total` webhook events to `url` at `rate`/s, each in its own task, and waits for all.
async fn send_paced(url: String, rate: usize, total: usize) {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    let started = Instant::now();
    let mut inflight = Vec::new();
    for i in 0..total {
        let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
        let (client, url) = (client.clone(), url.clone());
        inflight.push(actix_web::rt::spawn(async move {
            let body = format!(r#"{{"id":"evt_{i}","type":"job.run","n":{i}}}"#);
            let _ = client
                .post(url)
                .insert_header(("content-type", "application/json"))
                .send_body(body)
                .await;
        }));
    }
    for f in inflight {
        let _ = f.await;
    }
}
