//! Nothing committed is lost and no run is created twice: storage going down mid-stream (no ACK
//! while it is down, everything stored once it is back) and a restart mid-stream.
use std::time::Duration;

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;

use crate::helpers::{ADMIN_KEY, Backend, TestApp, eventually, spawn_with, test_settings};
use crate::ingest::{
    create_automation, create_source, event_count, runs_of, source_body, undispatched, wait_state,
};
use crate::peer::{ConnectionScript, Peer, Step, firehose};
use crate::pgtemp::TempPostgres;

fn acked(peer: &Peer, id: &str) -> bool {
    peer.texts()
        .iter()
        .any(|t| t == &json!({"ack": id}).to_string())
}

#[actix_web::test]
async fn no_ack_while_postgres_is_down_and_no_loss_after() {
    let pg = TempPostgres::start();
    let (mut settings, dir, _) = test_settings(Backend::Sqlite).await;
    settings.database_url = Some(pg.url());
    settings.allow_private_networks = true;
    let app = spawn_with(Backend::Postgres, settings, dir, None).await;
    let peer = Peer::start(vec![ConnectionScript::accept(vec![Step::Echo])]);
    let automation = create_automation(&app, "durable", json!("*"), None).await;
    let id = create_source(
        &app,
        source_body("durable", &peer, json!({"ack_expr": "{ack: id}"})),
    )
    .await;
    wait_state(&app, &id, "connected").await;

    peer.broadcast(json!({"type": "t", "id": "m1"}).to_string());
    assert!(
        peer.wait_until(Duration::from_secs(10), |p| acked(p, "m1"))
            .await
    );

    pg.stop();
    peer.broadcast(json!({"type": "t", "id": "m2"}).to_string());
    peer.broadcast(json!({"type": "t", "id": "m3"}).to_string());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !acked(&peer, "m2") && !acked(&peer, "m3"),
        "nothing is ACKed while storage is down: {:?}",
        peer.texts()
    );

    pg.start_again();
    assert!(
        peer.wait_until(Duration::from_secs(30), |p| acked(p, "m2")
            && acked(p, "m3"))
            .await,
        "{:?}",
        peer.texts()
    );
    assert!(
        eventually(Duration::from_secs(30), || async {
            undispatched(&app).await == 0
        })
        .await
    );
    assert_eq!(event_count(&app, "durable").await, 3);
    assert_eq!(runs_of(&app, &automation).await, 3);
}

async fn restart_mid_stream(backend: Backend) {
    let (mut settings, dir, pg) = test_settings(backend).await;
    settings.allow_private_networks = true;
    let app = spawn_with(backend, settings.clone(), dir, pg).await;
    let order = |i: usize| json!({"type": "order", "id": format!("o{i}"), "n": i}).to_string();
    let peer = Peer::start(vec![
        ConnectionScript::accept(vec![firehose(400, order), Step::Echo]),
        // After the restart the sender redelivers everything.
        ConnectionScript::accept(vec![firehose(400, order), Step::Echo]),
    ]);
    let automation = create_automation(&app, "stream", json!("order"), None).await;
    let other = create_automation(&app, "stream", json!("*"), Some("n > `199`")).await;
    create_source(&app, source_body("stream", &peer, json!({}))).await;
    assert!(
        eventually(Duration::from_secs(20), || async {
            event_count(&app, "stream").await >= 50
        })
        .await
    );
    app.stop().await;

    // What a crash leaves behind: events committed but never dispatched, and events whose
    // dispatch another process may repeat (their runs exist already).
    entity::event::Entity::update_many()
        .col_expr(
            entity::event::Column::DispatchedAt,
            Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
        )
        .filter(entity::event::Column::Source.eq("stream"))
        .exec(&app.db)
        .await
        .unwrap();

    let (_, dir2, _) = test_settings(Backend::Sqlite).await;
    let app2: TestApp = spawn_with(backend, settings, dir2, None).await;
    assert!(
        eventually(Duration::from_secs(60), || async {
            event_count(&app2, "stream").await == 400 && undispatched(&app2).await == 0
        })
        .await,
        "events: {}, undispatched: {}",
        event_count(&app2, "stream").await,
        undispatched(&app2).await
    );
    assert_eq!(
        runs_of(&app2, &automation).await,
        400,
        "one run per event, never two"
    );
    assert_eq!(runs_of(&app2, &other).await, 200);
    let runs = entity::automation_run::Entity::find()
        .count(&app2.db)
        .await
        .unwrap();
    assert_eq!(runs, 600);
    let dupes = app2.db.query_one_raw(sea_orm::Statement::from_string(
        app2.db.get_database_backend(),
        "SELECT COUNT(*) AS n FROM (SELECT automation_id, event_id FROM automation_runs GROUP BY automation_id, event_id HAVING COUNT(*) > 1) d",
    )).await.unwrap().unwrap();
    assert_eq!(dupes.try_get::<i64>("", "n").unwrap(), 0);
    let listed = app2.get("/v1/runs?limit=200", ADMIN_KEY).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 200);
    drop(app);
}

