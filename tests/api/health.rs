use crate::both_backends;
use crate::helpers::{ADMIN_KEY, TestApp, assert_problem};

both_backends! {
    async fn health_and_readiness(app: TestApp) {
        let health = app.request("GET", "/healthz", None, None).await;
        assert_eq!(health.status, 200);
        assert_eq!(health.body["status"], "ok");
        let ready = app.request("GET", "/readyz", None, None).await;
        assert_eq!(ready.status, 200, "{}", ready.text);
    }

    async fn unknown_route_is_a_problem(app: TestApp) {
        let resp = app.get("/v1/nothing-here", ADMIN_KEY).await;
        assert_problem(&resp, 404, None);
    }
}

#[actix_web::test]
async fn openapi_describes_every_endpoint() {
    let app = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await;
    let doc = app.request("GET", "/openapi.json", None, None).await;
    assert_eq!(doc.status, 200);
    let paths = doc.body["paths"].as_object().expect("paths");
    let expected: &[(&str, &[&str])] = &[
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
        ("/v1/me", &["get"]),
        ("/v1/api-keys", &["get", "post"]),
        ("/v1/api-keys/{id}", &["delete"]),
        ("/v1/websocket-sources", &["get", "post"]),
        ("/v1/websocket-sources/{id}", &["get", "patch", "delete"]),
        ("/v1/websocket-sources/{id}/reconnect", &["post"]),
        ("/v1/websocket-sources/{id}/pause", &["post"]),
        ("/v1/websocket-sources/{id}/resume", &["post"]),
        ("/v1/websocket-sources/{id}/send", &["post"]),
        ("/v1/webhooks", &["get", "post"]),
        ("/v1/webhooks/{id}", &["get", "patch", "delete"]),
        ("/v1/webhooks/{id}/rotate-secret", &["post"]),
        ("/v1/automations", &["get", "post"]),
        ("/v1/automations/{id}", &["get", "patch", "delete"]),
        ("/v1/automations/{id}/runs", &["get"]),
        ("/v1/runs", &["get"]),
        ("/v1/runs/{id}", &["get"]),
        ("/v1/runs/{id}/cancel", &["post"]),
        ("/v1/events", &["get"]),
        ("/v1/events/{id}", &["get"]),
        ("/v1/events/{id}/replay", &["post"]),
        ("/v1/automations/test", &["post"]),
        ("/v1/expressions/evaluate", &["post"]),
        ("/v1/events/{org_id}/{source}", &["post"]),
        ("/v1/stream", &["get"]),
        ("/v1/stream/tokens", &["post"]),
    ];
    for (path, methods) in expected {
        let item = paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} missing from the OpenAPI document"));
        for method in *methods {
            assert!(item.get(*method).is_some(), "{method} {path} missing");
        }
    }
    assert!(doc.body["components"]["securitySchemes"]["bearer"].is_object());
    assert!(
        doc.text.contains("\"example\""),
        "the document carries examples"
    );

    let docs = app.request("GET", "/docs/", None, None).await;
    assert_eq!(docs.status, 200);
    assert!(
        docs.text.contains("swagger-ui"),
        "Swagger UI page is served from the binary"
    );
    let bundle = app
        .request("GET", "/docs/swagger-ui-bundle.js", None, None)
        .await;
    assert_eq!(bundle.status, 200);
    assert!(bundle.text.len() > 100_000, "the UI bundle is vendored");
}
