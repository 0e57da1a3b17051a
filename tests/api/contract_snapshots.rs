//! Snapshot tests of the API contract: a representative problem+json body per status and the
//! whole OpenAPI document, so a change to either shows up in review as a changed `.snap` file.
//! Both engines compare against the same snapshots: nothing engine-specific may appear in them.

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{ADMIN_KEY, Resp, TestApp, assert_problem};

/// A problem response as it is snapshotted: status, content type, `Allow` (405 only) and body.
fn contract(resp: &Resp, status: u16) -> Value {
    assert_problem(resp, status, None);
    let allow = resp
        .headers
        .get("allow")
        .map(|v| v.to_str().unwrap().to_owned());
    json!({
        "status": resp.status,
        "content_type": resp.content_type,
        "allow": allow,
        "body": resp.body,
    })
}

/// The path of a created webhook's inbound URL.
fn inbound_path(created: &Resp) -> String {
    assert_eq!(created.status, 201, "{}", created.text);
    let url = created.body["webhook_url"].as_str().unwrap();
    url[url.find("/v1/").unwrap()..].to_owned()
}

/// Sends `body` with `content_type` to `path` as the admin.
async fn post_as(app: &TestApp, path: &str, content_type: &str, body: Vec<u8>) -> Resp {
    let res = app
        .client
        .post(format!("{}{}", app.address, path))
        .insert_header(("Authorization", format!("Bearer {ADMIN_KEY}")))
        .insert_header(("Content-Type", content_type))
        .send_body(body)
        .await
        .expect("request sent");
    crate::helpers::read(res).await
}

both_backends! {
    async fn problem_bodies_are_stable(app: TestApp) {
        let bad_json = app.send_raw("POST", "/v1/webhooks", ADMIN_KEY, b"{not json".to_vec()).await;
        insta::assert_json_snapshot!("problem_400_malformed_json", contract(&bad_json, 400));

        let no_key = app.request("GET", "/v1/me", None, None).await;
        insta::assert_json_snapshot!("problem_401_no_key", contract(&no_key, 401));

        let member = app.post("/v1/api-keys", ADMIN_KEY, json!({"name": "m", "role": "member"})).await;
        let member_key = member.body["key"].as_str().unwrap().to_owned();
        let forbidden = app.post("/v1/webhooks", &member_key,
            json!({"name": "H", "source": "h", "verifier": {"preset": "github"}})).await;
        insta::assert_json_snapshot!("problem_403_role", contract(&forbidden, 403));

        let missing = app.get("/v1/webhooks/0190b6a0-0000-7000-8000-000000000000", ADMIN_KEY).await;
        insta::assert_json_snapshot!("problem_404_webhook", contract(&missing, 404));
        let unrouted = app.get("/v1/no-such-thing", ADMIN_KEY).await;
        insta::assert_json_snapshot!("problem_404_unrouted", contract(&unrouted, 404));

        let not_allowed = app.send_raw("PATCH", "/v1/automations/test", ADMIN_KEY, b"{}".to_vec()).await;
        insta::assert_json_snapshot!("problem_405_allow", contract(&not_allowed, 405));

        let hook = json!({"name": "H", "source": "taken", "verifier": {"preset": "github"}});
        assert_eq!(app.post("/v1/webhooks", ADMIN_KEY, hook.clone()).await.status, 201);
        let conflict = app.post("/v1/webhooks", ADMIN_KEY, hook).await;
        insta::assert_json_snapshot!("problem_409_slug_taken", contract(&conflict, 409));

        let limit = app.settings.max_body_bytes;
        let huge = post_as(&app, "/v1/webhooks", "application/json", vec![b' '; limit + 1]).await;
        insta::assert_json_snapshot!("problem_413_body", contract(&huge, 413));

        let invalid = app.post("/v1/webhooks", ADMIN_KEY,
            json!({"name": "", "source": "Not A Slug", "verifier": {"preset": "github"}})).await;
        assert_problem(&invalid, 422, Some("name"));
        insta::assert_json_snapshot!("problem_422_fields", contract(&invalid, 422));

        let plain = app.post("/v1/webhooks", ADMIN_KEY, json!({"name": "P", "source": "plain",
            "verifier": {"preset": "github"}, "insecure": true})).await;
        let plain_url = inbound_path(&plain);
        let text = app.deliver(&plain_url, &[("content-type", "text/plain".to_owned())], b"{}").await;
        insta::assert_json_snapshot!("problem_415_content_type", contract(&text, 415));

        let limited = app.post("/v1/webhooks", ADMIN_KEY, json!({"name": "L", "source": "limited",
            "verifier": {"preset": "github"}, "insecure": true,
            "rate_limit": {"per_second": 0.001, "burst": 1}})).await;
        let url = inbound_path(&limited);
        let json_header = [("content-type", "application/json".to_owned())];
        assert_eq!(app.deliver(&url, &json_header, b"{}").await.status, 200);
        let too_many = app.deliver(&url, &json_header, b"{}").await;
        insta::assert_json_snapshot!("problem_429_rate_limited", contract(&too_many, 429));
    }
}

/// The OpenAPI document, keys sorted (serde_json's map is ordered) so the snapshot only changes
/// when the contract does.
#[actix_web::test]
async fn openapi_document_is_stable() {
    let app = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await;
    let doc = app.request("GET", "/openapi.json", None, None).await;
    assert_eq!(doc.status, 200);
    insta::assert_json_snapshot!("openapi_document", doc.body, {
        ".info.version" => "[version]",
    });
}
