//! History at scale: every filter of the event and run lists (with `since` / `until`) gives the
//! right rows page after page, bad windows are refused naming the field, and each documented
//! filter is answered from an index in cursor order (no sort step), on both engines. Rows are
//! bulk-loaded through the storage layer's batch statements.
use chrono::{DateTime, SecondsFormat};
use sea_orm::{ConnectionTrait as _, DbBackend, QueryTrait as _, Statement};
use serde_json::json;
use switchboard::db::statuses::{EventStatus, RunStatus};
use switchboard::db::window::IdWindow;
use switchboard::db::{self, events::EventFilter, inbox::DispatchRecord, runs::RunFilter};
use uuid::Uuid;

use crate::both_backends;
use crate::events_runs::org_of;
use crate::helpers::{ADMIN_KEY, TestApp, assert_problem};

/// One generated event, as the tests know it.
#[derive(Debug, Clone)]
pub struct Ev {
    id: Uuid,
    ms: i64,
    source: String,
    key: Option<String>,
    status: &'static str,
}

/// One generated run.
#[derive(Debug, Clone)]
pub struct Run {
    pub id: Uuid,
    pub ms: i64,
    automation: Uuid,
    event: Uuid,
    source: String,
    pub status: &'static str,
}

/// What was loaded.
pub struct History {
    events: Vec<Ev>,
    pub runs: Vec<Run>,
    automations: Vec<Uuid>,
}

fn status_of(i: usize) -> &'static str {
    if i % 97 == 5 {
        "no_key"
    } else if i % 101 == 7 {
        "error"
    } else if i % 89 == 3 {
        "received"
    } else {
        "dispatched"
    }
}

/// Loads `n` events over `sources` sources, one per 10 ms, ending about now, and their runs over
/// `automations` automations: each dispatched event has a run of one automation, every other one
/// a run of a second; one run in 25 is `PENDING`, one in 25 `FAILED`.
pub async fn load(app: &TestApp, n: usize, sources: usize, automations: usize) -> History {
    let org = org_of(app, ADMIN_KEY).await;
    let automations = create_automations(app, automations).await;
    let start = chrono::Utc::now().timestamp_millis() - 10 * i64::try_from(n).unwrap() - 1000;
    let mut events = Vec::with_capacity(n);
    let mut runs = Vec::new();
    let mut rows = Vec::with_capacity(n);
    let mut records = Vec::new();
    for i in 0..n {
        let ms = start + 10 * i64::try_from(i).unwrap();
        let (ev, row) = event_of(i, ms, org, sources);
        if ev.status == "dispatched" {
            let (record, made) = dispatch_of(i, &ev, org, &automations);
            records.push(record);
            runs.extend(made);
        }
        events.push(ev);
        rows.push(row);
    }
    for chunk in rows.chunks(1000) {
        let stored = db::inbox::insert_events(&app.db, chunk).await.unwrap();
        assert!(stored.iter().all(|s| *s));
    }
    for chunk in records.chunks(500) {
        db::inbox::commit_dispatch(&app.db, chunk).await.unwrap();
    }
    History {
        events,
        runs,
        automations,
    }
}

