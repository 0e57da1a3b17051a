//! The reference worker on SIGTERM, against the real service on both engines: it sends no claim
//! after the signal (the one in flight is answered, and what it brings is run, so that no run is
//! claimed for a worker that is gone), lets running commands finish and report within the grace
//! period, then exits 0; a command still running when the grace period ends is stopped (its process is gone)
//! and its run stays RUNNING until the lease expires.
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{ADMIN_KEY, TestApp, eventually};
use crate::workers::{enqueue, queue_setup, worker_key};

/// The worker for `automation`, with `concurrency` and `grace_s`, running `script` under `sh -c`.
fn worker(
    app: &TestApp,
    key: &str,
    automation: &str,
    concurrency: &str,
    grace_s: &str,
    script: &str,
) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "worker",
            "--url",
            &app.address,
            "--key",
            key,
            "--concurrency",
            concurrency,
        ])
        .args([
            "--automation",
            automation,
            "--grace-s",
            grace_s,
            "--",
            "sh",
            "-c",
            script,
        ])
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

fn sigterm(worker: &tokio::process::Child) {
    let pid = worker.id().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(sent.unwrap().success());
}

async fn runs(app: &TestApp, automation: &str) -> Vec<Value> {
    let path = format!("/v1/automations/{automation}/runs?limit=50");
    let page = app.get(&path, ADMIN_KEY).await;
    assert_eq!(page.status, 200, "{}", page.text);
    let mut items = page.body["items"].as_array().unwrap().clone();
    items.reverse(); // oldest first: evt_0, evt_1, …
    items
}

async fn wait_status(app: &TestApp, automation: &str, index: usize, status: &str) {
    let reached = eventually(Duration::from_secs(20), || async {
        runs(app, automation)
            .await
            .get(index)
            .is_some_and(|r| r["status"] == status)
    })
    .await;
    assert!(
        reached,
        "run {index} never {status}: {:?}",
        runs(app, automation).await
    );
}

both_backends! {
    async fn sigterm_stops_claiming_and_lets_running_commands_finish(app: TestApp) {
        let key = worker_key(&app).await;
        let (url, automation) = queue_setup(&app, json!({})).await;
        enqueue(&app, &url, &automation, 0, 1).await;
        let script = r#"cat >/dev/null; sleep 2; printf '{"finished":true}'"#;
        let worker = worker(&app, &key, &automation, "3", "20", script);
        wait_status(&app, &automation, 0, "RUNNING").await;
        let stopped_at = Instant::now();
        sigterm(&worker);
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The claim in flight when the signal came is answered, not abandoned: what it brings
        // is run like the rest.
        enqueue(&app, &url, &automation, 1, 2).await;
        wait_status(&app, &automation, 1, "RUNNING").await;
        // No claim after it, though a slot is free: this run stays where it is.
        enqueue(&app, &url, &automation, 2, 3).await;
        let status = tokio::time::timeout(Duration::from_secs(20), worker.wait_with_output())
            .await
            .expect("the worker did not exit within its grace period")
            .unwrap()
            .status;
        assert!(status.success(), "{status:?}");
        assert!(stopped_at.elapsed() >= Duration::from_millis(1000), "it did not wait for the command");
        let all = runs(&app, &automation).await;
        for run in &all[..2] {
            assert_eq!(run["status"], "SUCCEEDED", "{all:?}");
            assert_eq!(run["result"], json!({"finished": true}));
        }
        assert_eq!((all[2]["status"].as_str(), all[2]["attempts"].as_i64()), (Some("PENDING"), Some(0)), "{all:?}");
    }

    async fn a_command_past_the_grace_period_is_stopped_and_its_run_left_to_expire(app: TestApp) {
        let key = worker_key(&app).await;
        let (url, automation) = queue_setup(&app, json!({"lease_s": 30})).await;
        enqueue(&app, &url, &automation, 0, 1).await;
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let script = format!("echo $$ > '{}'; exec sleep 60", pid_file.display());
        let worker = worker(&app, &key, &automation, "2", "1", &script);
        wait_status(&app, &automation, 0, "RUNNING").await;
        let pid_written = eventually(Duration::from_secs(10), || async { pid_file.exists() }).await;
        assert!(pid_written);
        let pid = std::fs::read_to_string(&pid_file).unwrap().trim().to_owned();
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        let stopped_at = Instant::now();
        sigterm(&worker);
        let status = tokio::time::timeout(Duration::from_secs(10), worker.wait_with_output())
            .await
            .expect("the worker did not exit after its grace period")
            .unwrap()
            .status;
        assert!(status.success(), "{status:?}");
        let took = stopped_at.elapsed();
        assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "{took:?}");
        let gone = eventually(Duration::from_secs(5), || async {
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
        })
        .await;
        assert!(gone, "the command outlived the worker");
        let all = runs(&app, &automation).await;
        assert_eq!(all[0]["status"], "RUNNING", "{all:?}");
        assert_eq!(all[0]["attempts"], 1, "{all:?}");
    }
}
