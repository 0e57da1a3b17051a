//! The run queue over HTTP on both engines: claims (never one run to two workers, long-poll
//! wake-up, `max_concurrency`), leases (heartbeat, expiry → attempt 2, fencing of late calls),
//! failures (backoff, `max_attempts` → FAILED, retry by hand), cancel while RUNNING, batches
//! and roles.
use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{ADMIN_KEY, TestApp, assert_problem, eventually};
use crate::ingest::runs_of;

const JSON: (&str, &str) = ("content-type", "application/json");

/// An unsigned webhook of source `jobs` plus an automation on it with `extra` settings; returns
/// (delivery path, automation id).
pub async fn queue_setup(app: &TestApp, extra: Value) -> (String, String) {
    let hook = app
        .post(
            "/v1/webhooks",
            ADMIN_KEY,
            json!({"name": "Jobs", "source": "jobs", "verifier": {"preset": "stripe"}, "insecure": true}),
        )
        .await;
    assert_eq!(hook.status, 201, "{}", hook.text);
    let url = hook.body["webhook_url"]
        .as_str()
        .unwrap()
        .replace("https://hooks.example.com", "");
    let mut body =
        json!({"name": "jobs", "trigger": {"type": "event", "source": "jobs", "on": "job.*"}});
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        body[k] = v;
    }
    let created = app.post("/v1/automations", ADMIN_KEY, body).await;
    assert_eq!(created.status, 201, "{}", created.text);
    (url, created.body["id"].as_str().unwrap().to_owned())
}

