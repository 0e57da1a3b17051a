//! The `history` scenario: bulk-load events and runs through the storage layer's batch statements
//! (the inbox's event insert, PostgreSQL's `UNNEST` run insert, SQLite's dispatch commit), then
//! time the first and the 100th page of every documented filter of `GET /v1/events`,
//! `GET /v1/runs` and `GET /v1/automations/{id}/runs` over HTTP (p50/p99 of repeated requests).
//! Also `--without-history-indexes`: drops the indexes of migration m20261203_000001 (for the
//! firehose figure without them, same binary, same day).

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait as _, DatabaseConnection, DbBackend};
use serde_json::json;
use switchboard::db;
use uuid::Uuid;

use super::{Backend, Env, KEY, RunningApp, start_app};

/// Sources the events spread over.
const SOURCES: usize = 100;
/// Automations the runs spread over.
const AUTOMATIONS: usize = 20;
/// Events per batch statement.
const BATCH: usize = 5_000;
/// Timed requests per page and filter.
const SAMPLES: usize = 100;

/// Drops the history indexes (the firehose figure without them); only those named in
/// `HISTORY_DROP_ONLY` (comma-separated) when set, to price them one group at a time.
pub async fn drop_history_indexes(db: &DatabaseConnection) {
    let only = std::env::var("HISTORY_DROP_ONLY").ok();
    let wanted = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|n| n == name))
    };
    for name in [
        "ix_events_org_source",
        "ix_events_org_key",
        "ix_events_org_unmatched",
        "ix_runs_org",
        "ix_runs_automation",
        "ix_runs_org_source",
    ]
    .into_iter()
    .filter(|name| wanted(name))
    {
        db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
            .await
            .unwrap();
    }
    if db.get_database_backend() == DbBackend::Postgres && wanted("ix_events_undispatched") {
        db.execute_unprepared("DROP INDEX IF EXISTS ix_events_undispatched")
            .await
            .unwrap();
    }
}

