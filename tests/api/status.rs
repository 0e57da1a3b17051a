//! The status the API shows: `connected_at`, `last_event_at` and the counters are right while the
//! source runs, and what is documented to survive a restart (counters, `last_event_at`) does.
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_KEY, Backend, TestApp, spawn_with, test_settings};
use crate::ingest::{WAIT, create_source, status, wait_state};
use crate::ledger_peer::LedgerPeer;

fn time(status: &Value, field: &str) -> Option<DateTime<Utc>> {
    status[field].as_str().map(|t| t.parse().unwrap())
}

async fn counters_settle(app: &TestApp, id: &str, events: u64) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let s = status(app, id).await;
        if s["counters"]["events_stored"] == events && s["counters"]["acks"] == events {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "counters never reached {events}: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn status_survives(backend: Backend) {
    let (mut settings, dir, pg) = test_settings(backend).await;
    settings.allow_private_networks = true;
    let app = spawn_with(backend, settings.clone(), dir, pg).await;
    let peer = LedgerPeer::start();
    let before_connect = Utc::now();
    let body = json!({"name": "s", "source": "s", "kind": "generic", "event_key_expr": "type",
        "dedup_key_expr": "id", "config": {"url": peer.url(), "ack_expr": "{ack: id}"}});
    let id = create_source(&app, body).await;
    let s = wait_state(&app, &id, "connected").await;
    let connected_at = time(&s, "connected_at").expect("connected_at");
    assert!(
        connected_at >= before_connect - chrono::Duration::milliseconds(5)
            && connected_at <= Utc::now(),
        "{s}"
    );
    assert_eq!(s["last_event_at"], Value::Null, "no event yet: {s}");
    assert_eq!(s["counters"]["events_stored"], 0);

    let before_events = Utc::now();
    peer.append("e", 5);
    let s = counters_settle(&app, &id, 5).await;
    let last_event_at = time(&s, "last_event_at").expect("last_event_at");
    assert!(
        last_event_at >= before_events - chrono::Duration::milliseconds(5),
        "{s}"
    );
    assert_eq!(s["counters"]["frames"], 5, "{s}");
    assert_eq!(s["counters"]["duplicates"], 0, "{s}");
    assert_eq!(s["connections"]["ready"], 1, "{s}");

    // An operator reconnect: a new connection, a later connected_at, one more reconnect counted.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let resp = app
        .post(
            &format!("/v1/websocket-sources/{id}/reconnect"),
            ADMIN_KEY,
            json!({}),
        )
        .await;
    assert_eq!(resp.status, 202);
    assert!(peer.wait_until(WAIT, |p| p.connections().len() == 2).await);
    let s = wait_state(&app, &id, "connected").await;
    let reconnected_at = time(&s, "connected_at").unwrap();
    assert!(reconnected_at > connected_at, "{s}");
    assert_eq!(s["counters"]["reconnects"], 1, "{s}");

    // Counters are written at most once a second; let the last change reach storage.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    app.stop().await;
    let (_, dir2, _) = test_settings(Backend::Sqlite).await;
    let again = spawn_with(backend, settings, dir2, None).await;
    let s = wait_state(&again, &id, "connected").await;
    // Survive a restart: the counters and last_event_at. Start afresh: connected_at (a new
    // connection) and consecutive_failures.
    assert_eq!(s["counters"]["events_stored"], 5, "{s}");
    assert_eq!(s["counters"]["frames"], 5, "{s}");
    assert_eq!(s["counters"]["reconnects"], 1, "{s}");
    assert_eq!(time(&s, "last_event_at"), Some(last_event_at), "{s}");
    assert!(time(&s, "connected_at").unwrap() > reconnected_at, "{s}");
    assert_eq!(s["consecutive_failures"], 0, "{s}");
}

#[actix_web::test]
async fn status_is_right_and_survives_a_restart_sqlite() {
    status_survives(Backend::Sqlite).await;
}

#[actix_web::test]
async fn status_is_right_and_survives_a_restart_postgres() {
    status_survives(Backend::Postgres).await;
}
