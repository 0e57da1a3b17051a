//! Schedule triggers on both engines: validation naming the field, the dry run's next ticks, a
//! missed tick caught up once (`catch_up: latest`) or skipped (`none`), exactly once across a
//! restart (the restarted app fires the same tick again; its dedup key refuses it), and the tick's
//! run claimed by a worker.
use std::time::Duration;

use chrono::{Timelike as _, Utc};
use sea_orm::{ColumnTrait as _, EntityTrait as _, PaginatorTrait as _, QueryFilter as _};
use serde_json::json;
use switchboard::db;
use uuid::Uuid;

use crate::both_backends;
use crate::helpers::{ADMIN_KEY, TestApp, assert_problem, spawn_with};
use crate::workers::{claim, worker_key};

async fn schedule_events(app: &TestApp, automation: Uuid) -> Vec<entity::event::Model> {
    entity::event::Entity::find()
        .filter(entity::event::Column::Source.eq("schedule"))
        .filter(entity::event::Column::DedupKey.starts_with(automation.to_string()))
        .all(&app.db)
        .await
        .unwrap()
}

async fn runs_of(app: &TestApp, automation: Uuid) -> u64 {
    entity::automation_run::Entity::find()
        .filter(entity::automation_run::Column::AutomationId.eq(automation))
        .count(&app.db)
        .await
        .unwrap()
}

/// A schedule automation stored as if it had been created ten minutes ago (so ticks were missed).
async fn old_schedule(app: &TestApp, org: Uuid, catch_up: &str) -> Uuid {
    let id = db::new_id();
    let then = db::now() - chrono::Duration::minutes(10);
    db::automations::insert_automation(
        &app.db,
        entity::automation::Model {
            id,
            org_id: org,
            name: format!("every minute ({catch_up})"),
            enabled: true,
            trigger: json!({"type": "schedule", "cron": "* * * * *", "timezone": "Europe/Paris", "catch_up": catch_up}),
            retry: None,
            lease_s: None,
            max_concurrency: None,
            created_at: then,
            updated_at: then,
        },
    )
    .await
    .unwrap();
    id
}

/// How long the app may take to pick up rows inserted behind its back: an API change applies only
/// its own row, the indexer resynchronises with storage every `RESYNC_INTERVAL`.
const PICKED_UP: Duration =
    Duration::from_secs(switchboard::actors::registry::RESYNC_INTERVAL.as_secs() + 5);

