use serde_json::{Value, json};
use switchboard::crypto::{Keyring, SecretSlot};
use switchboard::webhooks::verifier::WebhookSecrets;

use crate::both_backends;
use crate::helpers::{ADMIN_KEY, TestApp, assert_problem};

async fn stored_secrets(app: &TestApp, id: &str) -> WebhookSecrets {
    use sea_orm::EntityTrait;
    let id: uuid::Uuid = id.parse().unwrap();
    let row = entity::webhook::Entity::find_by_id(id)
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    let keyring = Keyring::parse(secrecy::ExposeSecret::expose_secret(
        app.settings.secret_keys.as_ref().unwrap(),
    ))
    .unwrap();
    let plain = keyring
        .open(
            row.secrets.as_ref().unwrap(),
            SecretSlot::new("webhooks", "secrets", id),
        )
        .unwrap();
    serde_json::from_slice(&plain).unwrap()
}

both_backends! {
    async fn creates_webhooks_with_a_generated_secret_shown_once(app: TestApp) {
        let created = app.post("/v1/webhooks", ADMIN_KEY, json!({"name": "GitHub", "source": "gh", "verifier": {"preset": "github"}})).await;
        assert_eq!(created.status, 201, "{}", created.text);
        let secret = created.body["secret"].as_str().unwrap().to_owned();
        assert_eq!(secret.len(), 64);
        assert_eq!(created.body["has_secret"], true);
        let me = app.get("/v1/me", ADMIN_KEY).await;
        let org = me.body["org_id"].as_str().unwrap();
        assert_eq!(created.body["webhook_url"], format!("https://hooks.example.com/v1/events/{org}/gh"));
        let id = created.body["id"].as_str().unwrap();
        let got = app.get(&format!("/v1/webhooks/{id}"), ADMIN_KEY).await;
        assert_eq!(got.status, 200);
        assert!(got.body.get("secret").is_none());
        assert!(!got.text.contains(&secret));
        assert_eq!(stored_secrets(&app, id).await.current, secret);
        let list = app.get("/v1/webhooks", ADMIN_KEY).await;
        assert_eq!(list.body["total"], 1);
        assert!(!list.text.contains(&secret));
    }

    async fn given_secrets_are_not_echoed_and_presets_validate(app: TestApp) {
        let given = app.post("/v1/webhooks", ADMIN_KEY, json!({"name": "Stripe", "source": "stripe", "verifier": {"preset": "stripe"}, "secret": "whsec_given_secret_value"})).await;
        assert_eq!(given.status, 201, "{}", given.text);
        assert!(given.body.get("secret").is_none());
        assert_eq!(given.body["verifier"]["tolerance_s"], 300);
        let std = app.post("/v1/webhooks", ADMIN_KEY, json!({"name": "S", "source": "std", "verifier": {"preset": "standard"}, "secret": "not-whsec-format"})).await;
        assert_problem(&std, 422, Some("secret"));
        let std = app.post("/v1/webhooks", ADMIN_KEY, json!({"name": "S", "source": "std", "verifier": {"preset": "standard"}})).await;
        assert!(std.body["secret"].as_str().unwrap().starts_with("whsec_"));
        let hmac = app.post("/v1/webhooks", ADMIN_KEY, json!({"name": "H", "source": "h", "verifier": {"preset": "hmac"}})).await;
        assert_problem(&hmac, 422, Some("verifier.header"));
        // Every preset refuses settings it does not have, GitHub's (which has none) too.
        let github = app.post("/v1/webhooks", ADMIN_KEY, json!({"name": "H", "source": "h", "verifier": {"preset": "github", "tolerance_s": 5}})).await;
        assert_problem(&github, 422, Some("verifier.tolerance_s"));
        let preset = app.post("/v1/webhooks", ADMIN_KEY, json!({"name": "H", "source": "h", "verifier": {"preset": "carrier-pigeon"}})).await;
        assert_problem(&preset, 422, Some("verifier.preset"));
        let size = app.post("/v1/webhooks", ADMIN_KEY, json!({"name": "H", "source": "h", "verifier": {"preset": "github"}, "max_body_bytes": 17_000_000})).await;
        assert_problem(&size, 422, Some("max_body_bytes"));
        let expr = app.post("/v1/webhooks", ADMIN_KEY, json!({"name": "H", "source": "h", "verifier": {"preset": "github"}, "event_key_expr": "unknown_fn(@)"})).await;
        assert_problem(&expr, 422, Some("event_key_expr"));
    }

    async fn insecure_webhooks_say_so(app: TestApp) {
        let created = app.post("/v1/webhooks", ADMIN_KEY, json!({"name": "Open", "source": "open", "verifier": {"preset": "github"}, "insecure": true})).await;
        assert_eq!(created.status, 201);
        assert_eq!(created.body["has_secret"], false);
        assert!(created.body["warning"].as_str().unwrap().starts_with("INSECURE"));
        let id = created.body["id"].as_str().unwrap();
        let got = app.get(&format!("/v1/webhooks/{id}"), ADMIN_KEY).await;
        assert!(got.body["warning"].as_str().unwrap().starts_with("INSECURE"));

        // A signed webhook turned insecure loses its secret only when the PATCH says so.
        let signed = app.post("/v1/webhooks", ADMIN_KEY, json!({"name": "Signed", "source": "signed", "verifier": {"preset": "github"}, "secret": "flipsecret1"})).await;
        let path = format!("/v1/webhooks/{}", signed.body["id"].as_str().unwrap());
        assert_problem(&app.patch(&path, ADMIN_KEY, json!({"insecure": true})).await, 422, Some("insecure"));
        assert_eq!(app.get(&path, ADMIN_KEY).await.body["has_secret"], true, "the refused PATCH changed nothing");
        let dropped = app.patch(&path, ADMIN_KEY, json!({"insecure": true, "secret": null})).await;
        assert_eq!(dropped.status, 200, "{}", dropped.text);
        assert_eq!(dropped.body["has_secret"], false);
    }

    async fn a_patch_switches_presets_whole(app: TestApp) {
        let created = app.post("/v1/webhooks", ADMIN_KEY, json!({"name": "S", "source": "switch", "verifier": {"preset": "stripe", "tolerance_s": 60}, "secret": "whsec-ish-secret"})).await;
        assert_eq!(created.status, 201, "{}", created.text);
        let path = format!("/v1/webhooks/{}", created.body["id"].as_str().unwrap());
        // The old preset's settings do not follow it into the new one.
        let github = app.patch(&path, ADMIN_KEY, json!({"verifier": {"preset": "github"}})).await;
        assert_eq!(github.status, 200, "{}", github.text);
        assert_eq!(github.body["verifier"], json!({"preset": "github"}));
        // Within a preset, a PATCH merges.
        let slack = app.patch(&path, ADMIN_KEY, json!({"verifier": {"preset": "slack", "tolerance_s": 30}})).await;
        assert_eq!(slack.body["verifier"], json!({"preset": "slack", "tolerance_s": 30}));
        let merged = app.patch(&path, ADMIN_KEY, json!({"verifier": {"tolerance_s": 90}})).await;
        assert_eq!(merged.body["verifier"], json!({"preset": "slack", "tolerance_s": 90}));
    }

    async fn the_dry_run_reads_a_webhook_message_as_a_delivery_would_be(app: TestApp) {
        // A webhook, then a dry run of `message` through it for a trigger on `on` (answered 200).
        let dry_run = |webhook: Value, on: &'static str, message: Value| {
            let app = &app;
            async move {
                let created = app.post("/v1/webhooks", ADMIN_KEY, webhook.clone()).await;
                assert_eq!(created.status, 201, "{}", created.text);
                let dry = app.post("/v1/automations/test", ADMIN_KEY, json!({
                    "trigger": {"type": "event", "source": webhook["source"], "on": on}, "message": message,
                })).await;
                assert_eq!(dry.status, 200, "{}", dry.text);
                dry
            }
        };
        // A Stripe webhook sets no expressions: the preset's defaults apply, in the dry run too.
        let dry = dry_run(json!({"name": "Jobs", "source": "jobs", "verifier": {"preset": "stripe"}}), "job.*",
            json!({"body": {"type": "job.created", "id": "evt_1"}, "headers": {}})).await;
        assert_eq!(dry.body["status"], "received", "{}", dry.text);
        assert_eq!(dry.body["event_key"], "job.created");
        assert_eq!(dry.body["payload"], json!({"type": "job.created", "id": "evt_1"}));
        assert_eq!(dry.body["dedup_key"], "evt_1");
        assert_eq!(dry.body["match"]["result"], "matched", "{}", dry.text);
        // A delivery's event never holds credential headers, so neither does the sample's.
        let dry = dry_run(json!({"name": "Raw", "source": "raw", "verifier": {"preset": "stripe"}, "payload_expr": "headers"}), "*",
            json!({"body": {"type": "t", "id": "e"}, "headers": {"X-Api-Key": "k-123", "X-Kind": "a"}})).await;
        assert_eq!(dry.body["payload"], json!({"x-kind": "a"}), "{}", dry.text);
        // Nor Slack's verification token in the body.
        let dry = dry_run(json!({"name": "Sl", "source": "sl", "verifier": {"preset": "slack"}, "payload_expr": "body", "event_key_expr": "body.type"}), "*",
            json!({"body": {"type": "event_callback", "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl"}, "headers": {}})).await;
        assert_eq!(dry.body["payload"], json!({"type": "event_callback"}), "{}", dry.text);
    }

    async fn rotation_keeps_the_previous_secret_for_the_grace_period(app: TestApp) {
        let created = app.post("/v1/webhooks", ADMIN_KEY, json!({"name": "GitHub", "source": "gh", "verifier": {"preset": "github"}})).await;
        let old = created.body["secret"].as_str().unwrap().to_owned();
        let id = created.body["id"].as_str().unwrap();
        let rotated = app.post(&format!("/v1/webhooks/{id}/rotate-secret"), ADMIN_KEY, json!({"grace_period_s": 3600})).await;
        assert_eq!(rotated.status, 200, "{}", rotated.text);
        let new = rotated.body["secret"].as_str().unwrap().to_owned();
        assert_ne!(new, old);
        let stored = stored_secrets(&app, id).await;
        assert_eq!(stored.current, new);
        assert_eq!(stored.previous.as_deref(), Some(old.as_str()));
        let expires = stored.previous_expires_at.unwrap();
        let in_an_hour = chrono::Utc::now() + chrono::Duration::seconds(3600);
        assert!((expires - in_an_hour).num_seconds().abs() < 60);
        assert_problem(&app.post(&format!("/v1/webhooks/{id}/rotate-secret"), ADMIN_KEY, json!({"grace_period_s": 99_999_999})).await, 422, Some("grace_period_s"));
    }

    async fn patch_and_delete(app: TestApp) {
        let created = app.post("/v1/webhooks", ADMIN_KEY, json!({"name": "GitHub", "source": "gh", "verifier": {"preset": "github"}})).await;
        let secret = created.body["secret"].as_str().unwrap().to_owned();
        let id = created.body["id"].as_str().unwrap();
        let path = format!("/v1/webhooks/{id}");
        let patched = app.patch(&path, ADMIN_KEY, json!({"name": "GH", "rate_limit": {"per_second": 5.0, "burst": 10}})).await;
        assert_eq!(patched.status, 200, "{}", patched.text);
        assert_eq!(patched.body["name"], "GH");
        assert_eq!(patched.body["rate_limit"]["burst"], 10);
        assert_eq!(stored_secrets(&app, id).await.current, secret, "a patch without `secret` keeps it");
        assert_problem(&app.patch(&path, ADMIN_KEY, json!({"verifier": null})).await, 422, Some("verifier"));
        assert_eq!(app.delete(&path, ADMIN_KEY).await.status, 204);
        assert_problem(&app.get(&path, ADMIN_KEY).await, 404, None);
    }
}
