//! Inbound webhooks: every preset's signature over HTTP, replay windows, rotation, handshakes,
//! limits, dedup and org isolation, on both engines.
use std::time::Duration;

use serde_json::{Value, json};
use switchboard::webhooks::sign::{sign_github, sign_hmac, sign_slack, sign_standard, sign_stripe};
use switchboard::webhooks::verifier::Verifier;

use crate::both_backends;
use crate::helpers::{ADMIN_KEY, TestApp, assert_problem, eventually};
use crate::ingest::{create_automation, event_count, runs_of, undispatched};

const JSON: (&str, &str) = ("content-type", "application/json");

async fn hook(app: &TestApp, body: Value) -> (String, String, String) {
    let resp = app.post("/v1/webhooks", ADMIN_KEY, body).await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    let url = resp.body["webhook_url"]
        .as_str()
        .unwrap()
        .replace("https://hooks.example.com", "");
    let secret = resp.body["secret"].as_str().unwrap_or_default().to_owned();
    (resp.body["id"].as_str().unwrap().to_owned(), url, secret)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn github_headers(
    secret: &str,
    event: &str,
    delivery: &str,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    vec![
        (JSON.0, JSON.1.to_owned()),
        ("x-github-event", event.to_owned()),
        ("x-github-delivery", delivery.to_owned()),
        ("x-hub-signature-256", sign_github(secret, body)),
    ]
}

both_backends! {
    async fn github_deliveries_verify_dedup_and_match(app: TestApp) {
        let (_, url, secret) = hook(&app, json!({"name": "GitHub", "source": "gh", "verifier": {"preset": "github"}})).await;
        let automation = create_automation(&app, "gh", json!("pull_request.*"), None).await;
        let body = br#"{"action":"opened","number":7}"#;
        let first = app.deliver(&url, &github_headers(&secret, "pull_request", "d-1", body), body).await;
        assert_eq!(first.status, 200, "{}", first.text);
        assert_eq!(first.body["duplicate"], false);
        let again = app.deliver(&url, &github_headers(&secret, "pull_request", "d-1", body), body).await;
        assert_eq!(again.body["duplicate"], true);
        assert_eq!(again.body["event_id"], first.body["event_id"]);
        let push = br#"{"ref":"refs/heads/main"}"#;
        // Headers that carry credentials never reach the stored event (every key of the org,
        // workers' too, reads events).
        let mut with_credentials = github_headers(&secret, "push", "d-2", push);
        with_credentials.push(("x-gitlab-token", "glpat-credential".to_owned()));
        with_credentials.push(("x-api-key", "credential".to_owned()));
        with_credentials.push(("x-request-id", "kept".to_owned()));
        let pushed = app.deliver(&url, &with_credentials, push).await;
        assert_eq!(pushed.status, 200, "{}", pushed.text);
        let stored = app.get(&format!("/v1/events/{}", pushed.body["event_id"].as_str().unwrap()), ADMIN_KEY).await;
        assert_eq!(stored.body["raw"]["headers"]["x-request-id"], "kept");
        assert!(!stored.text.contains("credential"), "{}", stored.text);
        assert!(eventually(Duration::from_secs(10), || async { undispatched(&app).await == 0 && event_count(&app, "gh").await == 2 }).await);
        assert_eq!(runs_of(&app, &automation).await, 1);
        let event = app.get(&format!("/v1/events/{}", first.body["event_id"].as_str().unwrap()), ADMIN_KEY).await;
        assert_eq!(event.body["event_key"], "pull_request.opened");
        assert_eq!(event.body["origin"], "webhook");
        assert_eq!(event.body["payload"]["number"], 7);
        assert_eq!(event.body["raw"]["headers"]["x-github-event"], "pull_request");
        assert_eq!(event.body["meta"]["verified_with"], "current");
        let keys = app.get("/v1/events?event_key=push", ADMIN_KEY).await;
        assert_eq!(keys.body["items"].as_array().unwrap().len(), 1);

        // An expression change applies to the next delivery (compiled expressions are cached per revision).
        let id = app.get("/v1/webhooks", ADMIN_KEY).await.body["items"][0]["id"].as_str().unwrap().to_owned();
        app.patch(&format!("/v1/webhooks/{id}"), ADMIN_KEY, json!({"event_key_expr": "headers.\"x-github-delivery\""})).await;
        // A different body: the same one under a new delivery id would be a replay.
        let push9 = br#"{"ref":"refs/heads/nine"}"#;
        let keyed = app.deliver(&url, &github_headers(&secret, "push", "d-9", push9), push9).await;
        let got = app.get(&format!("/v1/events/{}", keyed.body["event_id"].as_str().unwrap()), ADMIN_KEY).await;
        assert_eq!(got.body["event_key"], "d-9");
        let tampered = app.deliver(&url, &github_headers(&secret, "push", "d-3", push), br#"{"ref":"refs/heads/evil"}"#).await;
        assert_problem(&tampered, 401, None);
        let wrong = app.deliver(&url, &github_headers("not-the-secret", "push", "d-4", push), push).await;
        assert_problem(&wrong, 401, None);
        let unsigned = app.deliver(&url, &[(JSON.0, JSON.1.to_owned()), ("x-github-event", "push".into())], push).await;
        assert_problem(&unsigned, 401, None);
        assert!(unsigned.body["detail"].as_str().unwrap().contains("x-hub-signature-256"), "{}", unsigned.text);
    }

    async fn slack_handshake_forms_and_replay_window(app: TestApp) {
        let (_, url, secret) = hook(&app, json!({"name": "Slack", "source": "slack-events", "verifier": {"preset": "slack"}})).await;
        let signed = |body: &[u8], ts: i64| vec![
            (JSON.0, JSON.1.to_owned()),
            ("x-slack-request-timestamp", ts.to_string()),
            ("x-slack-signature", sign_slack(&secret, ts, body)),
        ];
        let challenge = br#"{"type":"url_verification","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}"#;
        let answer = app.deliver(&url, &signed(challenge, now()), challenge).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(answer.body["challenge"], "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P");
        assert_eq!(event_count(&app, "slack-events").await, 0, "the handshake is not an event");
        // Only a string is a challenge: anything else is not echoed back.
        let odd = br#"{"type":"url_verification","challenge":{"echo":"me"}}"#;
        let answer = app.deliver(&url, &signed(odd, now()), odd).await;
        assert!(!answer.text.contains("echo"), "{}", answer.text);
        let event = br#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","type":"event_callback","event_id":"Ev1","event":{"type":"app_mention","text":"hi"}}"#;
        let mut headers = signed(event, now());
        headers.push(("x-slack-retry-num", "1".into()));
        let stored = app.deliver(&url, &headers, event).await;
        assert_eq!(stored.status, 200, "{}", stored.text);
        let got = app.get(&format!("/v1/events/{}", stored.body["event_id"].as_str().unwrap()), ADMIN_KEY).await;
        assert_eq!(got.body["event_key"], "app_mention");
        assert_eq!(got.body["payload"]["text"], "hi");
        assert_eq!(got.body["meta"]["retry_num"], "1");
        assert!(!got.text.contains("Jhj5dZrVaK7ZwHHjRyZWjbDl"), "Slack's verification token is not stored: {}", got.text);
        let stale = app.deliver(&url, &signed(event, now() - 301), event).await;
        assert_problem(&stale, 401, None);
        assert!(stale.body["detail"].as_str().unwrap().contains("tolerance"), "{}", stale.text);
        let future = app.deliver(&url, &signed(event, now() + 400), event).await;
        assert_problem(&future, 401, None);
        let hooks = app.get("/v1/webhooks", ADMIN_KEY).await;
        assert_eq!(hooks.body["items"][0]["counters"]["stale"], 2, "{}", hooks.text);
        let form = b"payload=%7B%22type%22%3A%22block_actions%22%2C%22token%22%3A%22Jhj5dZrVaK7ZwHHjRyZWjbDl%22%2C%22trigger_id%22%3A%22t1%22%7D";
        let ts = now();
        let form_headers = vec![
            ("content-type", "application/x-www-form-urlencoded".to_owned()),
            ("x-slack-request-timestamp", ts.to_string()),
            ("x-slack-signature", sign_slack(&secret, ts, form)),
        ];
        let interactive = app.deliver(&url, &form_headers, form).await;
        assert_eq!(interactive.status, 200, "{}", interactive.text);
        let got = app.get(&format!("/v1/events/{}", interactive.body["event_id"].as_str().unwrap()), ADMIN_KEY).await;
        assert_eq!(got.body["event_key"], "block_actions");
        assert_eq!(got.body["raw"]["body"]["payload"]["trigger_id"], "t1");
        assert!(got.body["raw"]["body"]["payload"].get("token").is_none(), "{}", got.text);
    }

    async fn stripe_standard_and_hmac_presets(app: TestApp) {
        let (_, url, secret) = hook(&app, json!({"name": "Stripe", "source": "stripe", "verifier": {"preset": "stripe"}})).await;
        let body = br#"{"id":"evt_1","type":"invoice.paid"}"#;
        let ts = now();
        let good = sign_stripe(&secret, ts, body);
        let v1 = good.split("v1=").nth(1).unwrap().to_owned();
        let header = format!("t={ts},v1={},v1={v1}", "0".repeat(64));
        let ok = app.deliver(&url, &[JSON.clone_pair(), ("stripe-signature", header)], body).await;
        assert_eq!(ok.status, 200, "{}", ok.text);
        let got = app.get(&format!("/v1/events/{}", ok.body["event_id"].as_str().unwrap()), ADMIN_KEY).await;
        assert_eq!(got.body["event_key"], "invoice.paid");
        assert_eq!(got.body["dedup_key"], "evt_1");
        let old = now() - 1000;
        let stale = app.deliver(&url, &[JSON.clone_pair(), ("stripe-signature", sign_stripe(&secret, old, body))], body).await;
        assert_problem(&stale, 401, None);

        let (_, url, secret) = hook(&app, json!({"name": "Std", "source": "std", "verifier": {"preset": "standard"}})).await;
        let body = br#"{"type":"user.created","data":{"id":1}}"#;
        let ts = now();
        let headers = vec![JSON.clone_pair(), ("webhook-id", "msg_1".into()), ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", format!("v1,bm90LWl0 {}", sign_standard(&secret, "msg_1", ts, body)))];
        let ok = app.deliver(&url, &headers, body).await;
        assert_eq!(ok.status, 200, "{}", ok.text);
        assert_eq!(app.deliver(&url, &headers, body).await.body["duplicate"], true, "webhook-id deduplicates");
        let svix = vec![JSON.clone_pair(), ("svix-id", "msg_2".into()), ("svix-timestamp", ts.to_string()),
            ("svix-signature", sign_standard(&secret, "msg_2", ts, body))];
        let branded = app.deliver(&url, &svix, body).await;
        assert_eq!(branded.status, 200, "{}", branded.text);
        assert_eq!(branded.body["duplicate"], false);

        let verifier = json!({"preset": "hmac", "header": "X-Signature", "algorithm": "sha512", "encoding": "base64", "prefix": "sha512=",
            "timestamp_header": "X-Timestamp", "signed_content": "{timestamp}:{body}"});
        let (_, url, secret) = hook(&app, json!({"name": "H", "source": "custom", "verifier": verifier, "secret": "a-long-custom-secret"})).await;
        let parsed: Verifier = serde_json::from_value(verifier).unwrap();
        let ts = now();
        let body = br#"{"type":"thing.done"}"#;
        let sig = sign_hmac(&parsed, "a-long-custom-secret", Some(ts), body).unwrap();
        assert!(secret.is_empty(), "a given secret is not echoed");
        let ok = app.deliver(&url, &[JSON.clone_pair(), ("x-signature", sig.clone()), ("x-timestamp", ts.to_string())], body).await;
        assert_eq!(ok.status, 200, "{}", ok.text);
        assert_eq!(ok.body["duplicate"], false);
        // No dedup key: the captured delivery replayed inside the tolerance is the same event.
        let replayed = app.deliver(&url, &[JSON.clone_pair(), ("x-signature", sig.clone()), ("x-timestamp", ts.to_string())], body).await;
        assert_eq!(replayed.status, 200, "{}", replayed.text);
        assert_eq!(replayed.body["duplicate"], true, "{}", replayed.text);
        assert_eq!(replayed.body["event_id"], ok.body["event_id"]);
        // The same body signed at another time is a new delivery.
        let resent = sign_hmac(&parsed, "a-long-custom-secret", Some(ts - 1), body).unwrap();
        let again = app.deliver(&url, &[JSON.clone_pair(), ("x-signature", resent.clone()), ("x-timestamp", (ts - 1).to_string())], body).await;
        assert_eq!(again.body["duplicate"], false, "{}", again.text);
        let bad = app.deliver(&url, &[JSON.clone_pair(), ("x-signature", sig), ("x-timestamp", (ts + 1).to_string())], body).await;
        assert_problem(&bad, 401, None);
    }

    async fn rotation_grace_limits_and_errors(app: TestApp) {
        let (id, url, old) = hook(&app, json!({"name": "GitHub", "source": "gh", "verifier": {"preset": "github"},
            "max_body_bytes": 1024, "rate_limit": {"per_second": 0.2, "burst": 3}})).await;
        let rotated = app.post(&format!("/v1/webhooks/{id}/rotate-secret"), ADMIN_KEY, json!({"grace_period_s": 3600})).await;
        let new = rotated.body["secret"].as_str().unwrap().to_owned();
        let body = br#"{"zen":"Keep it logically awesome."}"#;
        let by_old = app.deliver(&url, &github_headers(&old, "ping", "p-1", body), body).await;
        assert_eq!(by_old.status, 200, "{}", by_old.text);
        let got = app.get(&format!("/v1/events/{}", by_old.body["event_id"].as_str().unwrap()), ADMIN_KEY).await;
        assert_eq!(got.body["meta"]["verified_with"], "previous");
        assert_eq!(got.body["event_key"], "ping", "GitHub ping is stored like any event");
        // Another body: the same one under a new delivery id is a replay (see hostile.rs).
        let body2 = br#"{"zen":"Anything added dilutes everything else."}"#;
        let by_new = app.deliver(&url, &github_headers(&new, "ping", "p-2", body2), body2).await;
        assert_eq!(by_new.status, 200);
        // The bucket (burst 3) is now down to one token.
        let huge = vec![b'x'; 2048];
        assert_problem(&app.deliver(&url, &github_headers(&new, "ping", "p-3", &huge), &huge).await, 413, None);
        let text = b"hello";
        let mut headers = github_headers(&new, "ping", "p-4", text);
        headers[0] = ("content-type", "text/plain".into());
        assert_problem(&app.deliver(&url, &headers, text).await, 415, None);
        let limited = app.deliver(&url, &github_headers(&new, "ping", "p-5", body), body).await;
        assert_problem(&limited, 429, None);
        assert!(limited.headers.get("retry-after").is_some());
        let malformed = b"{not json";
        let rotated_none = app.post(&format!("/v1/webhooks/{id}/rotate-secret"), ADMIN_KEY, json!({"grace_period_s": 0})).await;
        let newest = rotated_none.body["secret"].as_str().unwrap().to_owned();
        app.patch(&format!("/v1/webhooks/{id}"), ADMIN_KEY, json!({"rate_limit": null})).await;
        assert_problem(&app.deliver(&url, &github_headers(&newest, "ping", "p-6", malformed), malformed).await, 400, None);
        assert_problem(&app.deliver(&url, &github_headers(&new, "ping", "p-7", body), body).await, 401, None);
        let counters = app.get(&format!("/v1/webhooks/{id}"), ADMIN_KEY).await.body["counters"].clone();
        assert_eq!(counters, json!({"accepted": 2, "too_large": 1, "bad_body": 2, "rate_limited": 1, "bad_signature": 1}));
    }

    async fn insecure_webhooks_take_unsigned_deliveries(app: TestApp) {
        let (_, url, secret) = hook(&app, json!({"name": "Open", "source": "open", "verifier": {"preset": "stripe"}, "insecure": true})).await;
        assert!(secret.is_empty());
        let body = br#"{"id":"evt_9","type":"charge.succeeded"}"#;
        let resp = app.deliver(&url, &[JSON.clone_pair()], body).await;
        assert_eq!(resp.status, 200, "{}", resp.text);
        let got = app.get(&format!("/v1/events/{}", resp.body["event_id"].as_str().unwrap()), ADMIN_KEY).await;
        assert_eq!(got.body["event_key"], "charge.succeeded");
        assert!(got.body["meta"]["verified_with"].is_null());
    }

    async fn concurrent_deliveries_share_commits_and_are_answered_each(app: TestApp) {
        // Deliveries arriving together are committed together (the deliveries' group commit):
        // each still gets its own answer, a key repeated inside one batch is stored once and
        // every copy names that one event, and each stored event gets its run.
        let (_, url, _) = hook(&app, json!({"name": "Burst", "source": "burst", "verifier": {"preset": "stripe"}, "insecure": true})).await;
        let automation = create_automation(&app, "burst", json!("*"), None).await;
        let deliver = |id: String| {
            let (app, url) = (&app, url.clone());
            async move {
                let body = format!(r#"{{"id":"{id}","type":"charge.succeeded"}}"#);
                app.deliver(&url, &[JSON.clone_pair()], body.as_bytes()).await
            }
        };
        let same = futures_util::future::join_all((0..40).map(|_| deliver("evt_same".to_owned()))).await;
        let distinct = futures_util::future::join_all((0..60).map(|i| deliver(format!("evt_{i}")))).await;
        assert!(same.iter().chain(&distinct).all(|r| r.status == 200), "every delivery answered 200");
        let stored: Vec<&Value> = same.iter().filter(|r| r.body["duplicate"] == false).map(|r| &r.body["event_id"]).collect();
        assert_eq!(stored.len(), 1, "one copy of a repeated key is stored");
        assert!(same.iter().all(|r| &r.body["event_id"] == stored[0]), "every copy names the stored event");
        let ids: std::collections::HashSet<String> = distinct.iter().map(|r| {
            assert_eq!(r.body["duplicate"], false);
            r.body["event_id"].as_str().unwrap().to_owned()
        }).collect();
        assert_eq!(ids.len(), 60, "distinct deliveries are distinct events");
        // A 200 follows the commit of the event and its runs: nothing is left to dispatch.
        assert_eq!(undispatched(&app).await, 0);
        assert_eq!(event_count(&app, "burst").await, 61);
        assert_eq!(runs_of(&app, &automation).await, 61, "every answered delivery already has its run");
    }

    async fn orgs_are_isolated_and_unknown_hooks_are_404(app: TestApp) {
        let other = app.new_org("other").await;
        let (_, url_a, secret_a) = hook(&app, json!({"name": "A", "source": "same", "verifier": {"preset": "github"}})).await;
        let created = app.post("/v1/webhooks", &other, json!({"name": "B", "source": "same", "verifier": {"preset": "github"}})).await;
        assert_eq!(created.status, 201);
        let url_b = created.body["webhook_url"].as_str().unwrap().replace("https://hooks.example.com", "");
        assert_ne!(url_a, url_b);
        let body = br#"{"action":"x"}"#;
        assert_problem(&app.deliver(&url_b, &github_headers(&secret_a, "push", "i-1", body), body).await, 401, None);
        assert_eq!(app.deliver(&url_a, &github_headers(&secret_a, "push", "i-1", body), body).await.status, 200);
        let unknown = url_a.replace("/same", "/nothing");
        assert_problem(&app.deliver(&unknown, &github_headers(&secret_a, "push", "i-2", body), body).await, 404, None);
        assert_problem(&app.deliver("/v1/events/not-an-org/same", &[], body).await, 404, None);
        let id = app.get("/v1/webhooks", ADMIN_KEY).await.body["items"][0]["id"].as_str().unwrap().to_owned();
        app.patch(&format!("/v1/webhooks/{id}"), ADMIN_KEY, json!({"enabled": false})).await;
        assert_problem(&app.deliver(&url_a, &github_headers(&secret_a, "push", "i-3", body), body).await, 404, None);
        assert_eq!(app.get("/v1/events", &other).await.body["items"], json!([]));
    }
}

trait ClonePair {
    fn clone_pair(&self) -> (&'static str, String);
}

impl ClonePair for (&'static str, &'static str) {
    fn clone_pair(&self) -> (&'static str, String) {
        (self.0, self.1.to_owned())
    }
}
