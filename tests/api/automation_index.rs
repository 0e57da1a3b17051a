//! The automation index follows every change made through the API at once (read-your-writes: an
//! event delivered right after the answer is matched against the change), and picks up changes
//! made behind its back (another replica) when it resynchronises.
use std::time::Duration;

use serde_json::{Value, json};
use switchboard::actors::registry::AutomationRegistry;
use uuid::Uuid;

use crate::both_backends;
use crate::events_runs::org_of;
use crate::helpers::{ADMIN_KEY, TestApp};

/// A webhook source `slug` whose events are keyed by their `type`; gives its inbound path.
async fn webhook(app: &TestApp, slug: &str) -> String {
    let hook = app
        .post("/v1/webhooks", ADMIN_KEY, json!({"name": slug, "source": slug, "verifier": {"preset": "stripe"}, "insecure": true}))
        .await;
    assert_eq!(hook.status, 201, "{}", hook.text);
    hook.body["webhook_url"]
        .as_str()
        .unwrap()
        .replace("https://hooks.example.com", "")
}

async fn automation(app: &TestApp, trigger: Value) -> String {
    let created = app
        .post(
            "/v1/automations",
            ADMIN_KEY,
            json!({"name": "a", "trigger": trigger}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    created.body["id"].as_str().unwrap().to_owned()
}

async fn patch(app: &TestApp, id: &str, body: Value) {
    let resp = app
        .patch(&format!("/v1/automations/{id}"), ADMIN_KEY, body)
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
}

/// Delivers one event and gives its outcome once dispatched: (automation id, result), sorted.
async fn outcome_of(app: &TestApp, url: &str, key: &str, n: u64) -> Vec<(String, String)> {
    let body = json!({"id": Uuid::now_v7().to_string(), "type": key, "n": n}).to_string();
    let resp = app
        .deliver(
            url,
            &[("content-type", "application/json".to_owned())],
            body.as_bytes(),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    let path = format!("/v1/events/{}", resp.body["event_id"].as_str().unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let outcome = loop {
        let outcome = app.get(&path, ADMIN_KEY).await.body["outcome"].clone();
        if !outcome.is_null() {
            break outcome;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the event was not dispatched"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut verdicts: Vec<(String, String)> = outcome
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["automation_id"].as_str().unwrap().to_owned(),
                o["result"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    verdicts.sort();
    verdicts
}

fn verdicts(pairs: &[(&String, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<_> = pairs
        .iter()
        .map(|(id, r)| ((*id).clone(), (*r).to_owned()))
        .collect();
    v.sort();
    v
}

both_backends! {
    async fn every_api_change_applies_before_the_answer(app: TestApp) {
        let jobs = webhook(&app, "jobs").await;
        let other = webhook(&app, "other").await;
        let a = automation(&app, json!({"type": "event", "source": "jobs", "on": "job.*"})).await;
        let b = automation(&app, json!({"type": "event", "source": "jobs", "on": "job.*", "filter": "n > `5`"})).await;
        let c = automation(&app, json!({"type": "event", "source": "other", "on": "*"})).await;
        assert_eq!(outcome_of(&app, &jobs, "job.run", 1).await, verdicts(&[(&a, "matched"), (&b, "filter_false")]));
        assert_eq!(outcome_of(&app, &other, "job.run", 1).await, verdicts(&[(&c, "matched")]));
        // PATCH `on`: b no longer shares a's glob.
        patch(&app, &b, json!({"trigger": {"type": "event", "source": "jobs", "on": "job.done", "filter": "n > `5`"}})).await;
        assert_eq!(outcome_of(&app, &jobs, "job.run", 10).await, verdicts(&[(&a, "matched"), (&b, "on_mismatch")]));
        assert_eq!(outcome_of(&app, &jobs, "job.done", 10).await, verdicts(&[(&a, "matched"), (&b, "matched")]));
        // PATCH the filter, then disable a.
        patch(&app, &b, json!({"trigger": {"type": "event", "source": "jobs", "on": "job.done", "filter": "n < `5`"}})).await;
        patch(&app, &a, json!({"enabled": false})).await;
        assert_eq!(outcome_of(&app, &jobs, "job.done", 10).await, verdicts(&[(&b, "filter_false")]));
        // Move b to the other source, delete c, enable a again.
        patch(&app, &b, json!({"trigger": {"type": "event", "source": "other", "on": "job.*"}})).await;
        let deleted = app.delete(&format!("/v1/automations/{c}"), ADMIN_KEY).await;
        assert_eq!(deleted.status, 204, "{}", deleted.text);
        patch(&app, &a, json!({"enabled": true})).await;
        assert_eq!(outcome_of(&app, &jobs, "job.run", 1).await, verdicts(&[(&a, "matched")]));
        assert_eq!(outcome_of(&app, &other, "job.run", 1).await, verdicts(&[(&b, "matched")]));
    }
}

both_backends! {
    async fn a_resync_picks_up_changes_made_behind_its_back(app: TestApp) {
        let org = org_of(&app, ADMIN_KEY).await;
        let registry = AutomationRegistry::load(app.db.clone()).await.unwrap();
        assert_eq!(registry.resync().await.unwrap(), 0);
        let now = switchboard::db::now();
        let row = entity::automation::Model {
            id: switchboard::db::new_id(),
            org_id: org,
            name: "elsewhere".into(),
            enabled: true,
            trigger: json!({"type": "event", "source": "jobs", "on": "job.*"}),
            retry: None,
            lease_s: None,
            max_concurrency: None,
            created_at: now,
            updated_at: now,
        };
        let row = switchboard::db::automations::insert_automation(&app.db, row).await.unwrap();
        assert!(registry.current().automations_of(org, "jobs").is_empty());
        assert_eq!(registry.resync().await.unwrap(), 1);
        assert_eq!(registry.current().automations_of(org, "jobs")[0].id, row.id);
        assert_eq!(registry.info()[&row.id].name, "elsewhere");
        let mut changed = row.clone();
        changed.trigger = json!({"type": "event", "source": "other", "on": "x"});
        changed.updated_at = now + chrono::Duration::milliseconds(5);
        switchboard::db::automations::update_automation(&app.db, changed).await.unwrap();
        assert_eq!(registry.resync().await.unwrap(), 1);
        assert!(registry.current().automations_of(org, "jobs").is_empty());
        assert_eq!(registry.current().automations_of(org, "other").len(), 1);
        switchboard::db::automations::delete_automation(&app.db, row.id).await.unwrap();
        assert_eq!(registry.resync().await.unwrap(), 1);
        assert!(registry.current().is_empty() && registry.info().is_empty());
        assert_eq!(registry.resync().await.unwrap(), 0, "nothing left to pick up");
    }
}

both_backends! {
    async fn a_batchs_runs_share_their_claim_time_and_follow_arrival_in_id_order(app: TestApp) {
        let org = org_of(&app, ADMIN_KEY).await;
        let now = switchboard::db::now();
        for name in ["first", "second"] {
            let row = entity::automation::Model {
                id: switchboard::db::new_id(),
                org_id: org,
                name: name.into(),
                enabled: true,
                trigger: json!({"type": "event", "source": "jobs", "on": "job.*"}),
                retry: None,
                lease_s: None,
                max_concurrency: None,
                created_at: now,
                updated_at: now,
            };
            switchboard::db::automations::insert_automation(&app.db, row).await.unwrap();
        }
        let registry = AutomationRegistry::load(app.db.clone()).await.unwrap();
        // Three events received a few milliseconds apart, matched as one batch.
        let mut batch = Vec::new();
        for n in 0..3 {
            tokio::time::sleep(Duration::from_millis(3)).await;
            let id = switchboard::db::new_id();
            batch.push(switchboard::actors::dispatch::PendingEvent {
                id,
                org_id: org,
                source: "jobs".into(),
                event_key: Some("job.run".into()),
                payload: json!({"n": n}),
                received_at: switchboard::db::now(),
                route: org,
            });
        }
        let records = switchboard::actors::dispatch::decide(&registry, &batch);
        let mut runs: Vec<_> = records.iter().flat_map(|r| r.runs.iter()).collect();
        assert_eq!(runs.len(), 6, "each event matches both automations");
        let created = runs[0].created_at;
        assert!(
            runs.iter().all(|r| r.created_at == created && r.available_at == Some(created)),
            "one creation and claim time for the whole batch: {runs:?}"
        );
        // Claim order (`available_at`, then id) is then id order, and that follows arrival.
        runs.sort_by_key(|r| r.id);
        let events: Vec<Uuid> = runs.iter().map(|r| r.event_id).collect();
        let arrived: Vec<Uuid> = batch.iter().flat_map(|e| [e.id, e.id]).collect();
        assert_eq!(events, arrived);
    }
}
