//! `GET /v1/runs/counts` on both engines: every status counted for the caller's org (open runs
//! all, finished runs of the window), the window and the cap applied, bad queries refused naming
//! the field, and every count read from one index range with a bounded number of rows (no table
//! scan, whatever the size of the runs table).
use chrono::Utc;
use sea_orm::{ConnectionTrait as _, DbBackend, Statement};
use serde_json::json;
use switchboard::db::run_counts::{count_runs_by_status, count_statement};
use switchboard::db::statuses::RunStatus;
use switchboard::db::window::first_id_at;

use crate::both_backends;
use crate::events_runs::org_of;
use crate::helpers::{ADMIN_KEY, TestApp, assert_problem};
use crate::history::load;
use crate::workers::{claim, enqueue, queue_setup, worker_key};

/// Posts `op` for a claimed `run` with its lease token (and `extra`).
async fn finish(
    app: &TestApp,
    key: &str,
    run: &serde_json::Value,
    op: &str,
    extra: serde_json::Value,
) {
    let mut body = extra;
    body["lease_token"] = run["lease_token"].clone();
    let path = format!("/v1/runs/{}/{op}", run["id"].as_str().unwrap());
    let resp = app.post(&path, key, body).await;
    assert_eq!(resp.status, 200, "{}", resp.text);
}

both_backends! {
    async fn runs_are_counted_by_status(app: TestApp) {
        let key = worker_key(&app).await;
        let (url, automation) = queue_setup(&app, json!({})).await;
        enqueue(&app, &url, &automation, 0, 6).await;
        let held = claim(&app, &key, json!({"limit": 3})).await;
        assert_eq!(held.len(), 3);
        finish(&app, &key, &held[0], "complete", json!({})).await;
        finish(&app, &key, &held[1], "fail", json!({"error": "no", "retry": false})).await;
        let pending = app.get("/v1/runs?status=PENDING&limit=1", ADMIN_KEY).await;
        let cancel = format!("/v1/runs/{}/cancel", pending.body["items"][0]["id"].as_str().unwrap());
        assert_eq!(app.post(&cancel, ADMIN_KEY, json!({})).await.status, 200);

        // Every role may read them.
        for caller in [ADMIN_KEY, key.as_str()] {
            let counts = app.get("/v1/runs/counts", caller).await;
            assert_eq!(counts.status, 200, "{}", counts.text);
            let expected = json!({"PENDING": 2, "RUNNING": 1, "SUCCEEDED": 1, "FAILED": 1, "CANCELLED": 1});
            assert_eq!(counts.body["counts"], expected, "{}", counts.text);
            assert_eq!(counts.body["capped"], json!([]));
            assert_eq!(counts.body["cap"], 10_000);
            assert_eq!(counts.body["window_s"], 86_400);
            let since: chrono::DateTime<Utc> = serde_json::from_value(counts.body["finished_since"].clone()).unwrap();
            let off = (Utc::now() - chrono::Duration::days(1) - since).num_seconds().abs();
            assert!(off < 60, "{since}");
        }
        let minute = app.get("/v1/runs/counts?window_s=60", ADMIN_KEY).await;
        assert_eq!(minute.body["counts"]["SUCCEEDED"], 1, "{}", minute.text);

        // The window and the cap, through the storage layer.
        let org = org_of(&app, ADMIN_KEY).await;
        let later = first_id_at(Utc::now() + chrono::Duration::hours(1));
        let counted = count_runs_by_status(&app.db, org, later, 1).await.unwrap();
        let shown: Vec<_> = counted.iter().map(|c| (c.status.as_str(), c.count, c.capped)).collect();
        let expected = [("PENDING", 1, true), ("RUNNING", 1, false), ("SUCCEEDED", 0, false),
            ("FAILED", 0, false), ("CANCELLED", 0, false)];
        assert_eq!(shown, expected);

        for query in ["window_s=59", "window_s=604801", "window_s=soon", "window=60"] {
            let field = if query.starts_with("window=") { "window" } else { "window_s" };
            assert_problem(&app.get(&format!("/v1/runs/counts?{query}"), ADMIN_KEY).await, 422, Some(field));
        }
        let other = app.request("POST", "/v1/runs/counts", Some(ADMIN_KEY), None).await;
        assert_eq!(other.status, 405, "{}", other.text);
    }

    async fn run_counts_read_bounded_index_ranges(app: TestApp) {
        let h = load(&app, 6_000, 4, 2).await;
        let backend = app.db.get_database_backend();
        if backend == DbBackend::Postgres {
            app.db.execute_unprepared("ANALYZE events; ANALYZE automation_runs").await.unwrap();
        }
        let org = org_of(&app, ADMIN_KEY).await;
        // The counts match the loaded runs, all of them within the default window.
        let counts = app.get("/v1/runs/counts", ADMIN_KEY).await;
        for status in RunStatus::ALL {
            let loaded = h.runs.iter().filter(|r| r.status == status.as_str()).count();
            assert_eq!(counts.body["counts"][status.as_str()], loaded, "{status:?}: {}", counts.text);
        }
        let from = first_id_at(Utc::now() - chrono::Duration::days(1));
        let mut failures = Vec::new();
        for status in RunStatus::ALL {
            let from = status.is_terminal().then_some(from);
            let statement = count_statement(backend, org, status, from, 10_000);
            failures.extend(bounded_index_plan(&app, statement, status.as_str()).await);
        }
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    }
}

