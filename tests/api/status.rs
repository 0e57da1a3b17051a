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

crate::both_backends! {
    async fn counters_of_many_sources_are_written_in_one_statement(app: TestApp) {
        use entity::source_status;
        use sea_orm::EntityTrait as _;
        use switchboard::db::status::{StateRecord, write_counters_batch, write_state};
        let record = || StateRecord {
            state: "connected".to_owned(),
            detail: None,
            connected_at: None,
            next_retry_at: None,
            consecutive_failures: 0,
        };
        let ids: Vec<uuid::Uuid> = (0..1_200).map(|_| uuid::Uuid::now_v7()).collect();
        for id in &ids {
            write_state(&app.db, *id, record(), 0).await.unwrap();
        }
        let earlier: DateTime<Utc> = "2026-01-02T03:04:05.678901Z".parse().unwrap();
        // Every source gets an event time, then a second batch (more rows than one SQLite chunk)
        // with none for the even ones: those keep what was stored.
        let first: Vec<_> = ids.iter().map(|id| (*id, json!({"events_stored": 1}), Some(earlier))).collect();
        write_counters_batch(&app.db, &first, &|_| 0).await.unwrap();
        let later = earlier + chrono::Duration::seconds(90);
        let second: Vec<_> = ids.iter().enumerate().map(|(i, id)| {
            let at = (i % 2 == 1).then_some(later);
            (*id, json!({"events_stored": i, "text": "a \"quoted\" ü"}), at)
        }).collect();
        // A source without a status row is skipped, not created.
        let mut with_unknown = second.clone();
        with_unknown.push((uuid::Uuid::now_v7(), json!({}), None));
        write_counters_batch(&app.db, &with_unknown, &|_| 0).await.unwrap();
        let rows = source_status::Entity::find().all(&app.db).await.unwrap();
        assert_eq!(rows.len(), ids.len());
        let by_id: std::collections::HashMap<_, _> = rows.into_iter().map(|r| (r.source_id, r)).collect();
        for (i, id) in ids.iter().enumerate() {
            let row = &by_id[id];
            assert_eq!(row.counters, json!({"events_stored": i, "text": "a \"quoted\" ü"}));
            let expected = if i % 2 == 1 { later } else { earlier };
            assert_eq!(row.last_event_at.map(|t| t.timestamp_micros()), Some(expected.timestamp_micros()), "source {i}");
            assert_eq!(row.state, "connected");
        }
    }
}

crate::both_backends! {
    async fn a_stale_holder_cannot_overwrite_its_successors_status(app: TestApp) {
        use entity::source_status;
        use sea_orm::EntityTrait as _;
        use switchboard::db::status::{StateRecord, write_counters_batch, write_state};
        let record = |state: &str| StateRecord {
            state: state.to_owned(),
            detail: None,
            connected_at: None,
            next_retry_at: None,
            consecutive_failures: 0,
        };
        let id = uuid::Uuid::now_v7();
        write_state(&app.db, id, record("connected"), 4).await.unwrap();
        write_state(&app.db, id, record("connecting"), 5).await.unwrap();
        // The holder of epoch 4 lost the source: what it writes now is refused.
        write_state(&app.db, id, record("backoff"), 4).await.unwrap();
        let row = source_status::Entity::find_by_id(id).one(&app.db).await.unwrap().unwrap();
        assert_eq!(row.state, "connecting");
        write_state(&app.db, id, record("connected"), 5).await.unwrap();
        let row = source_status::Entity::find_by_id(id).one(&app.db).await.unwrap().unwrap();
        assert_eq!(row.state, "connected");
        if app.db.get_database_backend() == sea_orm::DbBackend::Postgres {
            write_counters_batch(&app.db, &[(id, json!({"stale": true}), None)], &|_| 4).await.unwrap();
            let row = source_status::Entity::find_by_id(id).one(&app.db).await.unwrap().unwrap();
            assert_eq!(row.counters, json!({}));
            write_counters_batch(&app.db, &[(id, json!({"fresh": true}), None)], &|_| 5).await.unwrap();
            let row = source_status::Entity::find_by_id(id).one(&app.db).await.unwrap().unwrap();
            assert_eq!(row.counters, json!({"fresh": true}));
        }
    }
}