/// `count` automations of source `s0`, through the API.
async fn create_automations(app: &TestApp, count: usize) -> Vec<Uuid> {
    let mut automations = Vec::with_capacity(count);
    for name in 0..count {
        let created = app
            .post(
                "/v1/automations",
                ADMIN_KEY,
                json!({"name": format!("a{name}"), "trigger": {"type": "event", "source": "s0", "on": "*"}}),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        automations.push(created.body["id"].as_str().unwrap().parse().unwrap());
    }
    automations
}

/// Event `i`, received at `ms`, as the tests know it and as stored (a `dispatched` one is stored
/// `received` and dispatched by the commit of [`dispatch_of`]).
fn event_of(i: usize, ms: i64, org: Uuid, sources: usize) -> (Ev, entity::event::Model) {
    let id = uuid::Builder::from_unix_timestamp_millis(
        u64::try_from(ms).unwrap(),
        Uuid::new_v4().as_bytes()[..10].try_into().unwrap(),
    )
    .into_uuid();
    let at = DateTime::from_timestamp_millis(ms).unwrap();
    let status = status_of(i);
    let source = format!("s{}", i % sources);
    let key = (status != "no_key").then(|| format!("k{}", i % 13));
    let row = entity::event::Model {
        id,
        org_id: org,
        origin: "websocket".into(),
        source: source.clone(),
        source_id: None,
        dedup_key: id.to_string(),
        event_key: key.clone(),
        raw: json!({"i": i}),
        payload: None,
        meta: json!({}),
        status: if status == "dispatched" {
            "received"
        } else {
            status
        }
        .into(),
        error: matches!(status, "no_key" | "error").then(|| "why".to_owned()),
        outcome: None,
        received_at: at,
        dispatched_at: matches!(status, "no_key" | "error").then_some(at),
        replay_key: None,
    };
    let ev = Ev {
        id,
        ms,
        source,
        key,
        status,
    };
    (ev, row)
}

/// The dispatch of event `i`: a run of one automation and, for every other event (when there are
/// two or more automations), of the next one.
fn dispatch_of(i: usize, ev: &Ev, org: Uuid, automations: &[Uuid]) -> (DispatchRecord, Vec<Run>) {
    let count = automations.len();
    let mut record_runs = Vec::new();
    let mut runs = Vec::new();
    for (second, automation) in [
        (false, automations[i % count]),
        (true, automations[(i + 1) % count]),
    ] {
        if second && (i % 2 == 1 || count == 1) {
            continue;
        }
        let run_status = match (i + usize::from(second)) % 25 {
            0 => "PENDING",
            1 => "FAILED",
            _ => "SUCCEEDED",
        };
        let run_id = db::inbox::run_id(automation, ev.id, u64::try_from(ev.ms).unwrap());
        let mut run = db::inbox::pending_run(run_id, org, automation, (ev.id, &ev.source));
        run.status = run_status.into();
        runs.push(Run {
            id: run_id,
            ms: ev.ms,
            automation,
            event: ev.id,
            source: ev.source.clone(),
            status: run_status,
        });
        record_runs.push(run);
    }
    let record = DispatchRecord {
        event_id: ev.id,
        outcome: json!([]),
        runs: record_runs,
    };
    (record, runs)
}

fn rfc3339(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Every id of a list, following `next_cursor` with pages of `limit`.
async fn all_pages(app: &TestApp, path: &str, limit: usize) -> Vec<Uuid> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut url = format!("{path}{sep}limit={limit}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page = app.get(&url, ADMIN_KEY).await;
        assert_eq!(page.status, 200, "{url}: {}", page.text);
        assert!(
            page.body.get("total").is_none(),
            "cursor lists carry no total"
        );
        let items = page.body["items"].as_array().unwrap();
        assert!(items.len() <= limit);
        ids.extend(
            items
                .iter()
                .map(|i| i["id"].as_str().unwrap().parse::<Uuid>().unwrap()),
        );
        match page.body["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(items.len(), limit, "{url}: a short page has no next cursor");
                cursor = Some(c.to_owned());
            }
            None => break,
        }
        assert!(ids.len() < 100_000, "{url}: paging does not end");
    }
    ids
}

fn newest_first<T>(rows: &[T], keep: impl Fn(&T) -> bool, id: impl Fn(&T) -> Uuid) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = rows.iter().filter(|r| keep(r)).map(id).collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids
}

