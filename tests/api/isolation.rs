//! Org A's key cannot see, change or delete anything of org B: every such id answers 404.
use serde_json::json;
use uuid::Uuid;

use crate::both_backends;
use crate::events_runs::{insert_event, insert_run, org_of};
use crate::helpers::{ADMIN_KEY, TestApp, assert_problem};
use crate::sources::generic;

both_backends! {
    async fn another_orgs_resources_are_404(app: TestApp) {
        let other = app.new_org("other").await;
        let source = app.post("/v1/websocket-sources", ADMIN_KEY, generic("mine")).await.body["id"].as_str().unwrap().to_owned();
        let hook = app.post("/v1/webhooks", ADMIN_KEY, json!({"name": "h", "source": "hook", "verifier": {"preset": "github"}})).await.body["id"].as_str().unwrap().to_owned();
        let automation = app.post("/v1/automations", ADMIN_KEY, json!({"name": "a", "trigger": {"type": "event", "source": "mine", "on": "*"}})).await.body["id"].as_str().unwrap().to_owned();
        let key = app.post("/v1/api-keys", ADMIN_KEY, json!({"name": "k", "role": "member"})).await.body["id"].as_str().unwrap().to_owned();
        let org = org_of(&app, ADMIN_KEY).await;
        let event = insert_event(&app, org, "mine", "k").await;
        let run = insert_run(&app, org, automation.parse::<Uuid>().unwrap(), event, "PENDING").await;

        let probes: Vec<(&str, String, Option<serde_json::Value>)> = vec![
            ("GET", format!("/v1/websocket-sources/{source}"), None),
            ("PATCH", format!("/v1/websocket-sources/{source}"), Some(json!({"name": "x"}))),
            ("DELETE", format!("/v1/websocket-sources/{source}"), None),
            ("POST", format!("/v1/websocket-sources/{source}/reconnect"), Some(json!({}))),
            ("GET", format!("/v1/webhooks/{hook}"), None),
            ("PATCH", format!("/v1/webhooks/{hook}"), Some(json!({"name": "x"}))),
            ("DELETE", format!("/v1/webhooks/{hook}"), None),
            ("POST", format!("/v1/webhooks/{hook}/rotate-secret"), Some(json!({}))),
            ("GET", format!("/v1/automations/{automation}"), None),
            ("PATCH", format!("/v1/automations/{automation}"), Some(json!({"name": "x"}))),
            ("DELETE", format!("/v1/automations/{automation}"), None),
            ("GET", format!("/v1/automations/{automation}/runs"), None),
            ("DELETE", format!("/v1/api-keys/{key}"), None),
            ("GET", format!("/v1/events/{event}"), None),
            ("GET", format!("/v1/runs/{run}"), None),
            ("POST", format!("/v1/runs/{run}/cancel"), Some(json!({}))),
        ];
        for (method, path, body) in probes {
            let resp = app.request(method, &path, Some(&other), body).await;
            assert_problem(&resp, 404, None);
        }
        for list in ["/v1/websocket-sources", "/v1/webhooks", "/v1/automations", "/v1/events", "/v1/runs"] {
            let resp = app.get(list, &other).await;
            assert_eq!(resp.body["items"], json!([]), "{list} leaks: {}", resp.text);
        }
        assert_eq!(app.get("/v1/api-keys", &other).await.body["total"], 1);
        // The other org may reuse the slug: namespaces are per org.
        assert_eq!(app.post("/v1/websocket-sources", &other, generic("mine")).await.status, 201);
        // And everything of org A is intact.
        assert_eq!(app.get(&format!("/v1/websocket-sources/{source}"), ADMIN_KEY).await.body["name"], "Orders feed");
        assert_eq!(app.get(&format!("/v1/runs/{run}"), ADMIN_KEY).await.body["status"], "PENDING");
    }
}
