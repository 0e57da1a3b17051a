//! Hostile input (issue 11): expressions that blow up, JSON that could be written but not read,
//! messages storage refuses, frames that expand into too many messages. Every one gets a bounded,
//! clear answer, and nothing around it is lost or stuck.
use std::time::Duration;

use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use switchboard::db;

use crate::helpers::{ADMIN_KEY, Backend, TestApp, assert_problem, eventually, spawn_app};
use crate::ingest::{
    WAIT, create_automation, create_source, event_count, runs_of, source_body, status, undispatched,
};
use crate::peer::{ConnectionScript, Peer, Step};
use crate::{both_backends, both_backends_private};

fn doubling(times: usize) -> String {
    format!("{}@", "[@,@]|".repeat(times))
}

fn nested(levels: usize) -> String {
    format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
}

async fn open_hook(app: &TestApp, slug: &str) -> String {
    let body = json!({"name": slug, "source": slug, "verifier": {"preset": "stripe"}, "insecure": true,
        "event_key_expr": "body.type"});
    let resp = app.post("/v1/webhooks", ADMIN_KEY, body).await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    resp.body["webhook_url"]
        .as_str()
        .unwrap()
        .replace("https://hooks.example.com", "")
}

async fn deliver(app: &TestApp, url: &str, body: &str) -> crate::helpers::Resp {
    let headers = [("content-type", "application/json".to_owned())];
    app.deliver(url, &headers, body.as_bytes()).await
}

#[actix_web::test]
async fn evaluate_refuses_blow_ups_naming_the_limit() {
    let app = spawn_app(Backend::Sqlite).await;
    let hopeless = app
        .post(
            "/v1/expressions/evaluate",
            ADMIN_KEY,
            json!({"expression": doubling(40), "data": 1}),
        )
        .await;
    assert_problem(&hopeless, 422, Some("expression"));
    assert!(
        hopeless.text.contains("limit-exceeded"),
        "{}",
        hopeless.text
    );
    let big = app
        .post(
            "/v1/expressions/evaluate",
            ADMIN_KEY,
            json!({"expression": doubling(16), "data": "x".repeat(100)}),
        )
        .await;
    assert_problem(&big, 422, Some("expression"));
    assert!(big.text.contains("result size limit"), "{}", big.text);
    let work = app
        .post("/v1/expressions/evaluate", ADMIN_KEY,
            json!({"expression": format!("{}@", "[@,@][]|".repeat(15)), "data": (0..1000).collect::<Vec<_>>()}))
        .await;
    assert_problem(&work, 422, Some("expression"));
    assert!(work.text.contains("work limit"), "{}", work.text);
    // Saving such an expression is refused as well.
    let automation = app
        .post(
            "/v1/automations",
            ADMIN_KEY,
            json!({"name": "x", "trigger": {"type": "event",
            "source": "s", "on": "*", "filter": doubling(40)}}),
        )
        .await;
    assert_problem(&automation, 422, Some("trigger.filter"));
    // The service is still fine.
    let ok = app
        .post(
            "/v1/expressions/evaluate",
            ADMIN_KEY,
            json!({"expression": "a", "data": {"a": 1}}),
        )
        .await;
    assert_eq!(ok.body["result"], 1);
}

