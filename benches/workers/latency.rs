//! `workers-latency`: paced webhook deliveries, one automation, four workers waiting in
//! long-poll claims; per run, the time from the event's `received_at` (the service's clock) to the
//! claim returning it to a worker. With `--breakdown`, the bench also subscribes to the live
//! stream and splits that time at the commit of the event's run (received → run committed, run
//! committed → claimed); the subscription makes the service publish, so the headline figure is
//! best taken without it.

use std::collections::HashMap;

use super::http_worker::post;
use super::*;

/// Per claimed run `(event id, received_at, claimed at)`, shared by the waiting workers.
type Latencies = std::rc::Rc<std::cell::RefCell<Vec<(String, Stamp, Stamp)>>>;

type Stamp = chrono::DateTime<chrono::Utc>;

/// The `q` quantile of sorted `values` (NaN when empty).
fn quantile(values: &[f64], q: f64) -> f64 {
    values
        .get(((values.len() as f64 * q) as usize).min(values.len().saturating_sub(1)))
        .copied()
        .unwrap_or(f64::NAN)
}

/// Milliseconds from `a` to `b`.
fn ms(a: Stamp, b: Stamp) -> f64 {
    (b - a).num_microseconds().unwrap_or(0) as f64 / 1000.0
}

/// `p50 X ms, p99 Y ms, max Z ms` of `values` (sorted here).
fn summary(mut values: Vec<f64>) -> String {
    values.sort_by(f64::total_cmp);
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        quantile(&values, 0.5),
        quantile(&values, 0.99),
        values.last().copied().unwrap_or(f64::NAN)
    )
}

/// When each event's runs were committed (by event id), recorded from the live stream.
type Commits = actix_web::rt::task::JoinHandle<HashMap<String, Stamp>>;

/// Records when each event's runs were committed, from the live stream, until `stop` fires.
fn watch_commits(app: &RunningApp) -> (Commits, tokio::sync::oneshot::Sender<()>) {
    use switchboard::actors::publisher::Published;
    let mut stream = app.publisher.subscribe();
    let (stop_tx, mut stop) = tokio::sync::oneshot::channel::<()>();
    let watcher = actix_web::rt::spawn(async move {
        let mut committed = HashMap::new();
        loop {
            tokio::select! {
                _ = &mut stop => return committed,
                message = stream.recv() => {
                    if let Ok(Published::RunCreated { event_id, .. }) = message {
                        committed.entry(event_id.to_string()).or_insert_with(chrono::Utc::now);
                    }
                }
            }
        }
    });
    (watcher, stop_tx)
}

/// `workers-latency`: `rate` webhook deliveries per second for `seconds`, one automation, four
/// workers waiting in long-poll claims; per run, the time from the event's `received_at` (the
/// service's clock) to the claim returning it to a worker, p50/p99/max.
pub async fn latency(backend: Backend, rate: usize, seconds: usize) {
    let env = Env::new(backend).await;
    let app = start_app(&env).await;
    let path = webhook_and_automation(&app).await;
    let worker_key = worker_key(&app).await;
    let total = rate * seconds;
    let watcher = std::env::args()
        .any(|a| a == "--breakdown")
        .then(|| watch_commits(&app));
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
    let claimed = latencies.borrow().clone();
    let total_ms: Vec<f64> = claimed.iter().map(|(_, r, c)| ms(*r, *c)).collect();
    println!(
        "workers-latency    {:<9} {rate} events/s for {seconds} s, 4 waiting workers: event received → run claimed {} ({} runs)",
        backend.name(),
        summary(total_ms),
        claimed.len(),
    );
    if let Some((watcher, stop)) = watcher {
        let _ = stop.send(());
        print_breakdown(&claimed, watcher.await.unwrap());
        println!("                   {}", app.stage_means().await);
    }
    app.stop().await;
}

/// An unsigned webhook of source `jobs` and an automation taking all its events; answers the
/// delivery path.
async fn webhook_and_automation(app: &RunningApp) -> String {
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
    path
}

/// Prints the split of each claimed run's latency at its commit.
fn print_breakdown(claimed: &[(String, Stamp, Stamp)], committed: HashMap<String, Stamp>) {
    let (mut to_commit, mut to_claim) = (Vec::new(), Vec::new());
    for (event, received, at) in claimed {
        if let Some(commit) = committed.get(event) {
            to_commit.push(ms(*received, *commit));
            to_claim.push(ms(*commit, *at));
        }
    }
    println!(
        "                   breakdown over {} runs: received → run committed {} | committed → claimed {}",
        to_commit.len(),
        summary(to_commit),
        summary(to_claim),
    );
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
            let received: Stamp =
                serde_json::from_value(item["event_payload"]["received_at"].clone()).unwrap();
            let event = item["event_id"].as_str().unwrap_or_default().to_owned();
            latencies.borrow_mut().push((event, received, now));
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
