//! WebSocket as RFC 6455 says, against the scriptable peer: close codes drive the restart policy
//! (and reach `fail_expr`), and the inbound-idle watchdog watches the feed, not the socket.
use std::time::Duration;

use serde_json::json;

use crate::both_backends_private;
use crate::helpers::TestApp;
use crate::ingest::{WAIT, create_source, event_count, source_body, status, wait_state};
use crate::peer::{ConnectionScript, Peer, Step, Upgrade};

fn closing(code: u16, reason: &str) -> Vec<ConnectionScript> {
    let steps = vec![
        Step::Send(json!({"type": "t", "id": "1"}).to_string()),
        Step::Sleep(Duration::from_millis(200)),
        Step::Close(code, reason.to_owned()),
    ];
    vec![ConnectionScript::accept(steps)]
}

both_backends_private! {
    async fn close_codes_drive_the_restart_policy(app: TestApp) {
        // An auth/policy code is terminal by default; the detail shows code and reason.
        let denied = Peer::start(closing(4401, "token expired"));
        let id = create_source(&app, source_body("denied", &denied, json!({}))).await;
        let s = wait_state(&app, &id, "failed").await;
        let detail = s["detail"].as_str().unwrap();
        assert!(detail.contains("4401") && detail.contains("token expired"), "{s}");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(denied.attempts(), 1, "no retry after a terminal close");
        assert_eq!(event_count(&app, "denied").await, 1, "what came before the close is kept");

        // Any other code is transient: retried with backoff, the detail says which close it was.
        let going = Peer::start(closing(4000, "maintenance"));
        let id = create_source(&app, source_body("going", &going, json!({}))).await;
        assert!(going.wait_until(WAIT, |p| p.attempts() >= 2).await, "retried");
        let s = status(&app, &id).await;
        assert_ne!(s["state"], "failed", "{s}");

        // The codes are configurable per source: with none, 4401 is retried too.
        let lenient = Peer::start(closing(4401, "token expired"));
        let body = source_body("lenient", &lenient, json!({"liveness": {"terminal_close_codes": []}}));
        create_source(&app, body).await;
        assert!(lenient.wait_until(WAIT, |p| p.attempts() >= 2).await, "retried");

        // fail_expr sees the close as {"close": {"code": …, "reason": …}}.
        let custom = Peer::start(closing(4000, "subscription cancelled"));
        let body = source_body("custom", &custom, json!({"fail_expr": "close.reason == 'subscription cancelled'"}));
        let id = create_source(&app, body).await;
        let s = wait_state(&app, &id, "failed").await;
        assert!(s["detail"].as_str().unwrap().contains("fail_expr"), "{s}");

        let bad = app.post("/v1/websocket-sources", crate::helpers::ADMIN_KEY,
            source_body("bad", &custom, json!({"liveness": {"terminal_close_codes": [999]}}))).await;
        crate::helpers::assert_problem(&bad, 422, Some("config.liveness.terminal_close_codes[0]"));
    }

    async fn the_idle_watchdog_watches_data_not_pongs(app: TestApp) {
        let liveness = json!({"ping_interval_s": 1, "pong_timeout_s": 3, "idle_timeout_s": 5, "close_timeout_ms": 200});
        // Answers every ping (so pongs keep coming) but never sends data: replaced.
        let silent = Peer::start(vec![ConnectionScript::accept(vec![Step::Echo])]);
        let id = create_source(&app, source_body("silent", &silent, json!({"liveness": liveness}))).await;
        wait_state(&app, &id, "connected").await;
        assert!(silent.wait_until(Duration::from_secs(12), |p| p.attempts() >= 2).await, "not replaced");
        let times = silent.attempt_times();
        let after = times[1].duration_since(times[0]);
        assert!(after >= Duration::from_secs(5), "replaced after {after:?}, before the idle timeout");
        assert!(silent.pongs() == 0 || silent.pings_received() > 0);
        // Sends a message every second for eight seconds: never replaced.
        let mut steps = Vec::new();
        for i in 0..8 {
            steps.push(Step::Send(json!({"type": "t", "id": i}).to_string()));
            steps.push(Step::Sleep(Duration::from_secs(1)));
        }
        steps.push(Step::Echo);
        let busy = Peer::start(vec![ConnectionScript::accept(steps)]);
        create_source(&app, source_body("busy", &busy, json!({"liveness": liveness}))).await;
        tokio::time::sleep(Duration::from_secs(8)).await;
        assert_eq!(busy.attempts(), 1, "a peer that sends data was replaced");
        assert_eq!(event_count(&app, "busy").await, 8);
    }

    async fn subprotocols_are_offered_only_when_configured_and_checked(app: TestApp) {
        // None configured: no Sec-WebSocket-Protocol header at all (not an empty one).
        let plain = Peer::start(vec![ConnectionScript::accept(vec![Step::Echo])]);
        let id = create_source(&app, source_body("plain", &plain, json!({}))).await;
        wait_state(&app, &id, "connected").await;
        assert_eq!(plain.request_header(0, "sec-websocket-protocol"), None);

        // Offered and chosen: connected.
        let chosen = Peer::start(vec![ConnectionScript {
            upgrade: Upgrade::AcceptWith(vec![("Sec-WebSocket-Protocol".into(), "v1.feed".into())]),
            steps: vec![Step::Echo],
        }]);
        let id = create_source(&app, source_body("chosen", &chosen, json!({"subprotocols": ["v2.feed", "v1.feed"]}))).await;
        wait_state(&app, &id, "connected").await;
        let offered = chosen.request_header(0, "sec-websocket-protocol").unwrap_or_default();
        let offered: Vec<&str> = offered.split(',').map(str::trim).collect();
        assert_eq!(offered, ["v2.feed", "v1.feed"], "offered in the configured order");

        // The server answers one that was not offered: a terminal handshake error naming both.
        let wrong = Peer::start(vec![ConnectionScript {
            upgrade: Upgrade::AcceptWith(vec![("Sec-WebSocket-Protocol".into(), "v9.feed".into())]),
            steps: vec![Step::Echo],
        }]);
        let id = create_source(&app, source_body("wrong", &wrong, json!({"subprotocols": ["v1.feed"]}))).await;
        let s = wait_state(&app, &id, "failed").await;
        let detail = s["detail"].as_str().unwrap();
        assert!(detail.contains("v9.feed") && detail.contains("v1.feed"), "{s}");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(wrong.attempts(), 1);
    }
}
