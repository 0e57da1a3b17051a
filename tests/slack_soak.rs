//! Slack soak: 1,000 refresh cycles with short-lived connections leave the process's open file
//! descriptors and resident memory flat. Its own test binary, so the process it measures runs
//! nothing else.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code, unused_macros)]
#[path = "api/helpers.rs"]
mod helpers;
#[path = "api/peer_support.rs"]
mod peer_support;
#[path = "api/slack_peer.rs"]
mod slack_peer;

use std::time::Duration;

use serde_json::json;

use helpers::{ADMIN_KEY, Backend, spawn_with, test_settings};
use slack_peer::{SlackPeer, SlackPeerConfig, SlackScript, SlackStep};

const TOKEN: &str = "xapp-1-A1-soak-token";

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// One engine after the other in this one process (never both at once, so each baseline is its
/// own).
#[actix_web::test]
async fn a_thousand_refresh_cycles_leave_fds_and_memory_flat() {
    soak(Backend::Sqlite).await;
    soak(Backend::Postgres).await;
}

async fn soak(backend: Backend) {
    // Every connection: hello, then at once a refresh request, then Slack closes it shortly
    // after (make-before-break has to finish within that time).
    let peer =
        SlackPeer::start(
            SlackPeerConfig::new(TOKEN).scripts(vec![SlackScript::hello_then(vec![
                SlackStep::Sleep(Duration::from_millis(5)),
                SlackStep::DisconnectAndCloseAfter(
                    "refresh_requested".into(),
                    Duration::from_millis(200),
                ),
            ])]),
        );
    let (mut settings, dir, pg) = test_settings(backend).await;
    settings.allow_private_networks = true;
    settings.slack_api_base = peer.api_base();
    settings.slack_opens_per_second = 1_000.0;
    settings.connects_per_second = 1_000.0;
    settings.connects_per_second_per_host = 1_000.0;
    let app = spawn_with(backend, settings, dir, pg).await;
    let body = json!({"name": "soak", "source": "soak", "kind": "slack",
        "config": {"app_token": TOKEN, "connections": 1}});
    let resp = app.post("/v1/websocket-sources", ADMIN_KEY, body).await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    let id = resp.body["id"].as_str().unwrap().to_owned();

    let cycles = |n: usize| move |p: &SlackPeer| p.connections().len() >= n;
    // Sockets of the service and of the peer (in this same process) come and go with every
    // cycle, so both measurements are taken at rest: source paused, every socket closed.
    let at_rest = || async {
        let resp = app
            .post(
                &format!("/v1/websocket-sources/{id}/pause"),
                ADMIN_KEY,
                json!({}),
            )
            .await;
        assert_eq!(resp.status, 202, "{}", resp.text);
        assert!(
            peer.wait_until(Duration::from_secs(10), |p| p.live_sockets() == 0)
                .await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let resume = || async {
        let resp = app
            .post(
                &format!("/v1/websocket-sources/{id}/resume"),
                ADMIN_KEY,
                json!({}),
            )
            .await;
        assert_eq!(resp.status, 202, "{}", resp.text);
    };
    // The test harness keeps every log line in memory (for secret-leak checks): that growth is
    // the harness's, not the service's, and is taken out of the comparison.
    let log_len = || helpers::logs().lock().unwrap().capacity() as u64;

    // Warm up (allocator, pools), then take the baseline.
    assert!(peer.wait_until(Duration::from_secs(120), cycles(200)).await);
    at_rest().await;
    let (fds, rss, logs) = (open_fds(), rss_bytes(), log_len());
    let before = peer.connections().len();
    resume().await;
    assert!(
        peer.wait_until(Duration::from_secs(600), cycles(before + 1_000))
            .await,
        "cycles: {}",
        peer.connections().len() - before
    );
    at_rest().await;
    let (fds_after, rss_after, logs_after) = (open_fds(), rss_bytes(), log_len());

    assert!(
        fds_after <= fds + 4,
        "open file descriptors grew from {fds} to {fds_after} over 1,000 refresh cycles"
    );
    let grown = rss_after
        .saturating_sub(rss)
        .saturating_sub(logs_after.saturating_sub(logs));
    assert!(
        grown <= 4 * 1024 * 1024,
        "resident memory grew by {} KiB over 1,000 refresh cycles ({} → {} KiB, logs {} → {} KiB)",
        grown / 1024,
        rss / 1024,
        rss_after / 1024,
        logs / 1024,
        logs_after / 1024
    );
    // Each replaced connection closes within its graceful stop (a quiet period, then the close
    // handshake); at this cycle rate a few are always closing, but they never pile up.
    assert!(
        peer.max_live_sockets_seen() <= 32,
        "old connections pile up: {} live at once",
        peer.max_live_sockets_seen()
    );
    let status = app
        .get(&format!("/v1/websocket-sources/{id}"), ADMIN_KEY)
        .await
        .body["status"]
        .clone();
    assert_eq!(
        status["consecutive_failures"], 0,
        "refreshes are not failures: {status}"
    );
    app.handle.stop(true).await;
    eprintln!(
        "{backend:?}: 1,000 refresh cycles: fds {fds} → {fds_after}, RSS {} → {} KiB (log buffer {} → {} KiB)",
        rss / 1024,
        rss_after / 1024,
        logs / 1024,
        logs_after / 1024
    );
}