#[actix_web::test]
async fn restart_mid_stream_dispatches_every_event_once_sqlite() {
    restart_mid_stream(Backend::Sqlite).await;
}

#[actix_web::test]
async fn restart_mid_stream_dispatches_every_event_once_postgres() {
    restart_mid_stream(Backend::Postgres).await;
}

async fn graceful_shutdown(backend: Backend) {
    let (mut settings, dir, pg) = test_settings(backend).await;
    settings.allow_private_networks = true;
    let app = spawn_with(backend, settings, dir, pg).await;
    let peer = Peer::start(vec![ConnectionScript::accept(vec![
        firehose(3000, |i| {
            json!({"type": "t", "id": format!("g{i}")}).to_string()
        }),
        Step::Echo,
    ])]);
    create_source(
        &app,
        source_body("graceful", &peer, json!({"ack_expr": "{ack: id}"})),
    )
    .await;
    assert!(
        eventually(Duration::from_secs(20), || async {
            event_count(&app, "graceful").await >= 100
        })
        .await
    );
    app.stop().await;
    assert!(
        peer.wait_until(Duration::from_secs(15), |p| !p.client_closes().is_empty())
            .await,
        "a close frame ends the connection"
    );
    let close = &peer.client_closes()[0];
    assert_eq!(close.code, Some(1000));
    let stored = event_count(&app, "graceful").await;
    let acks: std::collections::HashSet<String> = peer
        .texts()
        .into_iter()
        .filter(|t| t.contains("\"ack\""))
        .collect();
    assert_eq!(
        acks.len() as u64,
        stored,
        "every stored event was ACKed before the close, and nothing else"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        event_count(&app, "graceful").await,
        stored,
        "nothing is read after the shutdown"
    );
}

#[actix_web::test]
async fn graceful_shutdown_acks_every_stored_event_sqlite() {
    graceful_shutdown(Backend::Sqlite).await;
}

#[actix_web::test]
async fn graceful_shutdown_acks_every_stored_event_postgres() {
    graceful_shutdown(Backend::Postgres).await;
}