both_backends! {
    async fn schedule_triggers_are_validated_and_dry_run(app: TestApp) {
        let bad = app.post("/v1/automations", ADMIN_KEY, json!({"name": "s", "trigger": {"type": "schedule", "cron": "* * * * * *", "timezone": "Nowhere/Land", "catch_up": "all"}})).await;
        for field in ["trigger.cron", "trigger.timezone", "trigger.catch_up"] {
            assert_problem(&bad, 422, Some(field));
        }
        let mixed = app.post("/v1/automations", ADMIN_KEY, json!({"name": "s", "trigger": {"type": "schedule", "cron": "0 9 * * *", "source": "x"}})).await;
        assert_problem(&mixed, 422, Some("trigger.source"));
        let event_with_cron = app.post("/v1/automations", ADMIN_KEY, json!({"name": "s", "trigger": {"type": "event", "source": "x", "on": "*", "cron": "0 9 * * *"}})).await;
        assert_problem(&event_with_cron, 422, Some("trigger.cron"));
        // Event triggers cannot listen to the ticks' reserved source.
        let on_ticks = app.post("/v1/automations", ADMIN_KEY, json!({"name": "s", "trigger": {"type": "event", "source": "schedule", "on": "*"}})).await;
        assert_problem(&on_ticks, 422, Some("trigger.source"));
        // Only standard cron: no field that never matches, no extensions.
        for cron in ["0 0 30 2 *", "0 0 L * *", "0 0 * * MON#2", "0 0 15W * *", "0 0 ? * *"] {
            let resp = app.post("/v1/automations", ADMIN_KEY, json!({"name": "s", "trigger": {"type": "schedule", "cron": cron}})).await;
            assert_problem(&resp, 422, Some("trigger.cron"));
        }
        let created = app.post("/v1/automations", ADMIN_KEY, json!({"name": "nightly", "trigger": {"type": "schedule", "cron": "30 2 * * *", "timezone": "Europe/Paris"}})).await;
        assert_eq!(created.status, 201, "{}", created.text);
        assert_eq!(created.body["trigger"], json!({"type": "schedule", "cron": "30 2 * * *", "timezone": "Europe/Paris"}));
        assert_eq!(created.body["warnings"], json!([]));
        let dry = app.post("/v1/automations/test", ADMIN_KEY, json!({"trigger": {"type": "schedule", "cron": "*/5 * * * *"}})).await;
        assert_eq!(dry.status, 200, "{}", dry.text);
        let ticks: Vec<chrono::DateTime<Utc>> = serde_json::from_value(dry.body["next_ticks"].clone()).unwrap();
        assert_eq!(ticks.len(), 5);
        assert!(ticks.windows(2).all(|w| w[1] - w[0] == chrono::Duration::minutes(5)));
        assert!(ticks.iter().all(|t| t.minute() % 5 == 0 && t.second() == 0 && *t > Utc::now()));
        let by_id = app.post("/v1/automations/test", ADMIN_KEY, json!({"automation_id": created.body["id"]})).await;
        assert_eq!(by_id.body["next_ticks"].as_array().unwrap().len(), 5, "{}", by_id.text);
    }

    async fn a_missed_tick_runs_once_across_a_restart(app: TestApp) {
        // Stay inside one minute (the resync included), so exactly one tick is due throughout.
        if Utc::now().second() > 30 {
            tokio::time::sleep(Duration::from_secs(u64::from(62 - Utc::now().second()))).await;
        }
        let org = crate::events_runs::org_of(&app, ADMIN_KEY).await;
        let latest = old_schedule(&app, org, "latest").await;
        let none = old_schedule(&app, org, "none").await;
        assert!(crate::helpers::eventually(PICKED_UP, || async { runs_of(&app, latest).await == 1 }).await);
        let events = schedule_events(&app, latest).await;
        assert_eq!(events.len(), 1);
        let tick = events[0].meta["tick"].as_str().unwrap().to_owned();
        let expected = Utc::now().with_second(0).unwrap().with_nanosecond(0).unwrap();
        assert_eq!(chrono::DateTime::parse_from_rfc3339(&tick).unwrap(), expected, "the latest missed tick");
        assert_eq!(events[0].payload.as_ref().unwrap()["timezone"], "Europe/Paris");
        // The worker sees it like any run.
        let key = worker_key(&app).await;
        let claimed = claim(&app, &key, json!({"automation_ids": [latest]})).await;
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0]["source"], "schedule");
        assert_eq!(claimed[0]["event_key"], "schedule.tick");
        assert_eq!(claimed[0]["event_payload"]["payload"]["tick"], events[0].payload.as_ref().unwrap()["tick"]);
        let replayed = app.post(&format!("/v1/events/{}/replay", events[0].id), ADMIN_KEY, json!({})).await;
        assert_problem(&replayed, 409, None);

        // Restart on the same database: the new process catches up the same tick; its dedup key
        // makes that a no-op. (In a test the old process's background loops share the runtime,
        // so this also plays two replicas at once.)
        app.stop().await;
        let TestApp { backend, settings, _dir, _pg, .. } = app;
        let app = spawn_with(backend, settings, _dir, _pg).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(runs_of(&app, latest).await, 1, "exactly one run for the tick");
        assert_eq!(schedule_events(&app, latest).await.len(), 1);
        assert_eq!(runs_of(&app, none).await, 0, "catch_up none skips missed ticks");
        let metrics = app.get("/metrics", ADMIN_KEY).await;
        assert!(metrics.text.contains("switchboard_schedule_ticks_total"), "{}", metrics.text);
    }
}
