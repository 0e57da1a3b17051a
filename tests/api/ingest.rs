//! Events end to end against the scriptable WebSocket peer: a real connection, real storage,
//! exact run counts, ACKs only after commit, dedup across reconnects, outcomes.
use std::time::Duration;

use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};

use crate::both_backends_private;
use crate::helpers::{ADMIN_KEY, TestApp, eventually};
use crate::peer::{ConnectionScript, Peer, Step};

pub const WAIT: Duration = Duration::from_secs(15);

pub fn source_body(slug: &str, peer: &Peer, extra: Value) -> Value {
    let mut body = json!({
        "name": slug, "source": slug, "kind": "generic",
        "event_key_expr": "type", "dedup_key_expr": "id",
        "config": {"url": peer.url()}
    });
    if let (Some(config), Some(extra)) = (body["config"].as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            config.insert(k.clone(), v.clone());
        }
    }
    body
}

pub async fn create_source(app: &TestApp, body: Value) -> String {
    let resp = app.post("/v1/websocket-sources", ADMIN_KEY, body).await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    resp.body["id"].as_str().unwrap().to_owned()
}

pub async fn create_automation(
    app: &TestApp,
    source: &str,
    on: Value,
    filter: Option<&str>,
) -> String {
    let mut trigger = json!({"type": "event", "source": source, "on": on});
    if let Some(filter) = filter {
        trigger["filter"] = json!(filter);
    }
    let resp = app
        .post(
            "/v1/automations",
            ADMIN_KEY,
            json!({"name": "a", "trigger": trigger}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    resp.body["id"].as_str().unwrap().to_owned()
}

pub async fn event_count(app: &TestApp, source: &str) -> u64 {
    entity::event::Entity::find()
        .filter(entity::event::Column::Source.eq(source))
        .count(&app.db)
        .await
        .unwrap()
}

pub async fn runs_of(app: &TestApp, automation: &str) -> u64 {
    let id: uuid::Uuid = automation.parse().unwrap();
    entity::automation_run::Entity::find()
        .filter(entity::automation_run::Column::AutomationId.eq(id))
        .count(&app.db)
        .await
        .unwrap()
}

pub async fn undispatched(app: &TestApp) -> u64 {
    entity::event::Entity::find()
        .filter(entity::event::Column::DispatchedAt.is_null())
        .count(&app.db)
        .await
        .unwrap()
}

pub async fn status(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/websocket-sources/{id}"), ADMIN_KEY)
        .await
        .body["status"]
        .clone()
}

pub async fn wait_state(app: &TestApp, id: &str, state: &str) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let last = status(app, id).await;
        if last["state"] == state {
            return last;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "source never became {state}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn order(i: usize, amount: u64) -> String {
    json!({"type": "order.created", "id": format!("o{i}"), "data": {"amount": amount}}).to_string()
}

both_backends_private! {
    async fn scripted_stream_gives_exact_runs_and_outcomes(app: TestApp) {
        let mut steps = Vec::new();
        for i in 0..10 {
            steps.push(Step::Send(order(i, if i % 2 == 0 { 50 } else { 150 })));
        }
        steps.push(Step::Send(json!({"type": "user.created", "id": "u1"}).to_string()));
        steps.push(Step::Send(json!({"type": "noise", "id": "n1"}).to_string()));
        steps.push(Step::Send("not json".to_owned()));
        steps.push(Step::Send(json!({"id": "nokey"}).to_string()));
        let peer = Peer::start(vec![ConnectionScript::accept(steps)]);
        let all = create_automation(&app, "feed", json!("order.*"), None).await;
        let big = create_automation(&app, "feed", json!(["order.created"]), Some("data.amount > `100`")).await;
        let users = create_automation(&app, "feed", json!("user.*"), None).await;
        let id = create_source(&app, json!({
            "name": "feed", "source": "feed", "kind": "generic",
            "event_key_expr": "type", "dedup_key_expr": "id", "filter_expr": "type != 'noise'",
            "config": {"url": peer.url()}
        })).await;
        wait_state(&app, &id, "connected").await;
        assert!(eventually(WAIT, || async { event_count(&app, "feed").await == 12 && undispatched(&app).await == 0 }).await,
            "events: {}", event_count(&app, "feed").await);
        assert_eq!(runs_of(&app, &all).await, 10);
        assert_eq!(runs_of(&app, &big).await, 5);
        assert_eq!(runs_of(&app, &users).await, 1);

        let events = app.get("/v1/events?source=feed&event_key=order.created&limit=1", ADMIN_KEY).await;
        let event_id = events.body["items"][0]["id"].as_str().unwrap().to_owned();
        let event = app.get(&format!("/v1/events/{event_id}"), ADMIN_KEY).await;
        assert_eq!(event.body["status"], "dispatched");
        let outcome = event.body["outcome"].as_array().unwrap();
        assert_eq!(outcome.len(), 3);
        let of = |a: &str| outcome.iter().find(|o| o["automation_id"] == a).unwrap().clone();
        assert_eq!(of(&all)["result"], "matched");
        assert!(of(&all)["run_id"].is_string());
        assert_eq!(of(&users)["result"], "on_mismatch");
        let nokey = app.get("/v1/events?status=no_key", ADMIN_KEY).await;
        assert_eq!(nokey.body["items"].as_array().unwrap().len(), 1);

        let run = app.get(&format!("/v1/runs/{}", of(&all)["run_id"].as_str().unwrap()), ADMIN_KEY).await;
        assert_eq!(run.body["status"], "PENDING");
        assert_eq!(run.body["event_payload"]["event_id"], event_id);
        assert_eq!(run.body["event_payload"]["source"], "feed");
        assert_eq!(run.body["event_payload"]["event_key"], "order.created");
        assert!(run.body["event_payload"]["received_at"].is_string());
        assert_eq!(run.body["event_payload"]["payload"]["type"], "order.created");

        let counters = eventually(WAIT, || async {
            let s = status(&app, &id).await;
            s["counters"]["filtered"] == 1 && s["counters"]["non_json"] == 1 && s["counters"]["events_stored"] == 12
        }).await;
        assert!(counters, "{}", status(&app, &id).await);
    }

    async fn an_acked_message_already_has_its_runs(app: TestApp) {
        // Twenty orders and a redelivery of one of them: once the ACK of the last arrives, every
        // run exists, with nothing left to dispatch (the runs commit with their events, and
        // the ACKs follow that commit), and the redelivery made none.
        let mut steps: Vec<Step> = (0..20).map(|i| Step::Send(order(i, 10))).collect();
        steps.insert(10, Step::Send(order(3, 10)));
        steps.push(Step::WaitForText { contains: "o19".into(), timeout: Duration::from_secs(10) });
        let peer = Peer::start(vec![ConnectionScript::accept(steps)]);
        let automation = create_automation(&app, "acked", json!("order.*"), None).await;
        let body = source_body("acked", &peer, json!({"ack_expr": "{type: 'ack', id: id}"}));
        create_source(&app, body).await;
        assert!(peer.wait_until(WAIT, |p| p.texts().iter().any(|t| t.contains("o19"))).await,
            "acks: {:?}", peer.texts());
        assert_eq!(runs_of(&app, &automation).await, 20, "every acknowledged message has its run");
        assert_eq!(undispatched(&app).await, 0);
        assert_eq!(event_count(&app, "acked").await, 20);
    }

    async fn acks_follow_commits_and_duplicates_across_reconnects(app: TestApp) {
        let first = ConnectionScript::accept(vec![
            Step::Send(order(1, 10)), Step::Send(order(2, 20)),
            Step::WaitForText { contains: "o2".into(), timeout: Duration::from_secs(10) },
            Step::Close(1001, "going away".into()),
        ]);
        let noise = json!({"type": "noise", "id": "n1"}).to_string();
        let second = ConnectionScript::accept(vec![Step::Send(order(2, 20)), Step::Send(noise), Step::Send(order(3, 30))]);
        let peer = Peer::start(vec![first, second]);
        let automation = create_automation(&app, "acks", json!("*"), None).await;
        let mut body = source_body("acks", &peer, json!({"ack_expr": "{type: 'ack', id: id}"}));
        body["filter_expr"] = json!("type != 'noise'");
        let id = create_source(&app, body).await;
        assert!(peer.wait_until(WAIT, |p| p.texts().iter().filter(|t| t.contains("\"ack\"")).count() >= 5).await,
            "acks: {:?}", peer.texts());
        assert!(eventually(WAIT, || async { undispatched(&app).await == 0 && event_count(&app, "acks").await == 3 }).await);
        assert_eq!(runs_of(&app, &automation).await, 3);
        let acks: Vec<Value> = peer.texts().iter().map(|t| serde_json::from_str(t).unwrap()).collect();
        assert!(acks.contains(&json!({"type": "ack", "id": "o1"})));
        assert!(acks.contains(&json!({"type": "ack", "id": "n1"})), "a filtered message is ACKed, never redelivered forever");
        assert!(eventually(WAIT, || async { status(&app, &id).await["counters"]["filtered"] == 1 }).await);
        assert_eq!(peer.texts_of(1).iter().filter(|t| t.contains("o2")).count(), 1, "the duplicate is ACKed too");
        assert!(eventually(WAIT, || async { status(&app, &id).await["counters"]["duplicates"] == 1 }).await);
        assert!(peer.attempts() >= 2);
    }
}