/// Loads `events` events and two runs per dispatched event, then times the pages.
pub async fn history(backend: Backend, events: usize) {
    let env = Env::new(backend).await;
    let app = start_app(&env).await;
    let mut automations = Vec::with_capacity(AUTOMATIONS);
    for i in 0..AUTOMATIONS {
        let created = app
            .post(
                "/v1/automations",
                json!({"name": format!("h{i}"),
                "trigger": {"type": "event", "source": format!("s{}", i * 5), "on": "never.matches"}}),
            )
            .await;
        automations.push(created["id"].as_str().unwrap().parse::<Uuid>().unwrap());
    }
    let org: Uuid = app.get("/v1/me").await["org_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let started = Instant::now();
    let (stored, runs) = load(&app.db, org, &automations, events).await;
    if backend == Backend::Postgres {
        for table in ["events", "automation_runs"] {
            app.db
                .execute_unprepared(&format!("VACUUM ANALYZE {table}"))
                .await
                .unwrap();
        }
    }
    let load_s = started.elapsed().as_secs_f64();
    println!(
        "history   {:<9} loaded {stored} events and {runs} runs in {load_s:.0} s ({:.0} rows/s, with ANALYZE)",
        backend.name(),
        (stored + runs) as f64 / load_s
    );
    print_plans(&app.db, org, automations[3], events).await;
    let window = window_of(events);
    let a = automations[3];
    let paths = [
        "/v1/events".to_owned(),
        "/v1/events?source=s17".to_owned(),
        "/v1/events?event_key=k7".to_owned(),
        "/v1/events?status=dispatched".to_owned(),
        "/v1/events?status=no_key".to_owned(),
        "/v1/events?status=error".to_owned(),
        "/v1/events?status=received".to_owned(),
        format!("/v1/events?{window}"),
        format!("/v1/events?source=s17&{window}"),
        format!("/v1/events?event_key=k7&{window}"),
        "/v1/events?source=s17&status=dispatched".to_owned(),
        "/v1/runs".to_owned(),
        "/v1/runs?status=PENDING".to_owned(),
        "/v1/runs?status=SUCCEEDED".to_owned(),
        "/v1/runs?source=s17".to_owned(),
        format!("/v1/runs?automation_id={a}"),
        format!("/v1/runs?{window}"),
        format!("/v1/runs?status=PENDING&{window}"),
        format!("/v1/automations/{a}/runs"),
        format!("/v1/automations/{a}/runs?status=FAILED"),
        format!("/v1/automations/{a}/runs?{window}"),
    ];
    let mut worst = (0.0f64, String::new());
    for path in &paths {
        let (first, hundredth, pages) = page_timings(&app, path).await;
        println!(
            "history   {:<9} {path}: page 1 p50 {:.1} ms p99 {:.1} ms; page {pages} p50 {:.1} ms p99 {:.1} ms",
            backend.name(),
            first.0,
            first.1,
            hundredth.0,
            hundredth.1,
        );
        let p99 = first.1.max(hundredth.1);
        if p99 > worst.0 {
            worst = (p99, path.clone());
        }
    }
    println!(
        "history   {:<9} worst p99 {:.1} ms ({})",
        backend.name(),
        worst.0,
        worst.1
    );
    app.stop().await;
}

/// Prints the plan of each documented filter's first page (`EXPLAIN ANALYZE` on PostgreSQL,
/// `EXPLAIN QUERY PLAN` on SQLite), as recorded in docs/operations.md.
async fn print_plans(db: &DatabaseConnection, org: Uuid, automation: Uuid, events: usize) {
    use db::events::EventFilter;
    use db::runs::RunFilter;
    use db::statuses::{EventStatus, RunStatus};
    use db::window::IdWindow;
    use sea_orm::QueryTrait as _;
    let backend = db.get_database_backend();
    let text = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let window = IdWindow::parse(
        Some(&text(ms_of(events * 45 / 100))),
        Some(&text(ms_of(events * 55 / 100))),
    )
    .unwrap();
    let ev = |source: Option<&str>, key: Option<&str>, status: Option<&str>, window| EventFilter {
        source: source.map(Into::into),
        event_key: key.map(Into::into),
        status: status.map(|s| EventStatus::parse(s).unwrap()),
        window,
    };
    let none = IdWindow::default();
    let mut statements = vec![
        ("events", ev(None, None, None, none)),
        ("events source", ev(Some("s17"), None, None, none)),
        ("events event_key", ev(None, Some("k7"), None, none)),
        (
            "events status=dispatched",
            ev(None, None, Some("dispatched"), none),
        ),
        ("events status=no_key", ev(None, None, Some("no_key"), none)),
        (
            "events status=received",
            ev(None, None, Some("received"), none),
        ),
        ("events since+until", ev(None, None, None, window)),
        (
            "events source+since+until",
            ev(Some("s17"), None, None, window),
        ),
    ]
    .into_iter()
    .map(|(name, f)| {
        (
            name,
            db::events::events_page(backend, org, &f, None, 51).build(backend),
        )
    })
    .collect::<Vec<_>>();
    let run = |automation_id, source: Option<&str>, status: Option<&str>, window| RunFilter {
        automation_id,
        event_id: None,
        status: status.map(|s| RunStatus::parse(s).unwrap()),
        source: source.map(Into::into),
        window,
    };
    for (name, f) in [
        ("runs", run(None, None, None, none)),
        (
            "runs status=PENDING",
            run(None, None, Some("PENDING"), none),
        ),
        ("runs source", run(None, Some("s17"), None, none)),
        ("runs automation", run(Some(automation), None, None, none)),
        (
            "runs automation+status=FAILED",
            run(Some(automation), None, Some("FAILED"), none),
        ),
        ("runs since+until", run(None, None, None, window)),
    ] {
        statements.push((
            name,
            db::runs::runs_page(backend, org, &f, None, 51).build(backend),
        ));
    }
    let (prefix, column) = match backend {
        DbBackend::Postgres => ("EXPLAIN (ANALYZE, BUFFERS) ", "QUERY PLAN"),
        _ => ("EXPLAIN QUERY PLAN ", "detail"),
    };
    for (name, stmt) in statements {
        let explain = sea_orm::Statement {
            sql: format!("{prefix}{}", stmt.sql),
            ..stmt
        };
        println!("plan      {name}:");
        for row in db.query_all_raw(explain).await.unwrap() {
            println!("    {}", row.try_get::<String>("", column).unwrap());
        }
    }
}

/// `since` / `until` covering the middle tenth of the loaded history.
fn window_of(events: usize) -> String {
    let (lo, hi) = (ms_of(events * 45 / 100), ms_of(events * 55 / 100));
    let text = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            .replace('+', "%2B")
    };
    format!("since={}&until={}", text(lo), text(hi))
}

/// The loaded history starts at this millisecond: one event per millisecond, a week or so ago.
fn start_ms() -> i64 {
    static START: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *START.get_or_init(|| chrono::Utc::now().timestamp_millis() - 30 * 86_400_000)
}

fn ms_of(i: usize) -> i64 {
    start_ms() + i as i64
}

/// Status of event `i`: 1 % `no_key`, 0.5 % `error`, the last 0.01 % `received` (dispatch picks
/// those up at once: the filter then walks an empty backlog), the rest `dispatched`.
fn status_of(i: usize, total: usize) -> &'static str {
    if i % 100 == 42 {
        "no_key"
    } else if i % 200 == 77 {
        "error"
    } else if i + total / 10_000 >= total {
        "received"
    } else {
        "dispatched"
    }
}

