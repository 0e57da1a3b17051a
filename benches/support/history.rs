//! The `history` scenario: bulk-load events and runs through the storage layer's batch statement
//! (the inbox writers' `insert_matched`: events already dispatched and their runs), then
//! time the first and the 100th page of every documented filter of `GET /v1/events`,
//! `GET /v1/runs` and `GET /v1/automations/{id}/runs` over HTTP (p50/p99 of repeated requests).
//! Also `--without-history-indexes`: drops the history indexes (migrations m20261202_000003 and
//! m20261204_000001; for the firehose figure without them, same binary, same day).

use std::time::Instant;

use sea_orm::{ConnectionTrait as _, DatabaseConnection, DbBackend, QueryTrait as _, Statement};
use serde_json::json;
use switchboard::db;
use switchboard::db::events::EventFilter;
use switchboard::db::runs::RunFilter;
use switchboard::db::statuses::{EventStatus, RunStatus};
use switchboard::db::window::IdWindow;
use uuid::Uuid;

use super::history_load::{self, ms_of};
use super::{Backend, Env, RunningApp, start_app};

/// Automations the runs spread over.
const AUTOMATIONS: usize = 20;
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
        "ix_runs_automation_status",
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
    let automations = create_automations(&app).await;
    let org: Uuid = app.get("/v1/me").await["org_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let started = Instant::now();
    let (stored, runs) = history_load::load(&app.db, org, &automations, events).await;
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
    let a = automations[3];
    print_plans(&app.db, org, a, events).await;
    let mut worst = (0.0f64, String::new());
    for path in &filter_paths(&window_of(events), a) {
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

/// [`AUTOMATIONS`] automations whose trigger never matches (the runs are loaded, not made).
async fn create_automations(app: &RunningApp) -> Vec<Uuid> {
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
    automations
}

/// Every documented filter, as the docs and the page use them; `a` is the automation of the
/// automation filters, `window` a `since`/`until` query.
fn filter_paths(window: &str, a: Uuid) -> [String; 21] {
    [
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
    ]
}

/// Prints the plan of each documented filter's first page (`EXPLAIN ANALYZE` on PostgreSQL,
/// `EXPLAIN QUERY PLAN` on SQLite), as recorded in docs/operations.md.
async fn print_plans(db: &DatabaseConnection, org: Uuid, automation: Uuid, events: usize) {
    let backend = db.get_database_backend();
    let window = IdWindow::parse(
        Some(&rfc3339(ms_of(events * 45 / 100))),
        Some(&rfc3339(ms_of(events * 55 / 100))),
    )
    .unwrap();
    let mut statements = event_statements(backend, org, window);
    statements.extend(run_statements(backend, org, automation, window));
    let (prefix, column) = match backend {
        DbBackend::Postgres => ("EXPLAIN (ANALYZE, BUFFERS) ", "QUERY PLAN"),
        _ => ("EXPLAIN QUERY PLAN ", "detail"),
    };
    for (name, stmt) in statements {
        let explain = Statement {
            sql: format!("{prefix}{}", stmt.sql),
            ..stmt
        };
        println!("plan      {name}:");
        for row in db.query_all_raw(explain).await.unwrap() {
            println!("    {}", row.try_get::<String>("", column).unwrap());
        }
    }
}

/// The first page of each event filter whose plan is recorded.
fn event_statements(
    backend: DbBackend,
    org: Uuid,
    window: IdWindow,
) -> Vec<(&'static str, Statement)> {
    let ev = |source: Option<&str>, key: Option<&str>, status: Option<&str>, window| EventFilter {
        source: source.map(Into::into),
        event_key: key.map(Into::into),
        status: status.map(|s| EventStatus::parse(s).unwrap()),
        window,
    };
    let none = IdWindow::default();
    [
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
    .collect()
}

/// The first page of each run filter whose plan is recorded.
fn run_statements(
    backend: DbBackend,
    org: Uuid,
    automation: Uuid,
    window: IdWindow,
) -> Vec<(&'static str, Statement)> {
    let run = |automation_id, source: Option<&str>, status: Option<&str>, window| RunFilter {
        automation_id,
        event_id: None,
        status: status.map(|s| RunStatus::parse(s).unwrap()),
        source: source.map(Into::into),
        window,
    };
    let none = IdWindow::default();
    let a = Some(automation);
    [
        ("runs", run(None, None, None, none)),
        (
            "runs status=PENDING",
            run(None, None, Some("PENDING"), none),
        ),
        ("runs source", run(None, Some("s17"), None, none)),
        ("runs automation", run(a, None, None, none)),
        (
            "runs automation+status=FAILED",
            run(a, None, Some("FAILED"), none),
        ),
        (
            "runs automation+status=PENDING",
            run(a, None, Some("PENDING"), none),
        ),
        ("runs since+until", run(None, None, None, window)),
    ]
    .into_iter()
    .map(|(name, f)| (name, db::runs::runs_page(backend, org, &f, None, 51)))
    .collect()
}

/// A millisecond as RFC 3339 (UTC, milliseconds).
fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `since` / `until` covering the middle tenth of the loaded history.
fn window_of(events: usize) -> String {
    let (lo, hi) = (ms_of(events * 45 / 100), ms_of(events * 55 / 100));
    let text = |ms: i64| rfc3339(ms).replace('+', "%2B");
    format!("since={}&until={}", text(lo), text(hi))
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
