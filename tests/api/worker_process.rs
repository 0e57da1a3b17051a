//! The reference worker (`switchboard worker -- CMD`) and the Python example each drain a queue
//! against the real service, on both engines: results from stdout, errors from stderr, the
//! environment, and a clean stop on SIGTERM.
use std::time::Duration;

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{ADMIN_KEY, TestApp, eventually};
use crate::workers::{queue_setup, worker_key};

/// Delivers `count` events, those with an index in `failing` asking to fail; waits for the runs.
async fn enqueue_mixed(
    app: &TestApp,
    url: &str,
    automation: &str,
    count: usize,
    failing: &[usize],
) {
    for i in 0..count {
        let body = json!({"id": format!("evt_{i}"), "type": "job.run", "n": i, "fail": failing.contains(&i)});
        let resp = app
            .deliver(
                url,
                &[("content-type", "application/json".to_owned())],
                body.to_string().as_bytes(),
            )
            .await;
        assert_eq!(resp.status, 200, "{}", resp.text);
    }
    assert!(
        eventually(Duration::from_secs(20), || async {
            crate::ingest::runs_of(app, automation).await == count as u64
        })
        .await
    );
}

async fn runs_by_status(app: &TestApp) -> (Vec<Value>, Vec<Value>, usize) {
    let all = app.get("/v1/runs?limit=200", ADMIN_KEY).await;
    let items = all.body["items"].as_array().unwrap().clone();
    let open = items
        .iter()
        .filter(|r| r["status"] == "PENDING" || r["status"] == "RUNNING")
        .count();
    let done = items
        .iter()
        .filter(|r| r["status"] == "SUCCEEDED")
        .cloned()
        .collect();
    let failed = items
        .iter()
        .filter(|r| r["status"] == "FAILED")
        .cloned()
        .collect();
    (done, failed, open)
}

both_backends! {
    async fn the_reference_worker_drains_a_queue(app: TestApp) {
        let key = worker_key(&app).await;
        let (url, automation) = queue_setup(&app, json!({"retry": {"max_attempts": 1}})).await;
        enqueue_mixed(&app, &url, &automation, 12, &[3, 7]).await;
        let script = r#"input=$(cat); case "$input" in *'"fail":true'*) echo "it broke" >&2; exit 3;; esac; printf '{"attempt":%s,"run":"%s","n":%s}' "$SWITCHBOARD_ATTEMPT" "$SWITCHBOARD_RUN_ID" "$(printf '%s' "$input" | sed 's/.*"n":\([0-9]*\).*/\1/')""#;
        let mut worker = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["worker", "--url", &app.address, "--key", &key, "--concurrency", "4",
                "--automation", &automation, "--grace-s", "5", "--", "sh", "-c", script])
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let drained = eventually(Duration::from_secs(30), || async { runs_by_status(&app).await.2 == 0 }).await;
        assert!(drained, "the worker did not drain the queue: {:?}", runs_by_status(&app).await);
        let (done, failed, _) = runs_by_status(&app).await;
        assert_eq!((done.len(), failed.len()), (10, 2));
        for run in &done {
            assert_eq!(run["result"]["attempt"], 1, "{run}");
            assert_eq!(run["result"]["run"], run["id"], "{run}");
            assert_eq!(run["result"]["n"], run["event_payload"]["payload"]["n"], "{run}");
        }
        for run in &failed {
            assert_eq!(run["error_detail"], "exit status 3: it broke", "{run}");
        }
        // SIGTERM: it stops claiming and exits cleanly.
        let pid = worker.id().unwrap().to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let status = tokio::time::timeout(Duration::from_secs(10), worker.wait()).await.unwrap().unwrap();
        assert!(status.success(), "{status:?}");
    }

    async fn the_python_example_drains_a_queue(app: TestApp) {
        let key = worker_key(&app).await;
        let (url, automation) = queue_setup(&app, json!({"retry": {"max_attempts": 1}})).await;
        enqueue_mixed(&app, &url, &automation, 5, &[2]).await;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/worker.py");
        let run = tokio::process::Command::new("python3")
            .args([script, "--url", &app.address, "--key", &key, "--drain"])
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(60), run).await.unwrap().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let (done, failed, open) = runs_by_status(&app).await;
        assert_eq!((done.len(), failed.len(), open), (4, 1, 0));
        for run in &done {
            assert_eq!(run["result"]["handled"], run["id"], "{run}");
            assert_eq!(run["result"]["event_key"], "job.run");
        }
        assert!(failed[0]["error_detail"].as_str().unwrap().starts_with("RuntimeError: asked to fail"), "{}", failed[0]);
    }
}