/// Bulk-loads the history through the storage layer; returns (events, runs) stored.
async fn load(
    db: &DatabaseConnection,
    org: Uuid,
    automations: &[Uuid],
    events: usize,
) -> (usize, usize) {
    let backend = db.get_database_backend();
    let (mut stored, mut runs_stored) = (0, 0);
    let mut next_report = Instant::now() + Duration::from_secs(30);
    for start in (0..events).step_by(BATCH) {
        let end = (start + BATCH).min(events);
        let mut rows = Vec::with_capacity(end - start);
        let mut records = Vec::with_capacity(end - start);
        for i in start..end {
            let ms = ms_of(i);
            let mut bits = [0u8; 10];
            bits[..8].copy_from_slice(&(i as u64).to_be_bytes());
            bits[8..].copy_from_slice(&[0x5a, 0xa5]);
            let id = uuid::Builder::from_unix_timestamp_millis(ms as u64, &bits).into_uuid();
            let at = chrono::DateTime::from_timestamp_millis(ms).unwrap();
            let status = status_of(i, events);
            let source = format!("s{}", i % SOURCES);
            let failed = matches!(status, "no_key" | "error");
            rows.push(entity::event::Model {
                id,
                org_id: org,
                origin: "websocket".into(),
                source: source.clone(),
                source_id: None,
                dedup_key: format!("d{i}"),
                event_key: (status != "no_key").then(|| format!("k{}", i % 50)),
                raw: json!({"id": format!("d{i}"), "type": format!("k{}", i % 50),
                    "data": {"amount": i % 1000, "customer": format!("c{}", i % 7919)}}),
                payload: None,
                meta: json!({}),
                status: if status == "dispatched" {
                    "received"
                } else {
                    status
                }
                .into(),
                error: failed.then(|| "event_key_expr gave null".to_owned()),
                outcome: None,
                received_at: at,
                dispatched_at: failed.then_some(at),
                replay_key: None,
            });
            if status != "dispatched" {
                continue;
            }
            let mut run_rows = Vec::with_capacity(2);
            for (n, automation) in [
                automations[i % AUTOMATIONS],
                automations[(i + 7) % AUTOMATIONS],
            ]
            .into_iter()
            .enumerate()
            {
                let run_id = db::inbox::run_id(automation, id, ms as u64);
                let mut run = db::inbox::pending_run(run_id, org, automation, (id, &source));
                run.status = match (i + n) % 50 {
                    0 => "PENDING",
                    1 => "FAILED",
                    _ => "SUCCEEDED",
                }
                .into();
                run.created_at = at;
                run_rows.push(run);
            }
            records.push(db::inbox::DispatchRecord {
                event_id: id,
                outcome: json!([]),
                runs: run_rows,
            });
        }
        let inserted = db::inbox::insert_events(db, &rows).await.unwrap();
        stored += inserted.iter().filter(|s| **s).count();
        // The dispatch commit: runs inserted and events marked dispatched in one transaction
        // (PostgreSQL: one `UNNEST` statement each).
        for chunk in records.chunks(1_000) {
            runs_stored += db::inbox::commit_dispatch(db, chunk).await.unwrap().len();
        }
        if Instant::now() >= next_report {
            println!(
                "  ({} loaded {end} of {events} events, {runs_stored} runs)",
                match backend {
                    DbBackend::Postgres => "postgres",
                    _ => "sqlite",
                }
            );
            next_report = Instant::now() + Duration::from_secs(30);
        }
    }
    (stored, runs_stored)
}

/// p50/p99 in ms of the first page and of the 100th page (or the last, when fewer) of `path`.
async fn page_timings(app: &RunningApp, path: &str) -> ((f64, f64), (f64, f64), usize) {
    let sep = if path.contains('?') { '&' } else { '?' };
    let first = format!("{path}{sep}limit=50");
    let mut url = first.clone();
    let mut page = 1;
    let mut last = first.clone();
    while page < 100 {
        let body = app.get(&url).await;
        match body["next_cursor"].as_str() {
            Some(cursor) => {
                last = format!("{first}&cursor={cursor}");
                url = last.clone();
                page += 1;
            }
            None => break,
        }
    }
    let first_t = timings(app, &first).await;
    let last_t = timings(app, &last).await;
    (first_t, last_t, page)
}

async fn timings(app: &RunningApp, url: &str) -> (f64, f64) {
    let mut ms = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let t = Instant::now();
        let _ = app.get(url).await;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| ms[((ms.len() as f64 * p) as usize).min(ms.len() - 1)];
    (at(0.50), at(0.99))
}

impl RunningApp {
    /// `GET` with the admin key; panics unless 200.
    pub async fn get(&self, path: &str) -> serde_json::Value {
        let mut res = self
            .client
            .get(format!("{}{path}", self.base))
            .insert_header(("Authorization", format!("Bearer {KEY}")))
            .send()
            .await
            .unwrap();
        let value: serde_json::Value = res.json().limit(64 << 20).await.unwrap();
        assert!(res.status().is_success(), "{path}: {value}");
        value
    }
}