both_backends! {
    async fn an_automation_filter_over_budget_records_a_filter_error(app: TestApp) {
        let url = open_hook(&app, "hook").await;
        let costly = format!("length(to_string({})) > `0`", doubling(14));
        let automation = create_automation(&app, "hook", json!("*"), Some(&costly)).await;
        let plain = create_automation(&app, "hook", json!("*"), None).await;
        let body = json!({"type": "big", "text": "x".repeat(1000)}).to_string();
        let resp = deliver(&app, &url, &body).await;
        assert_eq!(resp.status, 200, "{}", resp.text);
        let id = resp.body["event_id"].as_str().unwrap().to_owned();
        assert!(eventually(WAIT, || async { undispatched(&app).await == 0 }).await);
        let event = app.get(&format!("/v1/events/{id}"), ADMIN_KEY).await;
        assert_eq!(event.body["status"], "dispatched", "{}", event.text);
        let outcome = event.body["outcome"].as_array().unwrap();
        let costly_outcome = outcome.iter().find(|o| o["automation_id"] == automation.as_str()).unwrap();
        assert_eq!(costly_outcome["result"], "filter_error", "{costly_outcome}");
        assert!(costly_outcome["message"].as_str().unwrap().contains("work limit"), "{costly_outcome}");
        assert_eq!(runs_of(&app, &automation).await, 0);
        assert_eq!(runs_of(&app, &plain).await, 1);
    }

    async fn json_too_deep_for_storage_is_refused_at_the_door(app: TestApp) {
        let url = open_hook(&app, "deep").await;
        let deep = format!("{{\"type\": \"t\", \"v\": {}}}", nested(126));
        let refused = deliver(&app, &url, &deep).await;
        assert_problem(&refused, 400, None);
        assert!(refused.text.contains("64 levels"), "{}", refused.text);
        let nul = deliver(&app, &url, r#"{"type": "t", "v": "a\u0000b"}"#).await;
        assert_problem(&nul, 400, None);
        assert!(nul.text.contains("U+0000"), "{}", nul.text);
        let fine = deliver(&app, &url, &format!("{{\"type\": \"t\", \"v\": {}}}", nested(60))).await;
        assert_eq!(fine.status, 200, "{}", fine.text);
        for path in ["/v1/events", "/v1/runs", "/v1/events?source=deep"] {
            let page = app.get(path, ADMIN_KEY).await;
            assert_eq!(page.status, 200, "{path}: {}", page.text);
        }
        assert_eq!(event_count(&app, "deep").await, 1);
    }

    async fn undecodable_rows_never_fail_a_page_or_a_start(app: TestApp) {
        // A row written before the limits existed: nested deeper than serde_json reads (128).
        let org = crate::events_runs::org_of(&app, ADMIN_KEY).await;
        let id = db::new_id();
        let raw = format!("{{\"v\": {}}}", nested(200));
        let sql = match app.backend {
            Backend::Postgres => "INSERT INTO events (id, org_id, origin, source, dedup_key, event_key, raw, meta, \
                status, received_at) VALUES ($1, $2, 'webhook', 'legacy', 'k1', 't', $3::jsonb, '{}'::jsonb, \
                'received', $4)",
            Backend::Sqlite => "INSERT INTO events (id, org_id, origin, source, dedup_key, event_key, raw, meta, \
                status, received_at) VALUES (?, ?, 'webhook', 'legacy', 'k1', 't', ?, '{}', 'received', ?)",
        };
        let values: Vec<sea_orm::Value> = vec![id.into(), org.into(), raw.into(), db::now().into()];
        let backend = app.db.get_database_backend();
        app.db.execute_raw(sea_orm::Statement::from_sql_and_values(backend, sql, values)).await.unwrap();
        let page = app.get("/v1/events", ADMIN_KEY).await;
        assert_eq!(page.status, 200, "{}", page.text);
        let item = &page.body["items"][0];
        assert!(item["raw"]["undecodable"].as_str().is_some_and(|why| why.contains("could not be decoded")), "{item}");
        let one = app.get(&format!("/v1/events/{id}"), ADMIN_KEY).await;
        assert_eq!(one.status, 200, "{}", one.text);
        // A restart (which dispatches what is left undispatched) steps over it: it is retired
        // with status `error`.
        let settings = app.settings.clone();
        app.stop().await;
        let (_, dir, _) = crate::helpers::test_settings(Backend::Sqlite).await;
        let app = crate::helpers::spawn_with(app.backend, settings, dir, None).await;
        assert!(eventually(WAIT, || async { undispatched(&app).await == 0 }).await);
        let one = app.get(&format!("/v1/events/{id}"), ADMIN_KEY).await;
        assert_eq!(one.body["status"], "error", "{}", one.text);
        assert!(one.body["error"].as_str().unwrap().contains("could not be decoded"));
        let metrics = app.get("/metrics", ADMIN_KEY).await.text;
        assert!(metrics.lines().any(|l| l.starts_with("switchboard_undecodable_rows_total") && !l.ends_with(" 0")), "{metrics}");
    }

    async fn a_batch_storage_refuses_is_split_and_the_rest_stored(app: TestApp) {
        let org = crate::events_runs::org_of(&app, ADMIN_KEY).await;
        let row = |key: &str, raw: Value| {
            let mut row = crate::inbox::row(org, key, 1);
            row.raw = raw;
            row
        };
        // PostgreSQL cannot hold U+0000 in jsonb; SQLite can. Rows reach storage directly here
        // (the ingest limits refuse NUL long before).
        let rows = vec![
            row("a", json!({"n": 1})),
            row("b", json!({"n": "x\u{0}y"})),
            row("c", json!({"n": 3})),
            row("a", json!({"n": 4})),
        ];
        let runs = vec![Vec::new(); rows.len()];
        let place = db::inbox::Place::default();
        let outcomes = db::inbox::insert_matched_isolating(&app.db, &rows, &runs, &place)
            .await
            .unwrap()
            .outcomes;
        use db::inbox::RowOutcome::{Duplicate, Refused, Stored};
        match app.backend {
            Backend::Postgres => {
                assert_eq!(outcomes[0], Stored);
                assert!(matches!(&outcomes[1], Refused(reason) if !reason.contains("x\u{0}y")), "{outcomes:?}");
                assert_eq!(&outcomes[2..], &[Stored, Duplicate]);
            }
            Backend::Sqlite => assert_eq!(outcomes, vec![Stored, Stored, Stored, Duplicate]),
        }
    }
}

both_backends_private! {
    async fn refused_messages_are_counted_acked_and_never_stop_a_source(app: TestApp) {
        let deep = format!("{{\"type\": \"t\", \"id\": \"d\", \"v\": {}}}", nested(100));
        let steps = vec![
            Step::Send(json!({"type": "t", "id": "1"}).to_string()),
            Step::Send(r#"{"type": "t", "id": "nul", "v": "a\u0000b"}"#.to_owned()),
            Step::Send(deep),
            Step::Send(json!({"type": "t", "id": "2"}).to_string()),
        ];
        let peer = Peer::start(vec![ConnectionScript::accept(steps)]);
        let automation = create_automation(&app, "feed", json!("*"), None).await;
        let id = create_source(&app, source_body("feed", &peer, json!({"ack_expr": "{ack: id}"}))).await;
        assert!(eventually(WAIT, || async { event_count(&app, "feed").await == 2 }).await);
        assert!(peer.wait_until(WAIT, |p| p.texts().len() == 4).await, "{:?}", peer.texts());
        let acks = peer.texts();
        for id in ["1", "nul", "d", "2"] {
            assert!(acks.contains(&json!({"ack": id}).to_string()), "{acks:?}");
        }
        assert!(eventually(WAIT, || async { runs_of(&app, &automation).await == 2 }).await);
        let status = status(&app, &id).await;
        assert_eq!(status["counters"]["rejected"], 2, "{status}");
        assert!(status["counters"]["last_rejection"].as_str().unwrap().contains("64 levels"), "{status}");
        let logs = String::from_utf8_lossy(&crate::helpers::logs().lock().unwrap()).into_owned();
        assert!(!logs.contains("a\u{0}b") && !logs.contains("a\\u0000b"));
    }

    async fn a_payload_expression_cannot_build_what_storage_cannot_read(app: TestApp) {
        let steps = vec![Step::Send(format!("{{\"type\": \"t\", \"id\": \"x\", \"v\": {}}}", nested(63)))];
        let peer = Peer::start(vec![ConnectionScript::accept(steps)]);
        let mut body = source_body("wrap", &peer, json!({}));
        body["payload_expr"] = json!("{data: {more: @}}");
        create_source(&app, body).await;
        assert!(eventually(WAIT, || async { event_count(&app, "wrap").await == 1 }).await);
        let page = app.get("/v1/events?source=wrap", ADMIN_KEY).await;
        assert_eq!(page.status, 200, "{}", page.text);
        assert_eq!(page.body["items"][0]["status"], "error", "{}", page.text);
        assert!(page.body["items"][0]["error"].as_str().unwrap().contains("64 levels"));
        assert_eq!(app.get("/v1/runs", ADMIN_KEY).await.status, 200);
    }

    async fn a_frame_holding_too_many_messages_is_refused_whole(app: TestApp) {
        let line = |i: usize| json!({"type": "t", "id": i}).to_string();
        let too_many: Vec<String> = (0..1001).map(line).collect();
        let just_right: Vec<String> = (2000..3000).map(line).collect();
        let steps = vec![
            Step::Send(too_many.join("\n")),
            Step::Send(just_right.join("\n")),
        ];
        let peer = Peer::start(vec![ConnectionScript::accept(steps)]);
        let id = create_source(&app, source_body("nd", &peer, json!({"framing": "ndjson"}))).await;
        assert!(eventually(WAIT, || async { event_count(&app, "nd").await == 1000 }).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(event_count(&app, "nd").await, 1000);
        let status = status(&app, &id).await;
        assert_eq!(status["counters"]["rejected"], 1, "{status}");
        assert!(status["counters"]["last_rejection"].as_str().unwrap().contains("max_messages_per_frame"));
        let bad = app.post("/v1/websocket-sources", ADMIN_KEY,
            source_body("nd2", &peer, json!({"framing": "ndjson", "max_messages_per_frame": 0}))).await;
        assert_problem(&bad, 422, Some("config.max_messages_per_frame"));
    }
}

fn github_headers(secret: &str, delivery: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".to_owned()),
        ("x-github-event", "push".to_owned()),
        ("x-github-delivery", delivery.to_owned()),
        (
            "x-hub-signature-256",
            switchboard::webhooks::sign::sign_github(secret, body),
        ),
    ]
}

both_backends! {
    async fn captured_deliveries_cannot_be_replayed(app: TestApp) {
        let created = app.post("/v1/webhooks", ADMIN_KEY, json!({"name": "gh", "source": "gh",
            "verifier": {"preset": "github"}})).await;
        let url = created.body["webhook_url"].as_str().unwrap().replace("https://hooks.example.com", "");
        let secret = created.body["secret"].as_str().unwrap().to_owned();
        let body = br#"{"ref":"refs/heads/main","after":"abc"}"#;
        let first = app.deliver(&url, &github_headers(&secret, "d-1", body), body).await;
        assert_eq!(first.status, 200, "{}", first.text);
        // The same signed body under a fresh delivery id (the id is not signed): not a new event.
        let replay = app.deliver(&url, &github_headers(&secret, "d-2", body), body).await;
        assert_eq!(replay.status, 200, "{}", replay.text);
        assert_eq!(replay.body["duplicate"], true, "{}", replay.text);
        assert_eq!(replay.body["event_id"], first.body["event_id"]);
        assert_eq!(event_count(&app, "gh").await, 1);
        // A repeated delivery-id header (one copy verified, another read as the key): refused.
        let mut doubled = github_headers(&secret, "d-3", b"{}");
        doubled.push(("x-github-delivery", "d-4".to_owned()));
        assert_problem(&app.deliver(&url, &doubled, b"{}").await, 400, None);
        let other = br#"{"ref":"refs/heads/dev"}"#;
        assert_eq!(app.deliver(&url, &github_headers(&secret, "d-5", other), other).await.status, 200);
        assert_eq!(event_count(&app, "gh").await, 2);
        // Standard Webhooks: a second webhook-id header is refused, the signed one counts.
        let created = app.post("/v1/webhooks", ADMIN_KEY, json!({"name": "std", "source": "std",
            "verifier": {"preset": "standard"}})).await;
        let url = created.body["webhook_url"].as_str().unwrap().replace("https://hooks.example.com", "");
        let secret = created.body["secret"].as_str().unwrap().to_owned();
        let ts = chrono::Utc::now().timestamp();
        let body = br#"{"type":"x"}"#;
        let mut headers = vec![
            ("content-type", "application/json".to_owned()),
            ("webhook-id", "msg_1".to_owned()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", switchboard::webhooks::sign::sign_standard(&secret, "msg_1", ts, body)),
        ];
        assert_eq!(app.deliver(&url, &headers, body).await.status, 200);
        headers.push(("webhook-id", "msg_2".to_owned()));
        assert_problem(&app.deliver(&url, &headers, body).await, 400, None);
        assert_eq!(event_count(&app, "std").await, 1);
    }

    async fn optional_bodies_and_query_bounds_are_strict(app: TestApp) {
        let created = app.post("/v1/webhooks", ADMIN_KEY, json!({"name": "r", "source": "r",
            "verifier": {"preset": "github"}})).await;
        let id = created.body["id"].as_str().unwrap().to_owned();
        let path = format!("/v1/webhooks/{id}/rotate-secret");
        for bad in [json!({"grace_period_s": "0"}), json!({"bogus": 1}), json!({"grace_period_s": -1})] {
            let resp = app.post(&path, ADMIN_KEY, bad.clone()).await;
            assert_eq!(resp.status, 422, "{bad}: {}", resp.text);
        }
        assert_problem(&app.send_raw("POST", &path, ADMIN_KEY, b"{".to_vec()).await, 400, None);
        let rotated = app.post(&path, ADMIN_KEY, json!({"grace_period_s": 0})).await;
        assert_eq!(rotated.status, 200, "{}", rotated.text);
        assert_eq!(app.send_raw("POST", &path, ADMIN_KEY, Vec::new()).await.status, 200);
        for list in ["/v1/webhooks", "/v1/websocket-sources", "/v1/automations", "/v1/api-keys"] {
            for query in ["offset=9223372036854775808", "offset=1000001", "limit=0", "limit=201", "offset=-1"] {
                let resp = app.get(&format!("{list}?{query}"), ADMIN_KEY).await;
                assert!(resp.status == 422 || resp.status == 400, "{list}?{query}: {}", resp.text);
                assert!(resp.content_type.starts_with("application/problem+json"));
            }
            assert_eq!(app.get(&format!("{list}?offset=1000000"), ADMIN_KEY).await.status, 200);
        }
        for slug in ["replay", "schedule"] {
            for (path, body) in [
                ("/v1/webhooks", json!({"name": "r", "source": slug, "verifier": {"preset": "github"}})),
                ("/v1/websocket-sources", json!({"name": "r", "source": slug, "kind": "generic",
                    "config": {"url": "wss://feed.example.com/"}})),
            ] {
                let resp = app.post(path, ADMIN_KEY, body).await;
                assert_problem(&resp, 422, Some("source"));
                assert!(resp.text.contains("reserved"), "{}", resp.text);
            }
        }
        // A value that does not parse is refused naming its parameter, whatever the parser says.
        for (query, field) in [
            ("/v1/events?limit=abc", "limit"),
            ("/v1/events?limit=-1", "limit"),
            ("/v1/runs?limit=99999999999999999999", "limit"),
            ("/v1/runs?automation_id=xyz", "automation_id"),
            ("/v1/runs?event_id=zzzzzzzz-0000-0000-0000-000000000000", "event_id"),
            ("/v1/webhooks?offset=abc", "offset"),
            ("/v1/events?color=red", "color"),
        ] {
            assert_problem(&app.get(query, ADMIN_KEY).await, 422, Some(field));
        }
    }

    async fn actions_refuse_bodies_they_do_not_take_and_bodies_must_be_json(app: TestApp) {
        let source = app.post("/v1/websocket-sources", ADMIN_KEY, json!({"name": "a", "source": "acts",
            "kind": "generic", "enabled": false, "config": {"url": "wss://feed.example.com/"}})).await;
        let id = source.body["id"].as_str().unwrap().to_owned();
        let run = uuid::Uuid::nil();
        let actions = [
            format!("/v1/websocket-sources/{id}/pause"),
            format!("/v1/websocket-sources/{id}/resume"),
            format!("/v1/websocket-sources/{id}/reconnect"),
            format!("/v1/runs/{run}/cancel"),
            format!("/v1/runs/{run}/retry"),
            format!("/v1/events/{run}/replay"),
            "/v1/cluster/drain".to_owned(),
        ];
        for path in &actions {
            // Nothing a client sends is silently ignored: a malformed body is a 400, a field a
            // 422 naming it.
            assert_problem(&app.send_raw("POST", path, ADMIN_KEY, b"garbage{".to_vec()).await, 400, None);
            assert_problem(&app.send_raw("POST", path, ADMIN_KEY, b"{\"x\": 1}".to_vec()).await, 422, Some("x"));
            assert_problem(&app.send_raw("POST", path, ADMIN_KEY, b"[1]".to_vec()).await, 422, Some("body"));
        }
        // No body, `{}` or `null` is what an action takes.
        for body in [Vec::new(), b"{}".to_vec(), b"null".to_vec()] {
            let resp = app.send_raw("POST", &actions[0], ADMIN_KEY, body).await;
            assert_eq!(resp.status, 202, "{}", resp.text);
        }
        // A disabled source has nothing to resume or reconnect: enabling it starts it.
        for action in [&actions[1], &actions[2]] {
            assert_problem(&app.send_raw("POST", action, ADMIN_KEY, Vec::new()).await, 409, None);
        }
        // A body that is not JSON by its headers is a 415; JSON types and no type are read.
        for (name, value) in [
            ("Content-Type", "text/plain"),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Content-Type", "application/xml"),
            ("Content-Encoding", "gzip"),
        ] {
            let resp = app.client.post(format!("{}/v1/expressions/evaluate", app.address))
                .insert_header(("Authorization", format!("Bearer {ADMIN_KEY}")))
                .insert_header((name, value))
                .send_body(r#"{"expression": "a", "data": {"a": 1}}"#)
                .await
                .unwrap();
            let resp = crate::helpers::read(resp).await;
            assert_problem(&resp, 415, None);
        }
        for value in [None, Some("application/json; charset=utf-8"), Some("application/merge-patch+json")] {
            let mut req = app.client.post(format!("{}/v1/expressions/evaluate", app.address))
                .insert_header(("Authorization", format!("Bearer {ADMIN_KEY}")));
            if let Some(value) = value {
                req = req.insert_header(("Content-Type", value));
            }
            let resp = crate::helpers::read(req.send_body(r#"{"expression": "a", "data": {"a": 1}}"#).await.unwrap()).await;
            assert_eq!(resp.status, 200, "{value:?}: {}", resp.text);
        }
    }

    async fn names_cannot_hide_what_they_show(app: TestApp) {
        for name in ["a\u{0007}b", "line\nbreak", "evil\u{202E}gnp.exe", "iso\u{2066}late"] {
            for (path, body) in [
                ("/v1/automations", json!({"name": name, "trigger": {"type": "event", "source": "x", "on": "*"}})),
                ("/v1/webhooks", json!({"name": name, "source": "named", "verifier": {"preset": "github"}})),
                ("/v1/api-keys", json!({"name": name, "role": "member"})),
            ] {
                assert_problem(&app.post(path, ADMIN_KEY, body).await, 422, Some("name"));
            }
        }
        let fine = app.post("/v1/api-keys", ADMIN_KEY, json!({"name": "Zoë's key — ключ", "role": "member"})).await;
        assert_eq!(fine.status, 201, "{}", fine.text);
    }

    async fn only_the_operators_admins_see_and_drain_the_cluster(app: TestApp) {
        // The cluster is every org's: another org's admin may neither read nor stop it.
        let other = app.new_org("other").await;
        assert_problem(&app.get("/v1/cluster", &other).await, 403, None);
        assert_problem(&app.request("POST", "/v1/cluster/drain", Some(&other), None).await, 403, None);
        assert_eq!(app.get("/v1/me", ADMIN_KEY).await.status, 200, "the service still runs");
        assert_eq!(app.get("/v1/cluster", ADMIN_KEY).await.status, 200);
    }

    async fn the_contract_holds_where_schemathesis_found_it_did_not(app: TestApp) {
        // U+0000 in a filter used to fail the query on PostgreSQL (503): refused up front.
        for path in ["/v1/events?source=a%00b", "/v1/events?event_key=%00", "/v1/runs?status=%00"] {
            assert_problem(&app.get(path, ADMIN_KEY).await, 422, None);
        }
        let nul = app.get("/v1/events?limit=2&source=x%00", ADMIN_KEY).await;
        assert_problem(&nul, 422, Some("source"));
        assert_problem(&app.get("/v1/events/%00/x", ADMIN_KEY).await, 422, Some("path"));
        // A documented path under another method: 405 naming the methods it has.
        let trace = app.send_raw("TRACE", "/healthz", ADMIN_KEY, Vec::new()).await;
        assert_problem(&trace, 405, None);
        assert_eq!(trace.headers.get("allow").unwrap(), "GET, HEAD");
        // HEAD is answered wherever GET is: the same status and headers, no body.
        for (path, status) in [("/healthz", 200), ("/v1/me", 200), ("/v1/runs/counts", 200)] {
            let head = app.request("HEAD", path, Some(ADMIN_KEY), None).await;
            assert_eq!(head.status, status, "HEAD {path}");
            assert!(head.text.is_empty(), "HEAD {path} has no body: {}", head.text);
        }
        assert_eq!(app.request("HEAD", "/v1/me", None, None).await.status, 401);
        let patch = app.send_raw("PATCH", "/v1/automations/test", ADMIN_KEY, b"{}".to_vec()).await;
        assert_problem(&patch, 405, None);
        assert_eq!(patch.headers.get("allow").unwrap(), "POST");
        assert_problem(&app.get("/v1/no-such-thing", ADMIN_KEY).await, 404, None);
        // JSON Schema's integers include 30.0; fractions are still refused.
        let token = app.post("/v1/stream/tokens", ADMIN_KEY, json!({"ttl_s": 30.0})).await;
        assert_eq!(token.status, 201, "{}", token.text);
        assert_eq!(token.body["ttl_s"], 30);
        let half = app.post("/v1/stream/tokens", ADMIN_KEY, json!({"ttl_s": 30.5})).await;
        assert_problem(&half, 422, Some("ttl_s"));
        // A body is an object, never an array of its fields; `null` is no body.
        let array = app.send_raw("POST", "/v1/stream/tokens", ADMIN_KEY, b"[]".to_vec()).await;
        assert_problem(&array, 422, Some("body"));
        let null = app.send_raw("POST", "/v1/stream/tokens", ADMIN_KEY, b"null".to_vec()).await;
        assert_eq!(null.status, 201, "{}", null.text);
        // A plain GET of the stream with a token that would not open it is a 401, like none.
        let plain = app.request("GET", "/v1/stream?token=sbs_not-a-token", None, None).await;
        assert_problem(&plain, 401, None);
    }
}

#[actix_web::test]
async fn key_use_is_recorded_off_the_request_path() {
    use sea_orm::TransactionTrait as _;
    let app = spawn_app(Backend::Sqlite).await;
    assert_eq!(app.get("/v1/me", ADMIN_KEY).await.status, 200);
    // Another writer holds SQLite's write lock: reads must not wait for it.
    let txn = app
        .db
        .begin_with_options(sea_orm::TransactionOptions {
            sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
            ..Default::default()
        })
        .await
        .unwrap();
    let started = std::time::Instant::now();
    for _ in 0..5 {
        assert_eq!(app.get("/v1/me", ADMIN_KEY).await.status, 200);
    }
    // Waiting for the lock would take the 10 s busy timeout per read; 8 s for all five leaves room
    // for a loaded machine without letting a wait pass.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "reads waited {:?}",
        started.elapsed()
    );
    txn.rollback().await.unwrap();
    // The use is written in the background once the lock is free (it retries while it is not).
    let recorded = crate::helpers::eventually(Duration::from_secs(15), || async {
        app.get("/v1/api-keys", ADMIN_KEY).await.body["items"][0]["last_used_at"].is_string()
    })
    .await;
    let keys = app.get("/v1/api-keys", ADMIN_KEY).await;
    assert!(recorded, "{}", keys.text);
}

#[actix_web::test]
async fn metrics_can_require_a_token() {
    let (mut settings, dir, pg) = crate::helpers::test_settings(Backend::Sqlite).await;
    settings.metrics_token = Some(secrecy::SecretString::from(
        "metrics-token-0123456789".to_owned(),
    ));
    let app = crate::helpers::spawn_with(Backend::Sqlite, settings, dir, pg).await;
    assert_problem(&app.request("GET", "/metrics", None, None).await, 401, None);
    assert_problem(&app.get("/metrics", ADMIN_KEY).await, 401, None);
    let ok = app.get("/metrics", "metrics-token-0123456789").await;
    assert_eq!(ok.status, 200);
    assert!(ok.text.contains("switchboard_sources"));
    let open = spawn_app(Backend::Sqlite).await;
    assert_eq!(
        open.request("GET", "/metrics", None, None).await.status,
        200
    );
}