both_backends! {
    async fn history_filters_and_windows_page_correctly(app: TestApp) {
        let h = load(&app, 600, 4, 2).await;
        let (lo, hi) = (h.events[150].ms, h.events[420].ms);
        let (since, until) = (rfc3339(lo), rfc3339(hi));
        let in_window = |ms: i64| ms >= lo && ms <= hi;
        type EvCase<'a> = (String, Box<dyn Fn(&Ev) -> bool + 'a>);
        let event_cases: Vec<EvCase> = vec![
            (String::new(), Box::new(|_| true)),
            ("source=s1".into(), Box::new(|e| e.source == "s1")),
            ("event_key=k4".into(), Box::new(|e| e.key.as_deref() == Some("k4"))),
            ("status=no_key".into(), Box::new(|e| e.status == "no_key")),
            ("status=error".into(), Box::new(|e| e.status == "error")),
            ("status=received".into(), Box::new(|e| e.status == "received")),
            ("status=dispatched".into(), Box::new(|e| e.status == "dispatched")),
            ("source=s2&status=dispatched".into(), Box::new(|e| e.source == "s2" && e.status == "dispatched")),
            ("source=s3&event_key=k3".into(), Box::new(|e| e.source == "s3" && e.key.as_deref() == Some("k3"))),
            (format!("since={since}"), Box::new(|e| e.ms >= lo)),
            (format!("until={until}"), Box::new(|e| e.ms <= hi)),
            (format!("since={since}&until={until}"), Box::new(|e| in_window(e.ms))),
            (format!("source=s0&since={since}&until={until}"), Box::new(|e| e.source == "s0" && in_window(e.ms))),
            (format!("event_key=k1&since={since}"), Box::new(|e| e.key.as_deref() == Some("k1") && e.ms >= lo)),
            (format!("status=error&until={until}"), Box::new(|e| e.status == "error" && e.ms <= hi)),
        ];
        for (query, keep) in &event_cases {
            let path = format!("/v1/events?{}", query.replace('+', "%2B"));
            let expected = newest_first(&h.events, keep, |e| e.id);
            assert!(!expected.is_empty(), "{query}: the data should hold some");
            let got = all_pages(&app, &path, 37).await;
            assert!(got == expected, "{query}: got {} ids, expected {}", got.len(), expected.len());
        }
        let a = h.automations[0];
        let b = h.automations[1];
        type RunCase<'a> = (String, Box<dyn Fn(&Run) -> bool + 'a>);
        let run_cases: Vec<RunCase> = vec![
            ("/v1/runs?".into(), Box::new(|_| true)),
            ("/v1/runs?status=PENDING".into(), Box::new(|r| r.status == "PENDING")),
            (format!("/v1/runs?automation_id={b}"), Box::new(|r| r.automation == b)),
            ("/v1/runs?source=s2".into(), Box::new(|r| r.source == "s2")),
            (format!("/v1/runs?automation_id={b}&source=s2"), Box::new(|r| r.automation == b && r.source == "s2")),
            (format!("/v1/runs?since={since}&until={until}"), Box::new(|r| in_window(r.ms))),
            (format!("/v1/runs?source=s1&status=SUCCEEDED&since={since}"), Box::new(|r| r.source == "s1" && r.status == "SUCCEEDED" && r.ms >= lo)),
            (format!("/v1/automations/{a}/runs?"), Box::new(|r| r.automation == a)),
            (format!("/v1/automations/{b}/runs?status=FAILED"), Box::new(|r| r.automation == b && r.status == "FAILED")),
            (format!("/v1/automations/{a}/runs?until={until}"), Box::new(|r| r.automation == a && r.ms <= hi)),
            (format!("/v1/runs?event_id={}", h.runs[10].event), Box::new(|r| r.event == h.runs[10].event)),
        ];
        for (path, keep) in &run_cases {
            let path = path.replace('+', "%2B");
            let expected = newest_first(&h.runs, keep, |r| r.id);
            assert!(!expected.is_empty(), "{path}: the data should hold some");
            let got = all_pages(&app, path.trim_end_matches('?'), 41).await;
            assert!(got == expected, "{path}: got {} ids, expected {}", got.len(), expected.len());
        }
    }

    async fn history_refuses_bad_windows_naming_the_field(app: TestApp) {
        for base in ["/v1/events", "/v1/runs"] {
            for (query, field) in [
                ("since=yesterday", "since"),
                ("until=2026-13-01T00:00:00Z", "until"),
                ("since=2026-12-03", "since"),
                ("since=1960-01-01T00:00:00Z", "since"),
                ("since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", "until"),
                // No source could have these slugs: an empty page would hide the typo.
                ("source=S1", "source"),
                ("source=my%20source", "source"),
                ("source=", "source"),
                ("source=-s1", "source"),
            ] {
                assert_problem(&app.get(&format!("{base}?{query}"), ADMIN_KEY).await, 422, Some(field));
            }
            let same = app.get(&format!("{base}?since=2026-01-01T00:00:00Z&until=2026-01-01T00:00:00Z"), ADMIN_KEY).await;
            assert_eq!(same.status, 200, "{}", same.text);
            let unknown = app.get(&format!("{base}?source=no-such-source"), ADMIN_KEY).await;
            assert_eq!(unknown.status, 200, "a well-formed slug no source has is a filter: {}", unknown.text);
        }
        assert_problem(&app.get("/v1/events?status=done", ADMIN_KEY).await, 422, Some("status"));
    }

    async fn history_queries_use_an_index_in_cursor_order(app: TestApp) {
        let h = load(&app, 20_000, 20, 10).await;
        let backend = app.db.get_database_backend();
        if backend == DbBackend::Postgres {
            app.db.execute_unprepared("ANALYZE events; ANALYZE automation_runs").await.unwrap();
        }
        let org = org_of(&app, ADMIN_KEY).await;
        let window = IdWindow::parse(Some(&rfc3339(h.events[5_000].ms)), Some(&rfc3339(h.events[15_000].ms))).unwrap();
        let ev = |source: Option<&str>, key: Option<&str>, status: Option<&str>, window: IdWindow| EventFilter {
            source: source.map(Into::into),
            event_key: key.map(Into::into),
            status: status.map(|s| EventStatus::parse(s).unwrap()),
            window,
        };
        let none = IdWindow::default();
        let event_cases = [
            ("none", ev(None, None, None, none), "ix_events_org_id"),
            ("source", ev(Some("s3"), None, None, none), "ix_events_org_source"),
            ("event_key", ev(None, Some("k5"), None, none), "ix_events_org_key"),
            ("status=no_key", ev(None, None, Some("no_key"), none), "ix_events_org_unmatched"),
            ("status=error", ev(None, None, Some("error"), none), "ix_events_org_unmatched"),
            ("status=dispatched", ev(None, None, Some("dispatched"), none), "ix_events_org_id"),
            ("status=received", ev(None, None, Some("received"), none), "ix_events_undispatched"),
            ("source+status=received", ev(Some("s3"), None, Some("received"), none), "ix_events_undispatched"),
            ("window", ev(None, None, None, window), "ix_events_org_id"),
            ("source+window", ev(Some("s3"), None, None, window), "ix_events_org_source"),
            ("event_key+window", ev(None, Some("k5"), None, window), "ix_events_org_key"),
            ("source+status=dispatched", ev(Some("s3"), None, Some("dispatched"), none), "ix_events_org_source"),
        ];
        let mut failures = Vec::new();
        let middle = h.events[10_000].id;
        for (name, filter, index) in &event_cases {
            for before in [None, Some(middle)] {
                let sql = db::events::events_page(backend, org, filter, before, 51).build(backend);
                failures.extend(ordered_index_plan(&app, sql, &format!("events {name}"), &index.split('|').collect::<Vec<_>>(), false).await);
            }
        }
        let run = |automation: Option<Uuid>, source: Option<&str>, status: Option<&str>, window: IdWindow| RunFilter {
            automation_id: automation,
            event_id: None,
            status: status.map(|s| RunStatus::parse(s).unwrap()),
            source: source.map(Into::into),
            window,
        };
        let a = h.automations[0];
        let run_cases = [
            // Without a status: a merge of one ordered read per status (see `merged`); for a status
            // that is nearly every run of the one org, PostgreSQL walks the primary key instead.
            ("none", run(None, None, None, none), "ix_runs_org_status"),
            ("status", run(None, None, Some("PENDING"), none), "ix_runs_org_status"),
            ("automation", run(Some(a), None, None, none), "ix_runs_automation_status"),
            // An automation's runs come from its source: the same merge, the source checked per row.
            ("automation+source", run(Some(a), Some("s3"), None, none), "ix_runs_automation_status"),
            ("source", run(None, Some("s3"), None, none), "ix_runs_org_source"),
            ("window", run(None, None, None, window), "ix_runs_org_status"),
            ("automation+window", run(Some(a), None, None, window), "ix_runs_automation_status"),
            ("status+window", run(None, None, Some("PENDING"), window), "ix_runs_org_status"),
            // `/v1/automations/{id}/runs?status=`: the automation's runs of that status, not every
            // run of that status in the org checked one by one.
            ("automation+status", run(Some(a), None, Some("FAILED"), none), "ix_runs_automation_status"),
            ("automation+status+window", run(Some(a), None, Some("FAILED"), window), "ix_runs_automation_status"),
        ];
        let middle = h.runs[h.runs.len() / 2].id;
        for (name, filter, index) in &run_cases {
            for before in [None, Some(middle)] {
                let sql = db::runs::runs_page(backend, org, filter, before, 51);
                let bounded = before.is_some() || filter.window.from.is_some() || filter.window.below.is_some();
                failures.extend(ordered_index_plan(&app, sql, &format!("runs {name}"), &index.split('|').collect::<Vec<_>>(), bounded).await);
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
        if backend == DbBackend::Postgres {
            // The lists run in a read transaction planned with the values: a cached generic plan
            // (no values) walks the primary key for a window or a source (docs/operations.md).
            let txn = db::planned::planned_read(&app.db).await.unwrap();
            let mode = txn
                .query_one_raw(Statement::from_string(backend, "SHOW plan_cache_mode"))
                .await
                .unwrap()
                .unwrap()
                .try_get::<String>("", "plan_cache_mode")
                .unwrap();
            assert_eq!(mode, "force_custom_plan");
        }
    }
}

/// `EXPLAIN`s `stmt` and checks that the plan reads one of `indexes` in order: no sequential or
/// full table scan, no sort step; `bounded`: the query has id bounds (a window or a cursor).
/// `Some(why)` when it does not.
async fn ordered_index_plan(
    app: &TestApp,
    stmt: Statement,
    what: &str,
    indexes: &[&str],
    bounded: bool,
) -> Option<String> {
    let backend = stmt.db_backend;
    let plan = crate::helpers::explain(app, stmt).await;
    plan_problem(backend, &plan, what, indexes, bounded)
        .map(|why| format!("{what} ({backend:?}) {why}:\n{}", plan.join("\n")))
}

/// What is wrong with `plan` for the filter `what` (`None`: it reads one of `indexes` in order).
fn plan_problem(
    backend: DbBackend,
    plan: &[String],
    what: &str,
    indexes: &[&str],
    bounded: bool,
) -> Option<String> {
    let text = plan.join("\n");
    let uses = indexes
        .iter()
        .any(|ix| text.contains(&format!("{ix} ")) || text.ends_with(*ix));
    if !uses {
        Some(format!("should use {indexes:?}"))
    } else if merged(what) {
        merge_plan_problem(backend, plan, indexes, bounded)
    } else if backend == DbBackend::Postgres && reads_few_rows(what) {
        // The index range holds only the rows the filter keeps (the undispatched backlog; one
        // automation's runs of one status, when they are few): a bitmap read and a sort of those
        // few rows is the cheaper plan, and PostgreSQL picks it; never a sequential scan.
        text.contains("Seq Scan")
            .then(|| "has a Seq Scan step".to_owned())
    } else if backend == DbBackend::Postgres {
        ["Seq Scan", "Sort", "Bitmap"]
            .iter()
            .find(|bad| text.contains(**bad))
            .map(|bad| format!("has a {bad} step"))
    } else if text.contains("TEMP B-TREE") {
        Some("has a sort step".to_owned())
    } else if plan
        .iter()
        .any(|line| line.starts_with("SCAN") && !line.contains("USING"))
    {
        Some("scans the table".to_owned())
    } else {
        None
    }
}

/// Run lists without a status filter: the newest page of a merge of one ordered read per status.
fn merged(what: &str) -> bool {
    matches!(
        what,
        "runs none"
            | "runs automation"
            | "runs automation+source"
            | "runs window"
            | "runs automation+window"
    )
}

/// What is wrong with a merge's plan: every status's read uses one of `indexes` in order (a
/// status with few rows may be read by a bitmap and sorted on PostgreSQL: those few rows), nothing
/// scans a table, and the only sorts are of what the reads return, each at most a page (SQLite
/// sorts each read's rows for its merge; PostgreSQL merges the ordered reads).
fn merge_plan_problem(
    backend: DbBackend,
    plan: &[String],
    indexes: &[&str],
    bounded: bool,
) -> Option<String> {
    let text = plan.join("\n");
    let statuses = RunStatus::ALL.len();
    // `RUNNING` may come from the partial index of running runs (a handful) and a sort of them.
    let reads: usize = indexes
        .iter()
        .chain(&["ix_runs_running"])
        .map(|ix| text.matches(&format!("{ix} ")).count())
        .sum();
    if reads < statuses {
        return Some(format!(
            "reads {indexes:?} {reads} times, not once per status"
        ));
    }
    if text.contains("automation_runs_pkey") {
        // For an org or automation with no run of a status common elsewhere, that walk reads
        // the whole history.
        return Some("walks the primary key for a status".to_owned());
    }
    if backend == DbBackend::Postgres {
        return text
            .contains("Seq Scan")
            .then(|| "has a Seq Scan step".to_owned());
    }
    if plan
        .iter()
        .any(|line| line.starts_with("SCAN automation_runs"))
    {
        return Some("scans the table".to_owned());
    }
    // Each status's read must seek to its id bounds (a window, a cursor): otherwise a window or a
    // cursor deep in the history is checked row by row (after a range on `status`, SQLite cannot
    // seek on `id`). The partial index of running runs holds a handful.
    let status_reads = plan.iter().filter(|line| {
        line.starts_with("SEARCH automation_runs") && !line.contains("ix_runs_running")
    });
    for read in status_reads {
        if !read.contains("status=?") {
            return Some(format!("reads a status as a range or not at all: {read}"));
        }
        if bounded && !(read.contains("id<?") || read.contains("id>?")) {
            return Some(format!("does not seek to the id bounds: {read}"));
        }
    }
    (text.matches("TEMP B-TREE").count() > statuses + 1)
        .then(|| "sorts more than the merge".to_owned())
}

/// Filters whose index holds only the rows they keep, and few of them in the test's data.
fn reads_few_rows(what: &str) -> bool {
    what.ends_with("status=received") || what.contains("automation+status")
}
