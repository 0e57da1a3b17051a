use serde_json::json;

use crate::both_backends;
use crate::helpers::{ADMIN_KEY, TestApp, assert_problem};

both_backends! {
    async fn creates_automations_and_warns_about_unknown_sources(app: TestApp) {
        let unknown = app.post("/v1/automations", ADMIN_KEY, json!({"name": "A", "trigger": {"type": "event", "source": "later", "on": "order.*"}})).await;
        assert_eq!(unknown.status, 201, "{}", unknown.text);
        assert!(unknown.body["warnings"][0].as_str().unwrap().contains("later"));
        app.post("/v1/webhooks", ADMIN_KEY, json!({"name": "h", "source": "known", "verifier": {"preset": "github"}})).await;
        let known = app.post("/v1/automations", ADMIN_KEY, json!({"name": "B", "trigger": {"type": "event", "source": "known", "on": ["push", "pull_request.*"], "filter": "regex(ref, '^refs/heads/main$')"}})).await;
        assert_eq!(known.status, 201, "{}", known.text);
        assert_eq!(known.body["warnings"], json!([]));
        assert_eq!(known.body["trigger"]["on"], json!(["push", "pull_request.*"]));
        assert_eq!(known.body["enabled"], true);
        let list = app.get("/v1/automations", ADMIN_KEY).await;
        assert_eq!(list.body["total"], 2);
    }

    async fn rejects_bad_triggers(app: TestApp) {
        let cases = [
            (json!({"name": "A", "trigger": {"type": "cron", "source": "s", "on": "*"}}), "trigger.type"),
            (json!({"name": "A", "trigger": {"type": "event", "source": "s", "on": []}}), "trigger.on"),
            (json!({"name": "A", "trigger": {"type": "event", "source": "s", "on": ""}}), "trigger.on"),
            (json!({"name": "A", "trigger": {"type": "event", "source": "S S", "on": "*"}}), "trigger.source"),
            (json!({"name": "A", "trigger": {"type": "event", "source": "s", "on": "*", "filter": "a ||"}}), "trigger.filter"),
            (json!({"name": "A", "trigger": {"type": "event", "source": "s", "on": "*", "filter": "shout(a)"}}), "trigger.filter"),
            (json!({"name": "A", "trigger": {"type": "event", "source": "s", "on": "*", "filter": "lower(a, b)"}}), "trigger.filter"),
            (json!({"name": "A", "trigger": {"type": "event", "source": "s", "on": "*", "filter": "regex(a, '(')"}}), "trigger.filter"),
            (json!({"name": "A", "trigger": {"type": "event", "source": "s", "on": "*", "when": "now"}}), "trigger.when"),
            (json!({"name": "A"}), "trigger"),
        ];
        for (body, field) in cases {
            assert_problem(&app.post("/v1/automations", ADMIN_KEY, body).await, 422, Some(field));
        }
        let positioned = app.post("/v1/automations", ADMIN_KEY, json!({"name": "A", "trigger": {"type": "event", "source": "s", "on": "*", "filter": "a == `1` && nope(b)"}})).await;
        assert!(positioned.text.contains("position"), "{}", positioned.text);
    }

    async fn patch_get_delete(app: TestApp) {
        let created = app.post("/v1/automations", ADMIN_KEY, json!({"name": "A", "trigger": {"type": "event", "source": "s", "on": "*"}})).await;
        let path = format!("/v1/automations/{}", created.body["id"].as_str().unwrap());
        let patched = app.patch(&path, ADMIN_KEY, json!({"enabled": false, "trigger": {"filter": "amount > `10`"}})).await;
        assert_eq!(patched.status, 200, "{}", patched.text);
        assert_eq!(patched.body["enabled"], false);
        assert_eq!(patched.body["trigger"]["filter"], "amount > `10`");
        assert_eq!(patched.body["trigger"]["on"], "*");
        assert_problem(&app.patch(&path, ADMIN_KEY, json!({"name": null})).await, 422, Some("name"));
        assert_problem(&app.patch(&path, ADMIN_KEY, json!({"trigger": {"on": null}})).await, 422, Some("trigger.on"));
        let got = app.get(&path, ADMIN_KEY).await;
        assert_eq!(got.body["trigger"]["filter"], "amount > `10`");
        let runs = app.get(&format!("{path}/runs"), ADMIN_KEY).await;
        assert_eq!(runs.status, 200);
        assert_eq!(runs.body["items"], json!([]));
        assert_eq!(app.delete(&path, ADMIN_KEY).await.status, 204);
        assert_problem(&app.get(&path, ADMIN_KEY).await, 404, None);
    }
}
