//! Supervision and liveness against the scriptable peer: backoff, terminal failures, the idle
//! watchdog, ready and fail expressions, framing details, configuration changes, operator actions.
use std::time::Duration;

use serde_json::json;

use crate::both_backends_private;
use crate::helpers::{ADMIN_KEY, TestApp, assert_problem, eventually};
use crate::ingest::{
    WAIT, create_automation, create_source, event_count, runs_of, source_body, status,
    undispatched, wait_state,
};
use crate::peer::{ConnectionScript, Peer, Step, Upgrade};

fn fast_liveness() -> serde_json::Value {
    json!({"ping_interval_s": 1, "pong_timeout_s": 1, "idle_timeout_s": 5, "close_timeout_ms": 200})
}

both_backends_private! {
    async fn transient_failures_back_off_with_growing_delays(app: TestApp) {
        let peer = Peer::start(vec![ConnectionScript::refuse(500)]);
        let id = create_source(&app, source_body("flaky", &peer, json!({}))).await;
        assert!(peer.wait_until(Duration::from_secs(20), |p| p.attempts() >= 4).await, "attempts: {}", peer.attempts());
        let s = status(&app, &id).await;
        assert!(matches!(s["state"].as_str(), Some("backoff" | "connecting")), "{s}");
        assert!(s["consecutive_failures"].as_i64().unwrap() >= 3, "{s}");
        assert!(s["detail"].as_str().unwrap_or_default().contains("500") || s["state"] == "connecting", "{s}");
        // Full jitter: each delay is random below a cap that doubles (1 s, 2 s, 4 s, …); over four
        // attempts the total cannot exceed 1 + 2 + 4 s plus connect and scheduling time.
        let times = peer.attempt_times();
        let total = times[3].duration_since(times[0]);
        assert!(total <= Duration::from_millis(8_500), "{total:?}");
        // And it does back off: a policy without delays would make hundreds of attempts here;
        // with full jitter (caps 1, 2, 4, 8, 16, 32, 64 s), eight in the first 3 s is rarer than
        // one run in ten thousand.
        let start = times[0];
        tokio::time::sleep_until((start + Duration::from_secs(3)).into()).await;
        let early = peer.attempt_times().iter().filter(|t| t.duration_since(start) < Duration::from_secs(3)).count();
        assert!(early <= 7, "{early} attempts in 3 s");
        let s = status(&app, &id).await;
        if s["state"] == "backoff" {
            let next: chrono::DateTime<chrono::Utc> = s["next_retry_at"].as_str().unwrap().parse().unwrap();
            assert!(next > chrono::Utc::now() - chrono::Duration::seconds(1), "{s}");
        }
    }

    async fn upgrade_401_is_terminal_until_reconnect(app: TestApp) {
        let peer = Peer::start(vec![ConnectionScript::refuse(401), ConnectionScript::accept(vec![Step::Echo])]);
        let id = create_source(&app, source_body("denied", &peer, json!({}))).await;
        let s = wait_state(&app, &id, "failed").await;
        assert!(s["detail"].as_str().unwrap().contains("401"), "{s}");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(peer.attempts(), 1, "no retry after a terminal failure");
        let resp = app.post(&format!("/v1/websocket-sources/{id}/reconnect"), ADMIN_KEY, json!({})).await;
        assert_eq!(resp.status, 202, "{}", resp.text);
        wait_state(&app, &id, "connected").await;
        assert_eq!(peer.attempts(), 2);
    }

    async fn idle_watchdog_replaces_a_half_open_peer(app: TestApp) {
        let peer = Peer::start(vec![
            ConnectionScript::accept(vec![Step::Stall]),
            ConnectionScript::accept(vec![Step::Send(json!({"type": "t", "id": "after"}).to_string()), Step::Echo]),
        ]);
        let id = create_source(&app, source_body("halfopen", &peer, json!({"liveness": fast_liveness()}))).await;
        wait_state(&app, &id, "connected").await;
        let started = std::time::Instant::now();
        assert!(peer.wait_until(WAIT, |p| p.attempts() >= 2).await);
        assert!(started.elapsed() < Duration::from_secs(5), "detected within ping interval + pong timeout (+ scheduling slack): {:?}", started.elapsed());
        assert!(eventually(WAIT, || async { event_count(&app, "halfopen").await == 1 }).await);
    }

    async fn server_pings_are_answered_and_fragments_joined(app: TestApp) {
        let big = json!({"type": "big", "id": "f1", "blob": "x".repeat(300 * 1024)}).to_string();
        let peer = Peer::start(vec![ConnectionScript::accept(vec![
            Step::Ping(b"hello".to_vec()),
            Step::SendFragmented(big, 7),
            Step::Send(json!({"type": "small", "id": "f2"}).to_string()),
            Step::Echo,
        ])]);
        create_source(&app, source_body("frags", &peer, json!({}))).await;
        assert!(eventually(WAIT, || async { event_count(&app, "frags").await == 2 }).await);
        assert_eq!(peer.pongs(), 1, "the ping was answered with its payload");
        let big = app.get("/v1/events?event_key=big", ADMIN_KEY).await;
        assert_eq!(big.body["items"][0]["raw"]["blob"].as_str().unwrap().len(), 300 * 1024);
    }

    async fn oversized_messages_are_refused_and_counted(app: TestApp) {
        let peer = Peer::start(vec![
            ConnectionScript::accept(vec![Step::Send(json!({"type": "huge", "id": "h", "blob": "y".repeat(4000)}).to_string()), Step::Echo]),
            ConnectionScript::accept(vec![Step::Send(json!({"type": "ok", "id": "k"}).to_string()), Step::Echo]),
        ]);
        let id = create_source(&app, source_body("caps", &peer, json!({"liveness": {"max_message_bytes": 2048}}))).await;
        assert!(eventually(WAIT, || async { event_count(&app, "caps").await == 1 }).await);
        assert!(peer.attempts() >= 2, "the oversized message forced a reconnect");
        assert!(eventually(WAIT, || async { status(&app, &id).await["counters"]["oversized"] == 1 }).await);
        let fragmented = Peer::start(vec![
            ConnectionScript::accept(vec![Step::SendFragmented(json!({"type": "huge", "id": "h2", "blob": "z".repeat(4000)}).to_string(), 4), Step::Echo]),
            ConnectionScript::accept(vec![Step::Echo]),
        ]);
        let id2 = create_source(&app, source_body("caps2", &fragmented, json!({"liveness": {"max_message_bytes": 2048}}))).await;
        assert!(fragmented.wait_until(WAIT, |p| p.attempts() >= 2).await);
        assert!(eventually(WAIT, || async { status(&app, &id2).await["counters"]["oversized"] == 1 }).await);
        assert_eq!(event_count(&app, "caps2").await, 0);
    }

    async fn ready_expr_gates_and_on_connect_fills_secrets(app: TestApp) {
        let peer = Peer::start(vec![ConnectionScript::accept(vec![
            Step::Send(json!({"type": "auth_required"}).to_string()),
            Step::WaitForText { contains: "s3cr3t".into(), timeout: Duration::from_secs(10) },
            Step::Send(json!({"type": "auth_ok"}).to_string()),
            Step::Send(json!({"type": "event", "id": "e1"}).to_string()),
            Step::Echo,
        ])]);
        let id = create_source(&app, source_body("ha", &peer, json!({
            "on_connect": [{"type": "auth", "access_token": "{{secret:TOKEN}}"}],
            "secrets": {"TOKEN": "s3cr3t"},
            "headers": {"X-Client": "switchboard-test"},
            "ready_expr": "type == 'auth_ok'"
        }))).await;
        wait_state(&app, &id, "connected").await;
        assert!(eventually(WAIT, || async { event_count(&app, "ha").await == 1 }).await);
        assert_eq!(peer.texts()[0], json!({"type": "auth", "access_token": "s3cr3t"}).to_string());
        assert_eq!(peer.request_header(0, "x-client").as_deref(), Some("switchboard-test"));
        assert!(eventually(WAIT, || async { status(&app, &id).await["counters"]["handshake"] == 1 }).await);
    }

    async fn framings_binary_frames_app_pings_and_hmac_upgrade_auth(app: TestApp) {
        let peer = Peer::start(vec![ConnectionScript::accept(vec![
            Step::Send(format!("{}\n\n{}\nnot json\n", json!({"type": "a", "id": "n1"}), json!({"type": "b", "id": "n2"}))),
            Step::SendBinary(b"\x00\x01".to_vec()),
            Step::Echo,
        ])]);
        let id = create_source(&app, source_body("lines", &peer, json!({
            "framing": "ndjson", "binary": "base64",
            "app_ping": {"interval_s": 1, "message": {"op": "ping"}},
            "secrets": {"HMAC": "hmac-secret"},
            "upgrade_auth": {"type": "hmac_bearer", "key_id": "k1", "secret": "HMAC"}
        }))).await;
        assert!(eventually(WAIT, || async { event_count(&app, "lines").await == 3 }).await, "{}", event_count(&app, "lines").await);
        assert!(eventually(WAIT, || async { status(&app, &id).await["counters"]["non_json"] == 1 }).await);
        let binary = app.get("/v1/events?source=lines&status=no_key", ADMIN_KEY).await;
        assert_eq!(binary.body["items"][0]["raw"]["binary"], "AAE=");
        assert!(peer.wait_until(WAIT, |p| p.texts().contains(&json!({"op": "ping"}).to_string())).await, "the app ping is sent");
        let auth = peer.request_header(0, "authorization").unwrap();
        let token = auth.strip_prefix("Bearer ").unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts[0], "k1");
        let ts: i64 = parts[1].parse().unwrap();
        assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);
        use hmac::Mac as _;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"hmac-secret").unwrap();
        mac.update(format!("k1.{ts}").as_bytes());
        assert_eq!(parts[2], hex::encode(mac.finalize().into_bytes()));

        let arrays = Peer::start(vec![ConnectionScript::accept(vec![
            Step::Send(json!([{"type": "x", "id": "j1"}, {"type": "y", "id": "j2"}]).to_string()),
            Step::Echo,
        ])]);
        create_source(&app, source_body("arrays", &arrays, json!({"framing": "json_array"}))).await;
        assert!(eventually(WAIT, || async { event_count(&app, "arrays").await == 2 }).await);
    }

    async fn fail_expr_is_terminal(app: TestApp) {
        let peer = Peer::start(vec![ConnectionScript::accept(vec![Step::Send(json!({"type": "auth_invalid"}).to_string()), Step::Echo])]);
        let id = create_source(&app, source_body("bad", &peer, json!({"fail_expr": "type == 'auth_invalid'"}))).await;
        let s = wait_state(&app, &id, "failed").await;
        assert!(s["detail"].as_str().unwrap().contains("fail_expr"), "{s}");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(peer.attempts(), 1);
    }

    async fn patches_take_effect_without_needless_reconnects(app: TestApp) {
        let peer = Peer::start(vec![ConnectionScript::accept(vec![Step::Echo])]);
        let automation = create_automation(&app, "live", json!("kind-*"), None).await;
        let id = create_source(&app, source_body("live", &peer, json!({}))).await;
        wait_state(&app, &id, "connected").await;
        peer.broadcast(json!({"type": "t1", "kind": "kind-a", "id": "1"}).to_string());
        assert!(eventually(WAIT, || async { event_count(&app, "live").await == 1 }).await);
        // An expression change applies to the next message without reconnecting.
        let patched = app.patch(&format!("/v1/websocket-sources/{id}"), ADMIN_KEY, json!({"event_key_expr": "kind"})).await;
        assert_eq!(patched.status, 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
        peer.broadcast(json!({"type": "t2", "kind": "kind-b", "id": "2"}).to_string());
        assert!(eventually(WAIT, || async { runs_of(&app, &automation).await == 1 }).await);
        assert_eq!(peer.attempts(), 1, "no reconnect for an expression change");
        // A URL change reconnects.
        let other = Peer::start(vec![ConnectionScript::accept(vec![Step::Echo])]);
        app.patch(&format!("/v1/websocket-sources/{id}"), ADMIN_KEY, json!({"config": {"url": other.url()}})).await;
        assert!(other.wait_until(WAIT, |p| p.open_connections() == 1).await);
        assert!(peer.wait_until(WAIT, |p| p.open_connections() == 0).await);
        // Disabling closes the socket.
        app.patch(&format!("/v1/websocket-sources/{id}"), ADMIN_KEY, json!({"enabled": false})).await;
        assert!(other.wait_until(WAIT, |p| p.open_connections() == 0).await);
        wait_state(&app, &id, "disabled").await;
        app.patch(&format!("/v1/websocket-sources/{id}"), ADMIN_KEY, json!({"enabled": true})).await;
        assert!(other.wait_until(WAIT, |p| p.open_connections() == 1).await);
        // Deleting closes it too.
        assert_eq!(app.delete(&format!("/v1/websocket-sources/{id}"), ADMIN_KEY).await.status, 204);
        assert!(other.wait_until(WAIT, |p| p.open_connections() == 0).await);
    }

    async fn concurrent_commands_never_leave_two_connections(app: TestApp) {
        let peer = Peer::start(vec![ConnectionScript::accept(vec![Step::Echo])]);
        let id = create_source(&app, source_body("busy", &peer, json!({}))).await;
        wait_state(&app, &id, "connected").await;
        let path = format!("/v1/websocket-sources/{id}");
        let mut calls = Vec::new();
        // More commands than the connect-rate burst: booked connect slots must be honoured.
        for i in 0..40 {
            let (app, path) = (&app, path.clone());
            calls.push(async move {
                match i % 3 {
                    0 => app.post(&format!("{path}/reconnect"), ADMIN_KEY, json!({})).await.status,
                    1 => app.patch(&path, ADMIN_KEY, json!({"name": format!("n{i}")})).await.status,
                    _ => app.patch(&path, ADMIN_KEY, json!({"config": {"subprotocols": [format!("p{i}")]}})).await.status,
                }
            });
        }
        let statuses = futures_util::future::join_all(calls).await;
        assert!(statuses.iter().all(|s| *s == 200 || *s == 202), "{statuses:?}");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let settled = peer.wait_until(WAIT, |p| p.open_connections() == 1).await;
        assert!(settled, "open: {}, attempts: {}, status: {}", peer.open_connections(), peer.attempts(), status(&app, &id).await);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(peer.open_connections(), 1);
        wait_state(&app, &id, "connected").await;
    }

    async fn pause_resume_and_send(app: TestApp) {
        let peer = Peer::start(vec![ConnectionScript::accept(vec![Step::Echo])]);
        let id = create_source(&app, source_body("ops", &peer, json!({}))).await;
        wait_state(&app, &id, "connected").await;
        let sent = app.post(&format!("/v1/websocket-sources/{id}/send"), ADMIN_KEY, json!({"message": {"op": "subscribe"}})).await;
        assert_eq!(sent.status, 202, "{}", sent.text);
        assert!(peer.wait_until(WAIT, |p| p.texts().contains(&json!({"op": "subscribe"}).to_string())).await);
        assert_eq!(app.post(&format!("/v1/websocket-sources/{id}/pause"), ADMIN_KEY, json!({})).await.status, 202);
        wait_state(&app, &id, "paused").await;
        assert!(peer.wait_until(WAIT, |p| p.open_connections() == 0).await);
        let refused = app.post(&format!("/v1/websocket-sources/{id}/send"), ADMIN_KEY, json!({"message": "x"})).await;
        assert_problem(&refused, 409, None);
        // A paused source stays paused through any change: a rename, a new expression, a new
        // connection setting (only resume or reconnect start it).
        let attempts = peer.attempts();
        for patch in [json!({"name": "renamed"}), json!({"event_key_expr": "kind"}), json!({"config": {"max_connection_age_s": 3600}})] {
            let patched = app.patch(&format!("/v1/websocket-sources/{id}"), ADMIN_KEY, patch.clone()).await;
            assert_eq!(patched.status, 200, "{patch}: {}", patched.text);
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(peer.attempts(), attempts, "a PATCH connected the paused source");
        assert_eq!(status(&app, &id).await["state"], "paused");
        assert_eq!(app.post(&format!("/v1/websocket-sources/{id}/resume"), ADMIN_KEY, json!({})).await.status, 202);
        wait_state(&app, &id, "connected").await;
        assert_eq!(peer.open_connections(), 1);
    }

    async fn aged_connections_rotate_make_before_break(app: TestApp) {
        let peer = Peer::start(vec![ConnectionScript::accept(vec![Step::Echo])]);
        let automation = create_automation(&app, "aged", json!("*"), None).await;
        let id = create_source(&app, source_body("aged", &peer, json!({"max_connection_age_s": 5}))).await;
        wait_state(&app, &id, "connected").await;
        assert!(peer.wait_until(Duration::from_secs(15), |p| p.attempts() >= 2 && !p.client_closes().is_empty()).await);
        let opened = peer.attempt_times()[1];
        let closed = peer.client_closes()[0].clone();
        assert_eq!(closed.conn, 0, "the old connection is the one closed");
        assert!(closed.at > opened, "the replacement opened before the old one closed");
        // The close frame is recorded before the old socket is gone: wait for that too.
        assert!(peer.wait_until(Duration::from_secs(5), |p| p.open_connections() == 1).await, "open: {}", peer.open_connections());
        peer.broadcast(json!({"type": "t", "id": "after-rotation"}).to_string());
        assert!(eventually(WAIT, || async { runs_of(&app, &automation).await == 1 }).await);
        let s = status(&app, &id).await;
        assert_eq!(s["state"], "connected", "{s}");
    }

    async fn replay_and_dry_run(app: TestApp) {
        let peer = Peer::start(vec![ConnectionScript::accept(vec![Step::Send(json!({"type": "order.created", "id": "r1", "data": {"amount": 500}}).to_string()), Step::Echo])]);
        let first = create_automation(&app, "replays", json!("order.*"), None).await;
        create_source(&app, source_body("replays", &peer, json!({}))).await;
        assert!(eventually(WAIT, || async { runs_of(&app, &first).await == 1 && undispatched(&app).await == 0 }).await);
        let event_id = app.get("/v1/events?source=replays", ADMIN_KEY).await.body["items"][0]["id"].as_str().unwrap().to_owned();
        let second = create_automation(&app, "replays", json!("order.created"), Some("data.amount > `100`")).await;
        let replayed = app.post(&format!("/v1/events/{event_id}/replay"), ADMIN_KEY, json!({})).await;
        assert_eq!(replayed.status, 200, "{}", replayed.text);
        assert_eq!(replayed.body["runs_created"], 1);
        let again = app.post(&format!("/v1/events/{event_id}/replay"), ADMIN_KEY, json!({})).await;
        assert_eq!(again.body["runs_created"], 0, "replay never duplicates a run");
        assert_eq!(runs_of(&app, &first).await, 1);
        assert_eq!(runs_of(&app, &second).await, 1);
        let dry = app.post("/v1/automations/test", ADMIN_KEY, json!({
            "trigger": {"type": "event", "source": "replays", "on": "order.*", "filter": "data.amount > `100`"},
            "message": {"type": "order.created", "id": "x", "data": {"amount": 50}}
        })).await;
        assert_eq!(dry.status, 200, "{}", dry.text);
        assert_eq!(dry.body["event_key"], "order.created");
        assert_eq!(dry.body["dedup_key"], "x");
        assert_eq!(dry.body["match"]["result"], "filter_false");
        let by_id = app.post("/v1/automations/test", ADMIN_KEY, json!({"automation_id": first, "message": {"type": "order.paid", "id": "y"}})).await;
        assert_eq!(by_id.body["match"]["result"], "matched");
        assert_problem(&app.post("/v1/automations/test", ADMIN_KEY, json!({"message": {}})).await, 422, Some("trigger"));
        let before = event_count(&app, "replays").await;
        assert_eq!(before, 1, "a dry run stores nothing");
        // An automation that no longer matches keeps its run, and the new outcome still names it.
        let run_of_first = replayed.body["outcome"].as_array().unwrap().iter()
            .find(|o| o["automation_id"] == first.as_str()).unwrap()["run_id"].clone();
        assert!(run_of_first.is_string(), "{}", replayed.text);
        let narrowed = app.patch(&format!("/v1/automations/{first}"), ADMIN_KEY, json!({"trigger": {"filter": "data.amount > `1000`"}})).await;
        assert_eq!(narrowed.status, 200, "{}", narrowed.text);
        let verdict_of_first = || async {
            let replayed = app.post(&format!("/v1/events/{event_id}/replay"), ADMIN_KEY, json!({})).await;
            replayed.body["outcome"].as_array().unwrap().iter()
                .find(|o| o["automation_id"] == first.as_str()).cloned().unwrap()
        };
        assert!(eventually(WAIT, || async { verdict_of_first().await["result"] == "filter_false" }).await);
        let verdict = verdict_of_first().await;
        assert_eq!(verdict["run_id"], run_of_first, "{verdict}");
        assert_eq!(runs_of(&app, &first).await, 1);
    }
}

#[actix_web::test]
async fn refused_upgrades_do_not_leak_secrets_into_status() {
    let app = crate::helpers::spawn_app_private(crate::helpers::Backend::Sqlite).await;
    let peer = Peer::start(vec![ConnectionScript {
        upgrade: Upgrade::Refuse(403),
        steps: vec![],
    }]);
    let mut body = source_body(
        "secretive",
        &peer,
        json!({"headers": {"Authorization": "Bearer very-secret-token"}}),
    );
    body["config"]["url"] = json!(format!("{}?token=query-secret", peer.url()));
    let id = create_source(&app, body).await;
    let s = wait_state(&app, &id, "failed").await;
    let text = s.to_string();
    assert!(
        !text.contains("very-secret-token") && !text.contains("query-secret"),
        "{text}"
    );
    assert_eq!(
        peer.request_header(0, "authorization").as_deref(),
        Some("Bearer very-secret-token")
    );
    assert_eq!(
        peer.request_uri(0).as_deref(),
        Some("/ws?token=query-secret")
    );
}
