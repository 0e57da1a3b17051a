//! Events and runs are read-only here; rows are inserted through the repository layer.
use sea_orm::EntityTrait as _;
use serde_json::json;
use switchboard::db;
use uuid::Uuid;

use crate::both_backends;
use crate::helpers::{ADMIN_KEY, TestApp, assert_problem};

pub async fn org_of(app: &TestApp, key: &str) -> Uuid {
    app.get("/v1/me", key).await.body["org_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

pub async fn insert_event(app: &TestApp, org_id: Uuid, source: &str, key: &str) -> Uuid {
    let id = db::new_id();
    db::events::insert_event(
        &app.db,
        entity::event::Model {
            id,
            org_id,
            origin: "websocket".into(),
            source: source.into(),
            source_id: None,
            dedup_key: id.to_string(),
            event_key: Some(key.into()),
            raw: json!({"type": key, "n": 1}),
            payload: Some(json!({"n": 1})),
            meta: json!({}),
            status: "dispatched".into(),
            error: None,
            outcome: Some(json!([])),
            received_at: db::now(),
            dispatched_at: Some(db::now()),
            replay_key: None,
        },
    )
    .await
    .unwrap();
    id
}

pub async fn insert_run(
    app: &TestApp,
    org_id: Uuid,
    automation_id: Uuid,
    event_id: Uuid,
    status: &str,
) -> Uuid {
    let id = db::new_id();
    let source = entity::event::Entity::find_by_id(event_id)
        .one(&app.db)
        .await
        .unwrap()
        .map(|event| event.source)
        .unwrap_or_default();
    db::runs::insert_run(
        &app.db,
        entity::automation_run::Model {
            id,
            org_id,
            automation_id,
            event_id,
            source,
            status: status.into(),
            event_payload: None,
            attempts: 0,
            available_at: Some(db::now()),
            lease_owner: None,
            lease_token: None,
            lease_expires_at: None,
            result: None,
            error_detail: None,
            created_at: db::now(),
            started_at: None,
            completed_at: None,
        },
    )
    .await
    .unwrap();
    id
}

both_backends! {
    async fn events_paginate_with_cursors_and_filter(app: TestApp) {
        let org = org_of(&app, ADMIN_KEY).await;
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(insert_event(&app, org, if i % 2 == 0 { "a" } else { "b" }, &format!("k{i}")).await);
        }
        let first = app.get("/v1/events?limit=2", ADMIN_KEY).await;
        assert_eq!(first.status, 200, "{}", first.text);
        let items = first.body["items"].as_array().unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0]["id"], ids[4].to_string());
        let cursor = first.body["next_cursor"].as_str().unwrap();
        let second = app.get(&format!("/v1/events?limit=2&cursor={cursor}"), ADMIN_KEY).await;
        assert_eq!(second.body["items"][0]["id"], ids[2].to_string());
        let cursor = second.body["next_cursor"].as_str().unwrap();
        let last = app.get(&format!("/v1/events?limit=2&cursor={cursor}"), ADMIN_KEY).await;
        assert_eq!(last.body["items"].as_array().unwrap().len(), 1);
        assert!(last.body["next_cursor"].is_null());

        let only_a = app.get("/v1/events?source=a", ADMIN_KEY).await;
        assert_eq!(only_a.body["items"].as_array().unwrap().len(), 3);
        let by_key = app.get("/v1/events?event_key=k3", ADMIN_KEY).await;
        assert_eq!(by_key.body["items"][0]["id"], ids[3].to_string());
        let one = app.get(&format!("/v1/events/{}", ids[0]), ADMIN_KEY).await;
        assert_eq!(one.body["raw"]["type"], "k0");
        assert_eq!(one.body["status"], "dispatched");
        assert_problem(&app.get("/v1/events?cursor=garbage!", ADMIN_KEY).await, 422, Some("cursor"));
        // A cursor belongs to its list: the runs list refuses the events list's.
        let events_cursor = first.body["next_cursor"].as_str().unwrap();
        assert_problem(&app.get(&format!("/v1/runs?cursor={events_cursor}"), ADMIN_KEY).await, 422, Some("cursor"));
        assert_problem(&app.get(&format!("/v1/events/{}", Uuid::now_v7()), ADMIN_KEY).await, 404, None);
    }

    async fn runs_list_show_and_cancel(app: TestApp) {
        let org = org_of(&app, ADMIN_KEY).await;
        let automation = app.post("/v1/automations", ADMIN_KEY, json!({"name": "A", "trigger": {"type": "event", "source": "a", "on": "*"}})).await;
        let automation_id: Uuid = automation.body["id"].as_str().unwrap().parse().unwrap();
        let event = insert_event(&app, org, "a", "k").await;
        let pending = insert_run(&app, org, automation_id, event, "PENDING").await;
        let other_event = insert_event(&app, org, "a", "k").await;
        let done = insert_run(&app, org, automation_id, other_event, "SUCCEEDED").await;

        let all = app.get("/v1/runs", ADMIN_KEY).await;
        assert_eq!(all.body["items"].as_array().unwrap().len(), 2);
        let pending_only = app.get("/v1/runs?status=PENDING", ADMIN_KEY).await;
        assert_eq!(pending_only.body["items"][0]["id"], pending.to_string());
        let of_automation = app.get(&format!("/v1/automations/{automation_id}/runs?limit=1"), ADMIN_KEY).await;
        assert_eq!(of_automation.body["items"][0]["id"], done.to_string());
        assert!(of_automation.body["next_cursor"].is_string());
        assert_problem(&app.get("/v1/runs?status=DONE", ADMIN_KEY).await, 422, Some("status"));

        let cancelled = app.post(&format!("/v1/runs/{pending}/cancel"), ADMIN_KEY, json!({})).await;
        assert_eq!(cancelled.status, 200, "{}", cancelled.text);
        assert_eq!(cancelled.body["status"], "CANCELLED");
        assert!(cancelled.body["completed_at"].is_string());
        assert_problem(&app.post(&format!("/v1/runs/{pending}/cancel"), ADMIN_KEY, json!({})).await, 409, None);
        assert_problem(&app.post(&format!("/v1/runs/{done}/cancel"), ADMIN_KEY, json!({})).await, 409, None);
        let got = app.get(&format!("/v1/runs/{done}"), ADMIN_KEY).await;
        assert_eq!(got.body["status"], "SUCCEEDED");
    }
}
