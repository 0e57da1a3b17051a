//! The reference worker (`switchboard worker`) against a scriptable HTTP peer standing in for the
//! service: errors other than 401/403 and an unreachable service are retried after a capped
//! exponential backoff with jitter (0.5 s doubling to 30 s, each wait between half and all of its
//! step), never in a spin, and the worker recovers once the service answers; a refused key stops
//! it with a message that says so. No database: the peer answers everything.
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::http_peer::{Answer, HttpPeer};

const CLAIM: &str = "/v1/runs/claim";
const KEY: &str = "sbk_worker_backoff_test_key_0001";
const RUN_ID: &str = "0190f5d6-7a2b-7c3d-8e4f-000000000001";

/// The worker against `url`, its stderr (its log) piped; killed when dropped.
fn worker(url: &str) -> tokio::process::Child {
    let handler = r#"cat >/dev/null; printf '{"handled":"%s"}' "$SWITCHBOARD_RUN_ID""#;
    tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["worker", "--url", url, "--key", KEY, "--grace-s", "5"])
        .args(["--", "sh", "-c", handler])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// SIGTERM, then the exit status and the log; fails unless it exits within 10 s.
async fn stop(worker: tokio::process::Child) -> (std::process::ExitStatus, String) {
    let pid = worker.id().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(sent.unwrap().success());
    finish(worker).await
}

async fn finish(worker: tokio::process::Child) -> (std::process::ExitStatus, String) {
    let output = tokio::time::timeout(Duration::from_secs(10), worker.wait_with_output())
        .await
        .expect("the worker did not exit within 10 s")
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status, log)
}

/// A claimed run as the service answers it.
fn claimed_run() -> Value {
    let expires = chrono::Utc::now() + chrono::Duration::seconds(60);
    json!({"id": RUN_ID, "automation_id": RUN_ID, "automation_name": "jobs", "attempt": 1,
        "lease_token": "lease-1", "lease_expires_at": expires, "source": "jobs",
        "event_key": "job.run", "event_payload": {"payload": {"n": 1}}})
}

/// No work: what a claim answers after its long poll (shortened).
fn idle() -> Answer {
    Answer::new(200, json!({"items": []})).after(Duration::from_millis(300))
}

fn complete_path() -> String {
    format!("/v1/runs/{RUN_ID}/complete")
}

#[actix_web::test]
async fn a_failing_service_is_retried_with_growing_waits_and_the_worker_recovers() {
    let peer = HttpPeer::start();
    let busy = json!({"status": 503, "detail": "storage unavailable"});
    for _ in 0..3 {
        peer.push(CLAIM, Answer::new(503, busy.clone()));
    }
    peer.push(CLAIM, Answer::new(200, json!({"items": [claimed_run()]})));
    peer.set_sticky(CLAIM, idle());
    let worker = worker(&peer.url());
    let done = |p: &HttpPeer| !p.requests_to(&complete_path()).is_empty();
    assert!(peer.wait_until(Duration::from_secs(20), done).await);
    let claims = peer.requests_to(CLAIM);
    assert!(claims.len() >= 4, "{claims:?}");
    // Waits after failures 1, 2 and 3: between half and all of 0.5 s, 1 s and 2 s.
    for (i, pair) in claims.windows(2).take(3).enumerate() {
        let gap = pair[1].at - pair[0].at;
        let step = Duration::from_millis(500 << i);
        assert!(gap >= step / 2, "wait {i} too short: {gap:?}");
        assert!(
            gap <= step + Duration::from_millis(400),
            "wait {i} too long: {gap:?}"
        );
    }
    for claim in &claims {
        assert_eq!(
            claim.authorization.as_deref(),
            Some(&*format!("Bearer {KEY}"))
        );
        assert_eq!(claim.method, "POST");
    }
    let complete = &peer.requests_to(&complete_path())[0];
    let expected = json!({"lease_token": "lease-1", "result": {"handled": RUN_ID}});
    assert_eq!(complete.body, expected);
    let (status, log) = stop(worker).await;
    assert!(status.success(), "{status:?}: {log}");
    assert_eq!(log.matches("claim failed; backing off").count(), 3, "{log}");
    assert!(log.contains("HTTP 503: storage unavailable"), "{log}");
}

#[actix_web::test]
async fn an_unreachable_service_is_retried_without_spinning_until_it_comes_up() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let started = Instant::now();
    let worker = worker(&format!("http://127.0.0.1:{port}"));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let peer = HttpPeer::start_on(port);
    peer.push(CLAIM, Answer::new(200, json!({"items": [claimed_run()]})));
    peer.set_sticky(CLAIM, idle());
    let done = |p: &HttpPeer| !p.requests_to(&complete_path()).is_empty();
    assert!(peer.wait_until(Duration::from_secs(20), done).await);
    let recovered = started.elapsed();
    let (status, log) = stop(worker).await;
    assert!(status.success(), "{status:?}: {log}");
    // 2.5 s down: failures at about 0, ≥0.25, ≥0.75, ≥1.75 s: at most 4 (a spin makes thousands),
    // and the service was found within the longest wait after it came up (4 s at most).
    let failures = log.matches("claim failed; backing off").count();
    assert!((3..=4).contains(&failures), "{failures} failures: {log}");
    assert!(
        recovered < Duration::from_millis(2500 + 4000 + 1000),
        "{recovered:?}"
    );
}

#[actix_web::test]
async fn a_refused_key_stops_the_worker_with_a_clear_message() {
    let peer = HttpPeer::start();
    let refused = json!({"status": 401, "detail": "invalid or revoked API key"});
    peer.set_sticky(CLAIM, Answer::new(401, refused));
    let (status, log) = finish(worker(&peer.url())).await;
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("the service refused the key (HTTP 401: invalid or revoked API key)"),
        "{log}"
    );
    assert_eq!(peer.requests_to(CLAIM).len(), 1);

    let peer = HttpPeer::start();
    let forbidden = json!({"status": 403, "detail": "this key's role may not do that"});
    peer.set_sticky(CLAIM, Answer::new(403, forbidden));
    let (status, log) = finish(worker(&peer.url())).await;
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("the key may not claim runs (HTTP 403"),
        "{log}"
    );
    assert_eq!(peer.requests_to(CLAIM).len(), 1);
}