/// Delivers events `from..to` and waits until their runs exist.
pub async fn enqueue(app: &TestApp, url: &str, automation: &str, from: usize, to: usize) {
    for i in from..to {
        let body = format!(r#"{{"id":"evt_{i}","type":"job.run","n":{i}}}"#);
        let resp = app
            .deliver(url, &[(JSON.0, JSON.1.to_owned())], body.as_bytes())
            .await;
        assert_eq!(resp.status, 200, "{}", resp.text);
    }
    assert!(
        eventually(Duration::from_secs(20), || async {
            runs_of(app, automation).await == to as u64
        })
        .await,
        "runs were not created"
    );
}

pub async fn worker_key(app: &TestApp) -> String {
    let created = app
        .post(
            "/v1/api-keys",
            ADMIN_KEY,
            json!({"name": "w", "role": "worker"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    created.body["key"].as_str().unwrap().to_owned()
}

pub async fn claim(app: &TestApp, key: &str, body: Value) -> Vec<Value> {
    let resp = app.post("/v1/runs/claim", key, body).await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    resp.body["items"].as_array().unwrap().clone()
}

fn run_path(run: &Value, op: &str) -> String {
    format!("/v1/runs/{}/{op}", run["id"].as_str().unwrap())
}

both_backends! {
    async fn claim_heartbeat_complete_and_fencing(app: TestApp) {
        let key = worker_key(&app).await;
        let (url, automation) = queue_setup(&app, json!({})).await;
        enqueue(&app, &url, &automation, 0, 1).await;
        let items = claim(&app, &key, json!({"limit": 5, "worker": "w1"})).await;
        assert_eq!(items.len(), 1);
        let run = &items[0];
        assert_eq!(run["attempt"], 1);
        assert_eq!(run["automation_id"], automation.as_str());
        assert_eq!(run["automation_name"], "jobs");
        assert_eq!(run["source"], "jobs");
        assert_eq!(run["event_key"], "job.run");
        assert_eq!(run["event_payload"]["payload"]["n"], 0);
        let token = run["lease_token"].as_str().unwrap().to_owned();
        assert!(run["lease_expires_at"].is_string());
        // Nothing else to claim.
        assert!(claim(&app, &key, json!({})).await.is_empty());
        let shown = app.get(&format!("/v1/runs/{}", run["id"].as_str().unwrap()), ADMIN_KEY).await;
        assert_eq!(shown.body["status"], "RUNNING");
        assert_eq!(shown.body["lease_owner"], "w1");
        let hb = app.post(&run_path(run, "heartbeat"), &key, json!({"lease_token": token, "lease_s": 120})).await;
        assert_eq!(hb.status, 200, "{}", hb.text);
        let wrong = app.post(&run_path(run, "complete"), &key, json!({"lease_token": "lt_wrong"})).await;
        assert_problem(&wrong, 409, Some("lease_token"));
        assert!(wrong.body["detail"].as_str().unwrap().starts_with("lease_lost"), "{}", wrong.text);
        let done = app.post(&run_path(run, "complete"), &key, json!({"lease_token": token, "result": {"ok": true}})).await;
        assert_eq!(done.status, 200, "{}", done.text);
        assert_eq!(done.body["status"], "SUCCEEDED");
        assert_eq!(done.body["result"], json!({"ok": true}));
        assert!(done.body["completed_at"].is_string());
        // A repeated complete with the same token changes nothing and succeeds.
        let again = app.post(&run_path(run, "complete"), &key, json!({"lease_token": token, "result": {"ok": false}})).await;
        assert_eq!(again.status, 200, "{}", again.text);
        assert_eq!(again.body["result"], json!({"ok": true}));
        let late_hb = app.post(&run_path(run, "heartbeat"), &key, json!({"lease_token": token})).await;
        assert_problem(&late_hb, 409, Some("lease_token"));
        let listed = app.get("/v1/runs?status=SUCCEEDED", ADMIN_KEY).await;
        assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    }

    async fn roles_and_validation(app: TestApp) {
        let member = app.post("/v1/api-keys", ADMIN_KEY, json!({"name": "m", "role": "member"})).await;
        let member = member.body["key"].as_str().unwrap().to_owned();
        assert_problem(&app.post("/v1/runs/claim", &member, json!({})).await, 403, None);
        let key = worker_key(&app).await;
        assert_problem(&app.post("/v1/runs/claim", &key, json!({"limit": 0})).await, 422, Some("limit"));
        assert_problem(&app.post("/v1/runs/claim", &key, json!({"limit": 101})).await, 422, Some("limit"));
        assert_problem(&app.post("/v1/runs/claim", &key, json!({"wait_s": 31})).await, 422, Some("wait_s"));
        assert_problem(&app.post("/v1/runs/claim", &key, json!({"lease_s": 0})).await, 422, Some("lease_s"));
        assert_problem(&app.post("/v1/runs/claim", &key, json!({"bogus": 1})).await, 422, None);
        assert_problem(&app.post("/v1/runs/claim", &key, json!({"sources": ["Not A Slug"]})).await, 422, Some("sources[0]"));
        // Admins claim too; an empty queue answers an empty list at once.
        assert!(claim(&app, ADMIN_KEY, json!({"wait_s": 0})).await.is_empty());
        // Automation queue settings are validated and shown with defaults.
        let bad = app.post("/v1/automations", ADMIN_KEY, json!({"name": "a", "trigger": {"type": "event", "source": "s", "on": "*"},
            "retry": {"max_attempts": 0, "initial_backoff_s": 100, "max_backoff_s": 10}, "lease_s": 0, "max_concurrency": 0})).await;
        for field in ["retry.max_attempts", "retry.max_backoff_s", "lease_s", "max_concurrency"] {
            assert_problem(&bad, 422, Some(field));
        }
        let unknown = app.post("/v1/automations", ADMIN_KEY, json!({"name": "a", "trigger": {"type": "event", "source": "s", "on": "*"},
            "retry": {"attempts": 2}})).await;
        assert_problem(&unknown, 422, None);
        let ok = app.post("/v1/automations", ADMIN_KEY, json!({"name": "a", "trigger": {"type": "event", "source": "s", "on": "*"},
            "retry": {"max_attempts": 5}})).await;
        assert_eq!(ok.status, 201, "{}", ok.text);
        assert_eq!(ok.body["retry"], json!({"max_attempts": 5, "initial_backoff_s": 10, "max_backoff_s": 600}));
        assert_eq!(ok.body["lease_s"], 60);
        assert!(ok.body["max_concurrency"].is_null());
        let id = ok.body["id"].as_str().unwrap();
        let patched = app.patch(&format!("/v1/automations/{id}"), ADMIN_KEY, json!({"lease_s": 30, "max_concurrency": 4})).await;
        assert_eq!(patched.status, 200, "{}", patched.text);
        assert_eq!((patched.body["lease_s"].clone(), patched.body["max_concurrency"].clone()), (json!(30), json!(4)));
        assert_eq!(patched.body["retry"]["max_attempts"], 5);
        // Batch limits and result size.
        assert_problem(&app.post("/v1/runs/complete", &key, json!({"items": []})).await, 422, Some("items"));
        let big = "x".repeat(70 * 1024);
        let huge = app.post("/v1/runs/complete", &key, json!({"items": [{"id": uuid::Uuid::now_v7(), "lease_token": "t", "result": big}]})).await;
        assert_problem(&huge, 422, Some("items[0].result"));
        let missing = app.post("/v1/runs/complete", &key, json!({"items": [{"id": uuid::Uuid::now_v7(), "lease_token": "t"}]})).await;
        assert_eq!(missing.body["items"][0]["reason"], "not_found");
    }

    async fn eight_concurrent_workers_never_get_the_same_run(app: TestApp) {
        let key = worker_key(&app).await;
        let (url, automation) = queue_setup(&app, json!({})).await;
        enqueue(&app, &url, &automation, 0, 120).await;
        let app = std::rc::Rc::new(app);
        let mut tasks = Vec::new();
        for w in 0..8 {
            let (app, key) = (app.clone(), key.clone());
            tasks.push(actix_web::rt::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let items = claim(&app, &key, json!({"limit": 4, "worker": format!("w{w}")})).await;
                    if items.is_empty() {
                        break;
                    }
                    let batch: Vec<Value> = items.iter().map(|r| json!({"id": r["id"], "lease_token": r["lease_token"]})).collect();
                    let done = app.post("/v1/runs/complete", &key, json!({"items": batch})).await;
                    assert_eq!(done.status, 200, "{}", done.text);
                    for item in done.body["items"].as_array().unwrap() {
                        assert_eq!(item["ok"], true, "{item}");
                    }
                    mine.extend(items.iter().map(|r| r["id"].as_str().unwrap().to_owned()));
                }
                mine
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let unique: HashSet<_> = all.iter().collect();
        assert_eq!(all.len(), 120, "every run claimed exactly once");
        assert_eq!(unique.len(), 120, "no run went to two workers");
        let listed = app.get("/v1/runs?status=SUCCEEDED&limit=200", ADMIN_KEY).await;
        assert_eq!(listed.body["items"].as_array().unwrap().len(), 120);
    }

    async fn a_vanished_worker_loses_its_lease_and_the_run_runs_again(app: TestApp) {
        let key = worker_key(&app).await;
        let (url, automation) = queue_setup(&app, json!({"lease_s": 1, "retry": {"initial_backoff_s": 0}})).await;
        enqueue(&app, &url, &automation, 0, 1).await;
        let first = claim(&app, &key, json!({"worker": "doomed"})).await;
        assert_eq!(first.len(), 1);
        let old_token = first[0]["lease_token"].as_str().unwrap().to_owned();
        // The worker vanishes: no heartbeat. The watchdog re-queues within 2 s of expiry.
        let started = Instant::now();
        let second = claim(&app, &key, json!({"wait_s": 5, "worker": "heir"})).await;
        assert_eq!(second.len(), 1, "the run came back");
        assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
        assert_eq!(second[0]["id"], first[0]["id"]);
        assert_eq!(second[0]["attempt"], 2);
        assert_ne!(second[0]["lease_token"], first[0]["lease_token"]);
        // The late complete of the vanished worker is refused and changes nothing.
        let late = app.post(&run_path(&first[0], "complete"), &key, json!({"lease_token": old_token, "result": 1})).await;
        assert_problem(&late, 409, Some("lease_token"));
        let shown = app.get(&format!("/v1/runs/{}", first[0]["id"].as_str().unwrap()), ADMIN_KEY).await;
        assert_eq!(shown.body["status"], "RUNNING");
        assert_eq!(shown.body["lease_owner"], "heir");
        assert!(shown.body["result"].is_null());
        let metrics = app.get("/metrics", ADMIN_KEY).await;
        assert!(metrics.text.contains("switchboard_lease_expiries_total 1"), "{}", metrics.text);
    }

    async fn failures_back_off_then_fail_and_can_be_retried(app: TestApp) {
        let key = worker_key(&app).await;
        let (url, automation) = queue_setup(&app, json!({"retry": {"max_attempts": 2, "initial_backoff_s": 0, "max_backoff_s": 1}})).await;
        enqueue(&app, &url, &automation, 0, 2).await;
        let runs = claim(&app, &key, json!({"limit": 2})).await;
        assert_eq!(runs.len(), 2);
        // A worker-chosen delay keeps the run out of reach.
        let later = app.post(&run_path(&runs[1], "fail"), &key, json!({"lease_token": runs[1]["lease_token"], "error": "busy", "retry_after_s": 3600})).await;
        assert_eq!(later.status, 200, "{}", later.text);
        assert_eq!(later.body["status"], "PENDING");
        let failed = app.post(&run_path(&runs[0], "fail"), &key, json!({"lease_token": runs[0]["lease_token"], "error": "boom"})).await;
        assert_eq!(failed.status, 200, "{}", failed.text);
        assert_eq!(failed.body["status"], "PENDING");
        assert_eq!(failed.body["error_detail"], "boom");
        let again = claim(&app, &key, json!({"wait_s": 3, "limit": 5})).await;
        assert_eq!(again.len(), 1, "only the run without retry_after_s is back");
        assert_eq!(again[0]["id"], runs[0]["id"]);
        assert_eq!(again[0]["attempt"], 2);
        let last = app.post("/v1/runs/fail", &key, json!({"items": [{"id": again[0]["id"], "lease_token": again[0]["lease_token"], "error": "boom again"}]})).await;
        assert_eq!(last.body["items"][0]["status"], "FAILED", "{}", last.text);
        let shown = app.get(&format!("/v1/runs/{}", runs[0]["id"].as_str().unwrap()), ADMIN_KEY).await;
        assert_eq!(shown.body["status"], "FAILED");
        assert_eq!(shown.body["attempts"], 2);
        // Retry by hand: members and admins, FAILED or CANCELLED only.
        let worker_retry = app.post(&run_path(&runs[0], "retry"), &key, json!({})).await;
        assert_problem(&worker_retry, 403, None);
        let retried = app.post(&run_path(&runs[0], "retry"), ADMIN_KEY, json!({})).await;
        assert_eq!(retried.status, 200, "{}", retried.text);
        assert_eq!(retried.body["status"], "PENDING");
        assert_problem(&app.post(&run_path(&runs[0], "retry"), ADMIN_KEY, json!({})).await, 409, None);
        let fresh = claim(&app, &key, json!({})).await;
        assert_eq!(fresh[0]["attempt"], 1);
        // retry: false fails at once.
        let given_up = app.post(&run_path(&fresh[0], "fail"), &key, json!({"lease_token": fresh[0]["lease_token"], "error": "bad input", "retry": false})).await;
        assert_eq!(given_up.body["status"], "FAILED", "{}", given_up.text);
    }

    async fn cancelling_a_running_run_fences_its_worker(app: TestApp) {
        let key = worker_key(&app).await;
        let (url, automation) = queue_setup(&app, json!({})).await;
        enqueue(&app, &url, &automation, 0, 1).await;
        let run = claim(&app, &key, json!({})).await.remove(0);
        let cancelled = app.post(&run_path(&run, "cancel"), ADMIN_KEY, json!({})).await;
        assert_eq!(cancelled.status, 200, "{}", cancelled.text);
        assert_eq!(cancelled.body["status"], "CANCELLED");
        let hb = app.post(&run_path(&run, "heartbeat"), &key, json!({"lease_token": run["lease_token"]})).await;
        assert_problem(&hb, 409, Some("lease_token"));
        assert!(hb.body["detail"].as_str().unwrap().starts_with("cancelled"), "{}", hb.text);
        let done = app.post(&run_path(&run, "complete"), &key, json!({"lease_token": run["lease_token"]})).await;
        assert_problem(&done, 409, None);
        let shown = app.get(&format!("/v1/runs/{}", run["id"].as_str().unwrap()), ADMIN_KEY).await;
        assert_eq!(shown.body["status"], "CANCELLED");
    }

    async fn a_waiting_claim_wakes_when_a_run_is_committed(app: TestApp) {
        let key = worker_key(&app).await;
        let (url, automation) = queue_setup(&app, json!({})).await;
        let app = std::rc::Rc::new(app);
        let waiter = {
            let (app, key) = (app.clone(), key.clone());
            actix_web::rt::spawn(async move {
                let items = claim(&app, &key, json!({"wait_s": 20})).await;
                (items, Instant::now())
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let delivered = Instant::now();
        enqueue(&app, &url, &automation, 0, 1).await;
        let (items, returned) = waiter.await.unwrap();
        assert_eq!(items.len(), 1);
        let took = returned.duration_since(delivered);
        assert!(took < Duration::from_secs(2), "the waiting claim took {took:?}");
    }

    async fn max_concurrency_caps_running_runs(app: TestApp) {
        let key = worker_key(&app).await;
        let (url, automation) = queue_setup(&app, json!({"max_concurrency": 2})).await;
        enqueue(&app, &url, &automation, 0, 5).await;
        let first = claim(&app, &key, json!({"limit": 10})).await;
        assert_eq!(first.len(), 2);
        assert!(claim(&app, &key, json!({"limit": 10})).await.is_empty());
        let done = app.post(&run_path(&first[0], "complete"), &key, json!({"lease_token": first[0]["lease_token"]})).await;
        assert_eq!(done.status, 200);
        let next = claim(&app, &key, json!({"limit": 10})).await;
        assert_eq!(next.len(), 1);
        // Oldest available first.
        let pending = app.get("/v1/runs?status=PENDING", ADMIN_KEY).await;
        let pending_ids: Vec<&str> = pending.body["items"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert!(pending_ids.iter().all(|id| *id > next[0]["id"].as_str().unwrap()));
    }
}

both_backends! {
    async fn leases_keep_their_length_and_repeated_calls_say_what_happened(app: TestApp) {
        let key = worker_key(&app).await;
        let (url, automation) = queue_setup(&app, json!({"retry": {"initial_backoff_s": 0}})).await;
        enqueue(&app, &url, &automation, 0, 1).await;
        // No body at all: every field of a claim is optional.
        let resp = app.send_raw("POST", "/v1/runs/claim", &key, Vec::new()).await;
        assert_eq!(resp.status, 200, "{}", resp.text);
        assert_eq!(resp.body["items"].as_array().unwrap().len(), 1);
        let run = resp.body["items"][0].clone();
        let token = run["lease_token"].as_str().unwrap().to_owned();
        let first_error = json!({"lease_token": token, "error": "boom"});
        let failed = app.post(&run_path(&run, "fail"), &key, first_error.clone()).await;
        assert_eq!((failed.status, failed.body["status"].clone()), (200, json!("PENDING")), "{}", failed.text);
        // A retried fail is harmless; a heartbeat after it is refused as finished, not expired.
        let again = app.post(&run_path(&run, "fail"), &key, first_error).await;
        assert_eq!(again.status, 200, "{}", again.text);
        let late = app.post(&run_path(&run, "heartbeat"), &key, json!({"lease_token": token})).await;
        assert_problem(&late, 409, Some("lease_token"));
        assert!(late.body["detail"].as_str().unwrap().starts_with("finished"), "{}", late.text);

        // A claim's own lease_s (longer than the automation's 60 s) is what a heartbeat without
        // lease_s extends by.
        let items = claim(&app, &key, json!({"lease_s": 600, "wait_s": 5})).await;
        assert_eq!(items.len(), 1);
        let token = items[0]["lease_token"].as_str().unwrap().to_owned();
        let hb = app.post(&run_path(&items[0], "heartbeat"), &key, json!({"lease_token": token})).await;
        assert_eq!(hb.status, 200, "{}", hb.text);
        let expires = chrono::DateTime::parse_from_rfc3339(hb.body["lease_expires_at"].as_str().unwrap()).unwrap();
        let left = expires.with_timezone(&chrono::Utc) - chrono::Utc::now();
        assert!(left > chrono::Duration::seconds(500), "the heartbeat shortened the lease: {left}");
        // A result is stored like any document: nested 70 deep, it is refused.
        let deep = (0..70).fold(json!(1), |v, _| json!([v]));
        let refused = app.post(&run_path(&items[0], "complete"), &key, json!({"lease_token": token, "result": deep})).await;
        assert_problem(&refused, 422, Some("result"));
        // A success clears the error of the attempt before.
        let done = app.post(&run_path(&items[0], "complete"), &key, json!({"lease_token": token})).await;
        assert_eq!(done.status, 200, "{}", done.text);
        assert_eq!((done.body["status"].clone(), done.body["error_detail"].clone()), (json!("SUCCEEDED"), Value::Null), "{}", done.text);
    }
}

both_backends! {
    async fn a_waiting_claim_whose_worker_hung_up_takes_nothing(app: TestApp) {
        use tokio::io::AsyncWriteExt as _;
        let key = worker_key(&app).await;
        let (url, automation) = queue_setup(&app, json!({})).await;
        // A worker that asks to wait, then goes away (its connection closed) before any run.
        let addr = app.address.trim_start_matches("http://").to_owned();
        let body = json!({"wait_s": 20, "worker": "ghost"}).to_string();
        let request = format!(
            "POST /v1/runs/claim HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
        socket.write_all(request.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(socket);
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The run goes to a worker that is there.
        enqueue(&app, &url, &automation, 0, 1).await;
        let items = claim(&app, &key, json!({"wait_s": 5, "worker": "present"})).await;
        assert_eq!(items.len(), 1, "the run was claimed for a worker that had hung up");
        let shown = app.get(run_path(&items[0], "").trim_end_matches('/'), ADMIN_KEY).await;
        assert_eq!(shown.body["lease_owner"], "present", "{}", shown.text);
    }
}

both_backends! {
    async fn the_migration_renames_completed_runs_and_makes_old_runs_claimable(app: TestApp) {
        use migration::MigratorTrait as _;
        use sea_orm::ConnectionTrait as _;
        let key = worker_key(&app).await;
        let (url, automation) = queue_setup(&app, json!({})).await;
        enqueue(&app, &url, &automation, 0, 2).await;
        // Back to the schema before the run queue, with one run as the old code finished it.
        let since_queue = migration::Migrator::migrations()
            .iter()
            .rev()
            .position(|m| m.name() == "m20261203_000001_run_queue")
            .unwrap()
            + 1;
        migration::Migrator::down(&app.db, Some(u32::try_from(since_queue).unwrap())).await.unwrap();
        let backend = app.db.get_database_backend();
        let finished = sea_orm::Statement::from_string(
            backend,
            "UPDATE automation_runs SET status = 'COMPLETED' WHERE id = (SELECT id FROM automation_runs ORDER BY id LIMIT 1)",
        );
        assert_eq!(app.db.execute_raw(finished).await.unwrap().rows_affected(), 1);
        migration::Migrator::up(&app.db, None).await.unwrap();
        let done = app.get("/v1/runs?status=SUCCEEDED", ADMIN_KEY).await;
        assert_eq!(done.body["items"].as_array().unwrap().len(), 1, "{}", done.text);
        // The other old run got an available_at and can be claimed.
        let items = claim(&app, &key, json!({"limit": 5})).await;
        assert_eq!(items.len(), 1);
    }
}

both_backends! {
    async fn metrics_count_open_runs_by_status(app: TestApp) {
        let key = worker_key(&app).await;
        let (url, automation) = queue_setup(&app, json!({})).await;
        let gauge = |text: &str, status: &str| -> Option<i64> {
            let prefix = format!("switchboard_runs_by_status{{status=\"{status}\"}} ");
            text.lines().find_map(|l| l.strip_prefix(prefix.as_str())).map(|v| v.parse().unwrap())
        };
        let empty = app.get("/metrics", ADMIN_KEY).await;
        assert_eq!((gauge(&empty.text, "PENDING"), gauge(&empty.text, "RUNNING")), (Some(0), Some(0)), "{}", empty.text);
        enqueue(&app, &url, &automation, 0, 3).await;
        let taken = claim(&app, &key, json!({})).await;
        assert_eq!(taken.len(), 1);
        let busy = app.get("/metrics", ADMIN_KEY).await;
        assert_eq!((gauge(&busy.text, "PENDING"), gauge(&busy.text, "RUNNING")), (Some(2), Some(1)), "{}", busy.text);
        let done = app.post(&run_path(&taken[0], "complete"), &key, json!({"lease_token": taken[0]["lease_token"]})).await;
        assert_eq!(done.status, 200, "{}", done.text);
        let after = app.get("/metrics", ADMIN_KEY).await;
        assert_eq!((gauge(&after.text, "PENDING"), gauge(&after.text, "RUNNING")), (Some(2), Some(0)), "{}", after.text);
    }
}

/// PostgreSQL: a claim is one statement whose commit does not wait for the disk
/// (`set_config('synchronous_commit', 'off', true)` inside it). The setting must end with the
/// claim's own transaction: a pooled connection that kept it would make every later commit on it
/// unflushed, including the inbox commits that ACKs wait for.
#[actix_web::test]
async fn a_claim_leaves_its_connection_flushing_commits() {
    use sea_orm::ConnectionTrait as _;
    let app = crate::helpers::spawn_app(crate::helpers::Backend::Postgres).await;
    let (url, automation) = queue_setup(&app, json!({})).await;
    enqueue(&app, &url, &automation, 0, 2).await;
    let org_id = crate::events_runs::org_of(&app, ADMIN_KEY).await;
    // One connection, so the claim and the check below share it.
    let db = switchboard::db::connect_url(&app.settings.database_url(), 1)
        .await
        .unwrap();
    let setting = |db: sea_orm::DatabaseConnection| async move {
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT current_setting('synchronous_commit') AS s",
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<String>("", "s").unwrap()
    };
    assert_eq!(setting(db.clone()).await, "on");
    let request = switchboard::db::queue::ClaimRequest {
        org_id,
        limit: 1,
        automation_ids: None,
        sources: None,
        worker: Some("w".to_owned()),
        token: "lt_test".to_owned(),
        leases: switchboard::db::queue::Leases::uniform(60),
        now: switchboard::db::now(),
    };
    let claimed = switchboard::db::queue::claim(&db, &request, &Vec::new())
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].status, "RUNNING");
    assert_eq!(claimed[0].lease_token.as_deref(), Some("lt_test"));
    assert_eq!(setting(db.clone()).await, "on");
    // The claim took one run and left the other.
    let pending = app.get("/v1/runs?status=PENDING", ADMIN_KEY).await;
    assert_eq!(
        pending.body["items"].as_array().unwrap().len(),
        1,
        "{}",
        pending.text
    );
}