#[actix_web::test]
async fn webhooks_answer_503_while_postgres_is_down_and_accept_the_retry() {
    use switchboard::webhooks::sign::sign_github;
    let pg = TempPostgres::start();
    let (mut settings, dir, _) = test_settings(Backend::Sqlite).await;
    settings.database_url = Some(pg.url());
    let app = spawn_with(Backend::Postgres, settings, dir, None).await;
    let created = app
        .post(
            "/v1/webhooks",
            ADMIN_KEY,
            json!({"name": "gh", "source": "gh", "verifier": {"preset": "github"}}),
        )
        .await;
    let secret = created.body["secret"].as_str().unwrap().to_owned();
    let url = created.body["webhook_url"]
        .as_str()
        .unwrap()
        .replace("https://hooks.example.com", "");
    let automation = create_automation(&app, "gh", json!("*"), None).await;
    let body = br#"{"action":"opened"}"#;
    let headers = vec![
        ("content-type", "application/json".to_owned()),
        ("x-github-event", "issues".to_owned()),
        ("x-github-delivery", "delivery-1".to_owned()),
        ("x-hub-signature-256", sign_github(&secret, body)),
    ];
    pg.stop();
    let down = app.deliver(&url, &headers, body).await;
    assert_eq!(down.status, 503, "{}", down.text);
    assert!(down.headers.get("retry-after").is_some());
    pg.start_again();
    let mut accepted = None;
    for _ in 0..50 {
        let resp = app.deliver(&url, &headers, body).await;
        if resp.status == 200 {
            accepted = Some(resp);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let accepted = accepted.expect("the retried delivery is accepted once storage is back");
    assert_eq!(accepted.body["duplicate"], false);
    assert!(
        eventually(Duration::from_secs(20), || async {
            undispatched(&app).await == 0
        })
        .await
    );
    assert_eq!(runs_of(&app, &automation).await, 1);
    assert_eq!(
        app.deliver(&url, &headers, body).await.body["duplicate"],
        true
    );
}

async fn dispatch_overflow(backend: Backend) {
    let (mut settings, dir, pg) = test_settings(backend).await;
    settings.allow_private_networks = true;
    // A tiny in-memory queue: most events must be read back from storage.
    settings.dispatch_queue_limit = 5;
    let app = spawn_with(backend, settings, dir, pg).await;
    let order = |i: usize| json!({"type": "order", "id": format!("q{i}"), "n": i}).to_string();
    let peer = Peer::start(vec![ConnectionScript::accept(vec![
        firehose(600, order),
        Step::Echo,
    ])]);
    let every = create_automation(&app, "overflow", json!("order"), None).await;
    let half = create_automation(&app, "overflow", json!("*"), Some("n > `299`")).await;
    create_source(&app, source_body("overflow", &peer, json!({}))).await;
    assert!(
        eventually(Duration::from_secs(60), || async {
            event_count(&app, "overflow").await == 600 && undispatched(&app).await == 0
        })
        .await,
        "events: {}, undispatched: {}",
        event_count(&app, "overflow").await,
        undispatched(&app).await
    );
    assert_eq!(runs_of(&app, &every).await, 600);
    assert_eq!(runs_of(&app, &half).await, 300);
}

#[actix_web::test]
async fn dispatch_reads_back_what_its_queue_could_not_hold_sqlite() {
    dispatch_overflow(Backend::Sqlite).await;
}

#[actix_web::test]
async fn dispatch_reads_back_what_its_queue_could_not_hold_postgres() {
    dispatch_overflow(Backend::Postgres).await;
}

/// Storage down for longer than the pong timeout while the peer keeps sending: the connection
/// stops reading (backpressure) but is not torn down for a pong it could not read, and every
/// message is stored and ACKed once storage is back.
#[actix_web::test]
async fn backpressure_longer_than_the_pong_timeout_keeps_the_connection() {
    let pg = TempPostgres::start();
    let (mut settings, dir, _) = test_settings(Backend::Sqlite).await;
    settings.database_url = Some(pg.url());
    settings.allow_private_networks = true;
    let app = spawn_with(Backend::Postgres, settings, dir, None).await;
    const N: usize = 6_000; // more than the inbox buffer holds
    let order = |i: usize| json!({"type": "order", "id": format!("p{i}")}).to_string();
    let peer = Peer::start(vec![ConnectionScript::accept(vec![
        Step::Sleep(Duration::from_secs(2)),
        firehose(N, order),
        Step::Echo,
    ])]);
    let liveness = json!({"ping_interval_s": 1, "pong_timeout_s": 1, "idle_timeout_s": 5});
    let id = create_source(
        &app,
        source_body(
            "bp",
            &peer,
            json!({"ack_expr": "{ack: id}", "liveness": liveness}),
        ),
    )
    .await;
    wait_state(&app, &id, "connected").await;
    pg.stop();
    // Well past ping interval + pong timeout and the idle timeout, with reading stopped.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(peer.attempts(), 1, "the connection was kept");
    assert!(
        peer.texts().is_empty(),
        "nothing ACKed while storage is down"
    );
    pg.start_again();
    assert!(
        peer.wait_until(Duration::from_secs(60), |p| p.texts().len() >= N)
            .await,
        "ACKs: {}",
        peer.texts().len()
    );
    assert_eq!(peer.attempts(), 1, "never reconnected");
    assert!(
        eventually(Duration::from_secs(30), || async {
            event_count(&app, "bp").await == N as u64
        })
        .await
    );
}
