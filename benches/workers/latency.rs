//! `workers-latency`: paced webhook deliveries, one automation, four workers waiting in
//! long-poll claims; per run, the time from the event's `received_at` (the service's clock) to the
//! claim returning it to a worker.

use super::http_worker::post;
use super::*;

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

/// Worker `w`: long-polls claims (up to 100 at a time, waiting 3 s), records each run's
/// latency and hands the batch's completion to a task of its own, as a busy worker completes
/// runs while it claims the next ones; stops once `total` latencies are in and a claim comes
/// back empty.
async fn waiting_worker(base: String, key: String, w: usize, latencies: Latencies, total: usize) {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    let mut completions = Vec::new();
    loop {
        let claimed = post(
            &client,
            format!("{base}/v1/runs/claim"),
            &key,
            json!({"limit": 100, "wait_s": 3, "worker": format!("l{w}")}),
        )
        .await;
        let now = chrono::Utc::now();
        let items = claimed["items"].as_array().unwrap().clone();
        if items.is_empty() {
            if latencies.borrow().len() >= total {
                break;
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
        let (client, url) = (client.clone(), format!("{base}/v1/runs/complete"));
        let key = key.clone();
        completions.push(actix_web::rt::spawn(async move {
            post(&client, url, &key, json!({"items": batch})).await;
        }));
    }
    for c in completions {
        c.await.unwrap();
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
