use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;

use crate::both_backends;
use crate::helpers::{ADMIN_KEY, TestApp, assert_problem};

both_backends! {
    async fn me_shows_the_default_org(app: TestApp) {
        let me = app.get("/v1/me", ADMIN_KEY).await;
        assert_eq!(me.status, 200, "{}", me.text);
        assert_eq!(me.body["org_name"], "default");
        assert_eq!(me.body["role"], "admin");
    }

    async fn missing_or_wrong_keys_are_401(app: TestApp) {
        let none = app.request("GET", "/v1/me", None, None).await;
        assert_problem(&none, 401, None);
        let wrong = app.get("/v1/me", "sbk_testadminkey0000000000000000000000001").await;
        assert_problem(&wrong, 401, None);
        let garbage = app.get("/v1/me", "nonsense").await;
        assert_problem(&garbage, 401, None);
    }

    async fn a_wrong_key_learns_nothing_from_the_body(app: TestApp) {
        // A well-formed key that is not one: whatever the body or the query, the answer is 401
        // (the key is looked up before anything is read), never a 422 naming a field.
        let wrong = "sbk_testadminkey0000000000000000000000001";
        let id = uuid::Uuid::nil();
        for (method, path, body) in [
            ("POST", "/v1/automations".to_owned(), Some(b"{\"limit\": \"x\"".to_vec())),
            ("POST", "/v1/automations".to_owned(), None),
            ("POST", "/v1/runs/claim".to_owned(), Some(b"{\"limit\": 0}".to_vec())),
            ("POST", format!("/v1/runs/{id}/complete"), Some(b"[]".to_vec())),
            ("PATCH", format!("/v1/websocket-sources/{id}"), Some(b"{\"url\": 7}".to_vec())),
            ("GET", "/v1/events?limit=0&since=yesterday".to_owned(), None),
            ("GET", "/v1/runs/not-a-uuid".to_owned(), None),
        ] {
            let resp = match body {
                Some(body) => app.send_raw(method, &path, wrong, body).await,
                None => app.request(method, &path, Some(wrong), None).await,
            };
            assert_eq!(resp.status, 401, "{method} {path}: {}", resp.text);
        }
        // The right key gets the field named.
        let named = app.send_raw("POST", "/v1/runs/claim", ADMIN_KEY, b"{\"limit\": 0}".to_vec()).await;
        assert_problem(&named, 422, Some("limit"));
    }

    async fn keys_are_created_shown_once_listed_and_revoked(app: TestApp) {
        let created = app.post("/v1/api-keys", ADMIN_KEY, json!({"name": "ci", "role": "member"})).await;
        assert_eq!(created.status, 201, "{}", created.text);
        let key = created.body["key"].as_str().unwrap().to_owned();
        assert!(key.starts_with("sbk_"));
        assert_eq!(created.body["prefix"], &key[..12]);

        let list = app.get("/v1/api-keys", ADMIN_KEY).await;
        assert_eq!(list.status, 200);
        assert_eq!(list.body["total"], 2);
        assert!(!list.text.contains(&key), "a listed key never shows the key");

        let me = app.get("/v1/me", &key).await;
        assert_eq!(me.body["role"], "member");
        // Stored as a hash only.
        let row = entity::api_key::Entity::find()
            .filter(entity::api_key::Column::Prefix.eq(&key[..12]))
            .one(&app.db).await.unwrap().unwrap();
        assert_ne!(row.key_hash, key);
        assert_eq!(row.key_hash, switchboard::auth::hash_key(&key));

        let id = created.body["id"].as_str().unwrap();
        let deleted = app.delete(&format!("/v1/api-keys/{id}"), ADMIN_KEY).await;
        assert_eq!(deleted.status, 204);
        assert_problem(&app.get("/v1/me", &key).await, 401, None);
        assert_problem(&app.delete(&format!("/v1/api-keys/{id}"), ADMIN_KEY).await, 404, None);
    }

    async fn roles_are_enforced(app: TestApp) {
        let member = app.post("/v1/api-keys", ADMIN_KEY, json!({"name": "m", "role": "member"})).await;
        let member = member.body["key"].as_str().unwrap().to_owned();
        let worker = app.post("/v1/api-keys", ADMIN_KEY, json!({"name": "w", "role": "worker"})).await;
        let worker = worker.body["key"].as_str().unwrap().to_owned();
        assert_problem(&app.post("/v1/api-keys", &member, json!({"name": "x", "role": "admin"})).await, 403, None);
        let source = json!({"name": "s", "source": "s1", "kind": "generic", "config": {"url": "wss://feed.example.com"}});
        assert_problem(&app.post("/v1/websocket-sources", &member, source).await, 403, None);
        let automation = json!({"name": "a", "trigger": {"type": "event", "source": "s1", "on": "*"}});
        assert_eq!(app.post("/v1/automations", &member, automation.clone()).await.status, 201);
        assert_problem(&app.post("/v1/automations", &worker, automation).await, 403, None);
        assert_eq!(app.get("/v1/runs", &worker).await.status, 200);
        // The role is checked before the body is read: a key without it learns nothing from a
        // body's errors.
        for (path, key) in [
            ("/v1/api-keys", &member),
            ("/v1/websocket-sources", &member),
            ("/v1/webhooks", &member),
            ("/v1/automations", &worker),
            ("/v1/runs/claim", &member),
            ("/v1/runs/complete", &member),
        ] {
            for body in [b"garbage{".to_vec(), b"{}".to_vec(), b"{\"bogus\": 1}".to_vec()] {
                let resp = app.send_raw("POST", path, key, body).await;
                assert_eq!(resp.status, 403, "{path}: {}", resp.text);
            }
        }
    }

    async fn key_input_is_validated(app: TestApp) {
        assert_problem(&app.post("/v1/api-keys", ADMIN_KEY, json!({"name": "x", "role": "root"})).await, 422, Some("role"));
        assert_problem(&app.post("/v1/api-keys", ADMIN_KEY, json!({"name": " ", "role": "admin"})).await, 422, Some("name"));
        assert_problem(&app.post("/v1/api-keys", ADMIN_KEY, json!({"name": "x", "role": "admin", "extra": 1})).await, 422, Some("extra"));
        assert_problem(&app.get("/v1/api-keys?limit=0", ADMIN_KEY).await, 422, Some("limit"));
        assert_problem(&app.get("/v1/api-keys?bogus=1", ADMIN_KEY).await, 422, Some("bogus"));
    }
}
