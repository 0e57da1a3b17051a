//! Batch completions and failures on both engines: one batch mixing fresh and stale tokens,
//! a cancelled run, a repeat, a missing run and a repeated id answers per item and changes only
//! the runs it may (each batch is one statement per engine, `db::queue::finish`).
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{ADMIN_KEY, TestApp, assert_problem};
use crate::workers::{claim, enqueue, queue_setup, worker_key};

fn path(run: &Value, op: &str) -> String {
    format!("/v1/runs/{}/{op}", run["id"].as_str().unwrap())
}

async fn shown(app: &TestApp, run: &Value) -> Value {
    let shown = app
        .get(
            &format!("/v1/runs/{}", run["id"].as_str().unwrap()),
            ADMIN_KEY,
        )
        .await;
    assert_eq!(shown.status, 200, "{}", shown.text);
    shown.body
}

/// `(ok, status, reason)` of each item of a batch answer.
fn verdicts(answer: &Value) -> Vec<(bool, Value, Value)> {
    answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["ok"] == true, i["status"].clone(), i["reason"].clone()))
        .collect()
}

both_backends! {
    async fn a_mixed_completion_batch_applies_only_the_fresh_tokens(app: TestApp) {
        let key = worker_key(&app).await;
        let (url, automation) = queue_setup(&app, json!({})).await;
        enqueue(&app, &url, &automation, 0, 5).await;
        let runs = claim(&app, &key, json!({"limit": 5})).await;
        assert_eq!(runs.len(), 5);
        let cancelled = app.post(&path(&runs[3], "cancel"), ADMIN_KEY, json!({})).await;
        assert_eq!(cancelled.status, 200, "{}", cancelled.text);
        let done = app.post(&path(&runs[4], "complete"), &key, json!({"lease_token": runs[4]["lease_token"], "result": {"first": true}})).await;
        assert_eq!(done.status, 200, "{}", done.text);
        let item = |run: &Value, token: &Value, result: Value| json!({"id": run["id"], "lease_token": token, "result": result});
        let batch = json!({"items": [
            item(&runs[0], &runs[0]["lease_token"], json!({"n": 0})),
            item(&runs[1], &json!("lt_stale"), json!({"n": 1})),
            item(&runs[2], &runs[2]["lease_token"], json!({"n": 2})),
            item(&runs[3], &runs[3]["lease_token"], json!({"n": 3})),
            item(&runs[4], &runs[4]["lease_token"], json!({"second": true})),
            {"id": uuid::Uuid::now_v7(), "lease_token": "lt_nobody"},
            item(&runs[0], &runs[0]["lease_token"], json!({"again": true})),
        ]});
        let answer = app.post("/v1/runs/complete", &key, batch).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(verdicts(&answer.body), vec![
            (true, json!("SUCCEEDED"), Value::Null),
            (false, json!("RUNNING"), json!("lease_lost")),
            (true, json!("SUCCEEDED"), Value::Null),
            (false, json!("CANCELLED"), json!("cancelled")),
            // A repeated completion with the same token: harmless, nothing changes.
            (true, json!("SUCCEEDED"), Value::Null),
            (false, Value::Null, json!("not_found")),
            // The same id again in the batch: the first occurrence applied; this one repeats it.
            (true, json!("SUCCEEDED"), Value::Null),
        ], "{}", answer.text);
        // Only the fresh tokens changed their runs, with the first result given.
        let first = shown(&app, &runs[0]).await;
        assert_eq!((first["status"].clone(), first["result"].clone()), (json!("SUCCEEDED"), json!({"n": 0})));
        assert!(first["completed_at"].is_string() && first["lease_expires_at"].is_null(), "{first}");
        let stale = shown(&app, &runs[1]).await;
        assert_eq!((stale["status"].clone(), stale["result"].clone()), (json!("RUNNING"), Value::Null));
        assert!(stale["lease_expires_at"].is_string(), "{stale}");
        assert_eq!(shown(&app, &runs[2]).await["result"], json!({"n": 2}));
        let kept = shown(&app, &runs[3]).await;
        assert_eq!((kept["status"].clone(), kept["result"].clone()), (json!("CANCELLED"), Value::Null));
        assert_eq!(shown(&app, &runs[4]).await["result"], json!({"first": true}));
    }

    async fn a_mixed_failure_batch_retries_fails_and_refuses_per_item(app: TestApp) {
        let key = worker_key(&app).await;
        let (url, automation) = queue_setup(&app, json!({"retry": {"max_attempts": 2, "initial_backoff_s": 0, "max_backoff_s": 1}})).await;
        enqueue(&app, &url, &automation, 0, 4).await;
        let runs = claim(&app, &key, json!({"limit": 4})).await;
        assert_eq!(runs.len(), 4);
        let done = app.post(&path(&runs[3], "complete"), &key, json!({"lease_token": runs[3]["lease_token"]})).await;
        assert_eq!(done.status, 200, "{}", done.text);
        let item = |run: &Value, token: &Value, more: Value| {
            let mut i = json!({"id": run["id"], "lease_token": token, "error": format!("boom {}", run["id"])});
            for (k, v) in more.as_object().unwrap() {
                i[k] = v.clone();
            }
            i
        };
        // No backoff for a run that is not retried.
        let pointless = app.post("/v1/runs/fail", &key, json!({"items": [
            item(&runs[0], &runs[0]["lease_token"], json!({"retry": false, "retry_after_s": 5})),
        ]})).await;
        assert_problem(&pointless, 422, Some("items[0].retry_after_s"));
        let batch = json!({"items": [
            item(&runs[0], &runs[0]["lease_token"], json!({"retry_after_s": 3600})),
            item(&runs[1], &runs[1]["lease_token"], json!({"retry": false})),
            item(&runs[2], &json!("lt_stale"), json!({})),
            item(&runs[3], &runs[3]["lease_token"], json!({})),
        ]});
        let answer = app.post("/v1/runs/fail", &key, batch).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(verdicts(&answer.body), vec![
            (true, json!("PENDING"), Value::Null),
            (true, json!("FAILED"), Value::Null),
            (false, json!("RUNNING"), json!("lease_lost")),
            (false, json!("SUCCEEDED"), json!("finished")),
        ], "{}", answer.text);
        let retried = shown(&app, &runs[0]).await;
        assert_eq!(retried["status"], "PENDING");
        assert_eq!(retried["error_detail"], format!("boom {}", runs[0]["id"]));
        assert!(retried["completed_at"].is_null() && retried["lease_expires_at"].is_null(), "{retried}");
        let available: chrono::DateTime<chrono::Utc> = serde_json::from_value(retried["available_at"].clone()).unwrap();
        assert!(available > chrono::Utc::now() + chrono::Duration::minutes(50), "{retried}");
        let failed = shown(&app, &runs[1]).await;
        assert_eq!(failed["status"], "FAILED");
        assert_eq!(failed["error_detail"], format!("boom {}", runs[1]["id"]));
        assert!(failed["completed_at"].is_string(), "{failed}");
        let untouched = shown(&app, &runs[2]).await;
        assert_eq!((untouched["status"].clone(), untouched["error_detail"].clone()), (json!("RUNNING"), Value::Null));
        // The retried run waits out the worker's delay: nothing is claimable now.
        assert!(claim(&app, &key, json!({"limit": 4})).await.is_empty());
    }
}
