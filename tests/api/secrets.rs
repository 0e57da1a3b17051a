//! No API response, no log line and no database column holds a stored secret in plaintext.
use sea_orm::EntityTrait;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{ADMIN_KEY, TestApp, logs};

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

both_backends! {
    async fn secrets_never_leave_sealed(app: TestApp) {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let header = format!("hdr-{tag}");
        let named = format!("named-{tag}");
        let token = format!("xapp-1-{tag}");
        let hook_secret = format!("hook-{tag}");
        let query = format!("q-{tag}");
        let user = format!("user-{tag}");
        let password = format!("pw-{tag}");
        let pki = crate::pki::generate();
        // A line of the client key's base64 body: what any leak of the key would contain.
        let key_line = pki.client.key_pem.lines().nth(1).unwrap().to_owned();
        let secrets = [&header, &named, &token, &hook_secret, &query, &user, &password, &key_line];

        let mut texts = Vec::new();
        let generic = app.post("/v1/websocket-sources", ADMIN_KEY, json!({"name": "g", "source": "g", "kind": "generic",
            "config": {"url": format!("wss://feed.example.com/?access_token={query}"), "headers": {"X-Token": header},
                       "secrets": {"S": named}, "on_connect": ["{{secret:S}}"]}})).await;
        assert_eq!(generic.status, 201, "{}", generic.text);
        texts.push(generic.text.clone());
        let with_tls = app.post("/v1/websocket-sources", ADMIN_KEY, json!({"name": "t", "source": "t", "kind": "generic",
            "config": {"url": format!("wss://{user}:{password}@feed.example.com/ws"),
                       "tls": {"client_cert": pki.client.cert_pem, "client_key": pki.client.key_pem}}})).await;
        assert_eq!(with_tls.status, 201, "{}", with_tls.text);
        assert_eq!(with_tls.body["config"]["tls"]["has_client_key"], true);
        texts.push(with_tls.text.clone());
        // A refused key is not echoed either.
        let mismatched = app.post("/v1/websocket-sources", ADMIN_KEY, json!({"name": "m", "source": "m", "kind": "generic",
            "config": {"url": "wss://feed.example.com/ws",
                       "tls": {"client_cert": pki.stranger.cert_pem, "client_key": pki.client.key_pem}}})).await;
        assert_eq!(mismatched.status, 422, "{}", mismatched.text);
        texts.push(mismatched.text.clone());
        let slack = app.post("/v1/websocket-sources", ADMIN_KEY, json!({"name": "s", "source": "s", "kind": "slack", "config": {"app_token": token}})).await;
        assert_eq!(slack.status, 201, "{}", slack.text);
        texts.push(slack.text.clone());
        let hook = app.post("/v1/webhooks", ADMIN_KEY, json!({"name": "h", "source": "h", "verifier": {"preset": "github"}, "secret": hook_secret})).await;
        assert_eq!(hook.status, 201, "{}", hook.text);
        texts.push(hook.text.clone());
        // A failing request that carries a secret must not echo it either.
        let bad = app.post("/v1/websocket-sources", ADMIN_KEY, json!({"name": "b", "source": "b", "kind": "slack", "config": {"app_token": format!("xoxb-{tag}")}})).await;
        assert_eq!(bad.status, 422);
        texts.push(bad.text.clone());
        for path in ["/v1/websocket-sources", "/v1/webhooks"] {
            texts.push(app.get(path, ADMIN_KEY).await.text);
        }
        let gid = generic.body["id"].as_str().unwrap();
        texts.push(app.get(&format!("/v1/websocket-sources/{gid}"), ADMIN_KEY).await.text);
        texts.push(app.patch(&format!("/v1/websocket-sources/{gid}"), ADMIN_KEY, json!({"name": "g2"})).await.text);
        let tid = with_tls.body["id"].as_str().unwrap();
        texts.push(app.patch(&format!("/v1/websocket-sources/{tid}"), ADMIN_KEY, json!({"name": "t2"})).await.text);
        texts.push(app.request("GET", "/metrics", None, None).await.text);

        for text in &texts {
            for secret in secrets {
                assert!(!text.contains(secret.as_str()), "response leaks {secret}: {text}");
            }
            assert!(!text.contains(&format!("xoxb-{tag}")));
        }
        let log = logs().lock().unwrap().clone();
        assert!(!log.is_empty(), "logs are captured");
        for secret in secrets {
            assert!(!contains(&log, secret), "a log line leaks {secret}");
        }
        let mut stored = Vec::new();
        for row in entity::websocket_source::Entity::find().all(&app.db).await.unwrap() {
            stored.extend(row.config.to_string().into_bytes());
            stored.extend(row.secrets.unwrap_or_default());
        }
        for row in entity::webhook::Entity::find().all(&app.db).await.unwrap() {
            stored.extend(row.verifier.to_string().into_bytes());
            stored.extend(row.secrets.unwrap_or_default());
        }
        assert!(stored.len() > 100);
        for secret in secrets {
            assert!(!contains(&stored, secret), "the database holds {secret} in plaintext");
        }
    }
}