/// `EXPLAIN`s a count and checks that it reads an index of `automation_runs` in order under a
/// `LIMIT`: no sequential or full table scan, no sort. `Some(why)` when it does not.
async fn bounded_index_plan(app: &TestApp, stmt: Statement, what: &str) -> Option<String> {
    let backend = stmt.db_backend;
    let limited = stmt.sql.contains("LIMIT");
    let plan = crate::helpers::explain(app, stmt).await;
    let text = plan.join("\n");
    let wrong = if !limited {
        Some("has no LIMIT".to_owned())
    } else if backend == DbBackend::Postgres {
        // Walking the primary key backwards, checking org and status, is what PostgreSQL picks
        // for a status most rows have: it stops at the limit, as the status index would. For a
        // status few rows have it reads the status's range of the index as a bitmap and sorts
        // those rows: only the rows it counts, so that sort is no table-sized one.
        let ranged = text.contains("Bitmap Index Scan on ix_runs_org_status");
        if text.contains("Seq Scan") {
            Some("has a Seq Scan step".to_owned())
        } else if text.contains("Sort") && !ranged {
            Some("sorts rows it did not read from the status's range".to_owned())
        } else {
            let index = text.contains("ix_runs_") || text.contains("automation_runs_pkey");
            (!index).then(|| "reads no runs index".to_owned())
        }
    } else if plan
        .iter()
        .any(|line| line.contains("SCAN automation_runs") && !line.contains("INDEX"))
    {
        Some("scans the table".to_owned())
    } else {
        (!text.contains("ix_runs_")).then(|| "reads no runs index".to_owned())
    };
    wrong.map(|why| format!("count of {what} ({backend:?}) {why}:\n{text}"))
}

/// Not a check but a measurement (docs/benchmarks.md): `GET /v1/runs/counts` over about
/// 150,000 runs (100,000 events, and the runs the recovery sweep adds for the undispatched ones
/// when it passes during the load), median and worst of 20 calls.
/// `cargo test --test api -- --ignored run_counts_cost --nocapture`
async fn run_counts_cost(app: TestApp) {
    let loaded = std::time::Instant::now();
    let h = load(&app, 100_000, 4, 2).await;
    let backend = app.db.get_database_backend();
    if backend == DbBackend::Postgres {
        // What autovacuum does to a table that grew: statistics and the visibility map (which
        // lets a count read the index alone).
        app.db
            .execute_unprepared("VACUUM ANALYZE automation_runs")
            .await
            .unwrap();
    }
    let load_s = loaded.elapsed().as_secs_f64();
    let mut took = Vec::new();
    let mut last = serde_json::Value::Null;
    for _ in 0..20 {
        let started = std::time::Instant::now();
        let counts = app.get("/v1/runs/counts", ADMIN_KEY).await;
        took.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(counts.status, 200, "{}", counts.text);
        last = counts.body;
    }
    took.sort_by(f64::total_cmp);
    eprintln!(
        "run_counts_cost {backend:?}: {} runs (loaded in {load_s:.1} s); GET /v1/runs/counts \
         median {:.1} ms, worst {:.1} ms; {} capped {}",
        h.runs.len(),
        took[10],
        took[19],
        last["counts"],
        last["capped"]
    );
}

#[actix_web::test]
#[ignore = "a measurement, run by hand"]
async fn run_counts_cost_sqlite() {
    run_counts_cost(crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await).await;
}

#[actix_web::test]
#[ignore = "a measurement, run by hand"]
async fn run_counts_cost_postgres() {
    run_counts_cost(crate::helpers::spawn_app(crate::helpers::Backend::Postgres).await).await;
}
