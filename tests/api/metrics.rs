//! `GET /metrics` after a scripted scenario: exact counter values, on both engines, and the
//! separate metrics listener.
use std::time::Duration;

use serde_json::json;
use switchboard::webhooks::sign::sign_github;

use crate::both_backends_private;
use crate::helpers::{ADMIN_KEY, Backend, TestApp, eventually, spawn_with, test_settings};
use crate::ingest::{
    create_automation, create_source, runs_of, source_body, status, undispatched, wait_state,
};
use crate::peer::{ConnectionScript, Peer, Step};

/// The scrape, with every sample line as `name{labels} value`.
async fn scrape(app: &TestApp) -> String {
    let resp = app.request("GET", "/metrics", None, None).await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert!(
        resp.content_type
            .starts_with("application/openmetrics-text"),
        "{}",
        resp.content_type
    );
    resp.text
}

/// The value of one sample (`name{labels}` exactly as exposed), when present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

fn assert_sample(text: &str, series: &str, expected: f64) {
    assert_eq!(sample(text, series), Some(expected), "{series} in:\n{text}");
}

both_backends_private! {
    async fn counters_after_a_scripted_scenario_are_exact(app: TestApp) {
        let peer = Peer::start(vec![ConnectionScript::accept(vec![Step::Echo])]);
        let automation = create_automation(&app, "m", json!("order"), None).await;
        let mut body = source_body("m", &peer, json!({"ack_expr": "{ack: id}"}));
        body["filter_expr"] = json!("type != 'skip'");
        let id = create_source(&app, body).await;
        wait_state(&app, &id, "connected").await;
        for message in [
            json!({"type": "order", "id": "1"}).to_string(),
            json!({"type": "order", "id": "2"}).to_string(),
            json!({"type": "order", "id": "2"}).to_string(),
            json!({"type": "skip", "id": "3"}).to_string(),
            json!({"id": "4"}).to_string(),
            "not json".to_owned(),
        ] {
            peer.broadcast(message);
        }
        assert!(peer.wait_until(Duration::from_secs(15), |p| p.texts().len() >= 5).await, "{:?}", peer.texts());
        assert!(eventually(Duration::from_secs(15), || async { undispatched(&app).await == 0 && runs_of(&app, &automation).await == 2 }).await);

        // Webhooks: one verified delivery, one with a bad signature.
        let hook = app.post("/v1/webhooks", ADMIN_KEY, json!({"name": "gh", "source": "gh", "verifier": {"preset": "github"}})).await;
        assert_eq!(hook.status, 201, "{}", hook.text);
        let url = hook.body["webhook_url"].as_str().unwrap().replace("https://hooks.example.com", "");
        let secret = hook.body["secret"].as_str().unwrap().to_owned();
        let payload = br#"{"action":"opened"}"#;
        let headers = |signature: String| vec![
            ("content-type", "application/json".to_owned()),
            ("x-github-event", "pull_request".to_owned()),
            ("x-github-delivery", "d-1".to_owned()),
            ("x-hub-signature-256", signature),
        ];
        assert_eq!(app.deliver(&url, &headers(sign_github(&secret, payload)), payload).await.status, 200);
        assert_eq!(app.deliver(&url, &headers(sign_github("wrong", payload)), payload).await.status, 401);

        let resp = app.post(&format!("/v1/websocket-sources/{id}/reconnect"), ADMIN_KEY, json!({})).await;
        assert_eq!(resp.status, 202);
        assert!(peer.wait_until(Duration::from_secs(15), |p| p.attempts() >= 2).await);
        wait_state(&app, &id, "connected").await;
        // Counters reach the scrape as the source counts them.
        assert!(eventually(Duration::from_secs(10), || async { status(&app, &id).await["counters"]["acks"] == 5 }).await);

        let text = scrape(&app).await;
        let m = |name: &str| format!("{name}{{source=\"m\"}}");
        assert_sample(&text, &m("switchboard_frames_received_total"), 6.0);
        assert_sample(&text, &m("switchboard_events_stored_total"), 3.0);
        assert_sample(&text, &m("switchboard_duplicates_total"), 1.0);
        assert_sample(&text, &m("switchboard_prefiltered_total"), 1.0);
        assert_sample(&text, &m("switchboard_events_without_key_total"), 1.0);
        assert_sample(&text, &m("switchboard_acks_total"), 5.0);
        assert_sample(&text, "switchboard_source_errors_total{source=\"m\",kind=\"non_json\"}", 1.0);
        assert_sample(&text, "switchboard_source_errors_total{source=\"m\",kind=\"storage\"}", 0.0);
        assert_sample(&text, "switchboard_runs_created_total", 2.0);
        assert_sample(&text, "switchboard_ingest_to_run_seconds_count", 2.0);
        assert_sample(&text, "switchboard_ack_latency_seconds_count", 5.0);
        assert_sample(&text, "switchboard_reconnects_total{reason=\"operator\"}", 1.0);
        assert_sample(&text, "switchboard_sources{state=\"connected\"}", 1.0);
        assert_sample(&text, "switchboard_sources{state=\"failed\"}", 0.0);
        assert_sample(&text, "switchboard_connections", 1.0);
        assert_sample(&text, "switchboard_webhook_requests_total{result=\"accepted\"}", 1.0);
        assert_sample(&text, "switchboard_webhook_requests_total{result=\"bad_signature\"}", 1.0);
        assert_sample(&text, "switchboard_terminal_failures_total", 0.0);
        assert!(sample(&text, "switchboard_db_write_seconds_count{op=\"events\"}").unwrap_or(0.0) >= 1.0, "{text}");
        assert!(sample(&text, "switchboard_dispatch_batch_events_count").unwrap_or(0.0) >= 1.0, "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "OpenMetrics text ends with # EOF");
    }
}

#[actix_web::test]
async fn metrics_can_have_their_own_listener() {
    let (mut settings, dir, pg) = test_settings(Backend::Sqlite).await;
    settings.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
    let app = spawn_with(Backend::Sqlite, settings, dir, pg).await;
    let port = app.metrics_port.expect("a metrics listener");
    let mut resp = awc::Client::default()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = String::from_utf8(resp.body().await.unwrap().to_vec()).unwrap();
    assert!(
        text.contains("switchboard_sources{state=\"connected\"} 0"),
        "{text}"
    );
    let on_api = app.request("GET", "/metrics", None, None).await;
    assert_eq!(on_api.status, 404, "not on the API listener then");
}
