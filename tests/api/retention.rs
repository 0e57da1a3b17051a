//! Retention on both engines: finished runs and events older than the retention are pruned in
//! the background; an event is kept while any of its runs is unfinished; recent rows stay.
use std::time::Duration;

use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
use serde_json::json;
use switchboard::db;
use uuid::Uuid;

use crate::events_runs::org_of;
use crate::helpers::{ADMIN_KEY, Backend, TestApp, eventually, spawn_with, test_settings};

/// An event received `days_ago` days ago (its id carries that time, as UUID v7 ids do).
async fn old_event(app: &TestApp, org: Uuid, days_ago: i64, n: usize) -> Uuid {
    let at = db::now() - chrono::Duration::days(days_ago);
    let millis = u64::try_from(at.timestamp_millis()).unwrap();
    let id = uuid::Builder::from_unix_timestamp_millis(millis, &rand_bytes(n)).into_uuid();
    db::events::insert_event(
        &app.db,
        entity::event::Model {
            id,
            org_id: org,
            origin: "webhook".into(),
            source: "old".into(),
            source_id: None,
            dedup_key: format!("d{n}"),
            event_key: Some("k".into()),
            raw: json!({"n": n}),
            payload: None,
            meta: json!({}),
            status: "dispatched".into(),
            error: None,
            outcome: Some(json!([])),
            received_at: at,
            dispatched_at: Some(at),
            replay_key: None,
        },
    )
    .await
    .unwrap();
    id
}

fn rand_bytes(n: usize) -> [u8; 10] {
    let mut b = [0u8; 10];
    b[..8].copy_from_slice(&(n as u64 + 1).to_be_bytes());
    b
}

async fn run_for(
    app: &TestApp,
    org: Uuid,
    event: Uuid,
    status: &str,
    finished_days_ago: i64,
) -> Uuid {
    let id = crate::events_runs::insert_run(app, org, Uuid::now_v7(), event, status).await;
    if status != "PENDING" && status != "RUNNING" {
        let at = db::now() - chrono::Duration::days(finished_days_ago);
        entity::automation_run::Entity::update_many()
            .col_expr(
                entity::automation_run::Column::CompletedAt,
                sea_orm::sea_query::Expr::value(at),
            )
            .filter(entity::automation_run::Column::Id.eq(id))
            .exec(&app.db)
            .await
            .unwrap();
    }
    id
}

async fn exists_event(app: &TestApp, id: Uuid) -> bool {
    entity::event::Entity::find_by_id(id)
        .one(&app.db)
        .await
        .unwrap()
        .is_some()
}

async fn exists_run(app: &TestApp, id: Uuid) -> bool {
    entity::automation_run::Entity::find_by_id(id)
        .one(&app.db)
        .await
        .unwrap()
        .is_some()
}

async fn prunes_old_rows_and_keeps_events_with_open_runs(backend: Backend) {
    let (mut settings, dir, pg) = test_settings(backend).await;
    settings.retention_events_days = 7;
    settings.retention_runs_days = 3;
    let app = spawn_with(backend, settings, dir, pg).await;
    let org = org_of(&app, ADMIN_KEY).await;
    let gone_event = old_event(&app, org, 10, 1).await;
    let open_event = old_event(&app, org, 10, 2).await;
    let young_event = old_event(&app, org, 2, 3).await;
    let old_done = run_for(&app, org, gone_event, "SUCCEEDED", 5).await;
    let old_failed = run_for(&app, org, young_event, "FAILED", 4).await;
    let recent_done = run_for(&app, org, young_event, "CANCELLED", 1).await;
    let open_run = run_for(&app, org, open_event, "PENDING", 0).await;
    // A recent failure of an old event: the event goes, the run stays.
    let orphan_event = old_event(&app, org, 10, 4).await;
    let orphan_run = run_for(&app, org, orphan_event, "FAILED", 1).await;
    assert!(
        eventually(Duration::from_secs(90), || async {
            !exists_event(&app, gone_event).await
                && !exists_run(&app, old_done).await
                && !exists_run(&app, old_failed).await
                && !exists_event(&app, orphan_event).await
        })
        .await,
        "old rows were not pruned"
    );
    // Its retry is refused: there is no event left to hand a worker.
    let retried = app
        .post(
            &format!("/v1/runs/{orphan_run}/retry"),
            ADMIN_KEY,
            json!({}),
        )
        .await;
    assert_eq!(retried.status, 409, "{}", retried.text);
    assert!(retried.text.contains("retention"), "{}", retried.text);
    let shown = app.get(&format!("/v1/runs/{orphan_run}"), ADMIN_KEY).await;
    assert_eq!(shown.body["status"], "FAILED", "{}", shown.text);
    assert!(
        exists_event(&app, open_event).await,
        "an event with an open run is kept"
    );
    assert!(exists_run(&app, open_run).await);
    assert!(
        exists_event(&app, young_event).await,
        "a recent event is kept"
    );
    assert!(
        exists_run(&app, recent_done).await,
        "a recently finished run is kept"
    );
}

#[actix_web::test]
async fn retention_prunes_on_sqlite() {
    prunes_old_rows_and_keeps_events_with_open_runs(Backend::Sqlite).await;
}

#[actix_web::test]
async fn retention_prunes_on_postgres() {
    prunes_old_rows_and_keeps_events_with_open_runs(Backend::Postgres).await;
}
