//! `POST /v1/expressions/evaluate`, including every JMESPath compliance case through the API.
use std::path::Path;

use serde_json::{Value, json};
use switchboard::pipeline::expr::to_value;

use crate::helpers::{ADMIN_KEY, Backend, assert_problem, spawn_app};

const SUITE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/jmespath");

#[actix_web::test]
async fn evaluates_with_custom_functions_and_reports_errors() {
    let app = spawn_app(Backend::Sqlite).await;
    let ok = app.post("/v1/expressions/evaluate", ADMIN_KEY, json!({"expression": "icontains(title, 'URGENT') && amount > `100`", "data": {"title": "an urgent order", "amount": 150}})).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.body["result"], true);
    let glob = app.post("/v1/expressions/evaluate", ADMIN_KEY, json!({"expression": "[glob(a, 'order.*'), lower(b), upper(b), regex(a, 'ord[a-z]+')]", "data": {"a": "order.created", "b": "MiXed"}})).await;
    assert_eq!(glob.body["result"], json!([true, "mixed", "MIXED", true]));
    let syntax = app
        .post(
            "/v1/expressions/evaluate",
            ADMIN_KEY,
            json!({"expression": "a.[", "data": {}}),
        )
        .await;
    assert_problem(&syntax, 422, Some("expression"));
    assert!(
        syntax.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("syntax")
    );
    let runtime = app
        .post(
            "/v1/expressions/evaluate",
            ADMIN_KEY,
            json!({"expression": "length(a)", "data": {"a": 5}}),
        )
        .await;
    assert_problem(&runtime, 422, Some("expression"));
    assert!(
        runtime.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid-type")
    );
    let missing = app
        .post(
            "/v1/expressions/evaluate",
            ADMIN_KEY,
            json!({"expression": "a"}),
        )
        .await;
    assert_problem(&missing, 422, Some("data"));
    let anonymous = app
        .request(
            "POST",
            "/v1/expressions/evaluate",
            None,
            Some(json!({"expression": "a", "data": {}})),
        )
        .await;
    assert_problem(&anonymous, 401, None);
}

#[actix_web::test]
async fn every_compliance_case_passes_through_the_api() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut passed = 0;
    let mut failures = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(SUITE_DIR)
        .expect("suite dir")
        .map(|e| e.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 15);
    for file in files {
        let suites: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let name = Path::new(&file)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        for suite in &suites {
            for case in suite["cases"].as_array().unwrap() {
                let expression = case["expression"].as_str().unwrap();
                let resp = app
                    .post(
                        "/v1/expressions/evaluate",
                        ADMIN_KEY,
                        json!({"expression": expression, "data": suite["given"]}),
                    )
                    .await;
                let outcome = match (case.get("error"), resp.status) {
                    (Some(kind), 422) => {
                        let message = resp.body["errors"][0]["message"]
                            .as_str()
                            .unwrap_or_default();
                        message
                            .starts_with(kind.as_str().unwrap())
                            .then_some(())
                            .ok_or(format!("expected {kind}, got {message}"))
                    }
                    (None, 200) => (to_value(&resp.body["result"]) == to_value(&case["result"]))
                        .then_some(())
                        .ok_or(format!(
                            "expected {}, got {}",
                            case["result"], resp.body["result"]
                        )),
                    (_, status) => Err(format!("status {status}: {}", resp.text)),
                };
                match outcome {
                    Ok(()) => passed += 1,
                    Err(why) => failures.push(format!("{name}: `{expression}`: {why}")),
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures ({passed} passed):\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(passed, 892, "every compliance case ran");
}
