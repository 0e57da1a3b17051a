//! The `history` scenario's data: events over [`SOURCES`] sources and two runs per dispatched
//! event, generated deterministically and bulk-loaded through the storage layer's batch
//! statements (the inbox's event insert, then the dispatch commit).

use std::time::{Duration, Instant};

use sea_orm::{DatabaseConnection, DbBackend};
use serde_json::json;
use switchboard::db;
use uuid::Uuid;

/// Sources the events spread over.
const SOURCES: usize = 100;
/// Events per batch statement.
const BATCH: usize = 5_000;

/// The loaded history starts at this millisecond: one event per millisecond, a week or so ago.
fn start_ms() -> i64 {
    static START: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *START.get_or_init(|| chrono::Utc::now().timestamp_millis() - 7 * 86_400_000)
}

/// The millisecond (and id time) of event `i`.
pub(crate) fn ms_of(i: usize) -> i64 {
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

/// Bulk-loads the history through the storage layer's batch statement of the inbox writers
/// (`insert_matched`: events already dispatched and their runs, one transaction per batch; on
/// PostgreSQL one `UNNEST` insert each, two batches at once as a writer runs them); returns
/// (events, runs) stored.
pub(crate) async fn load(
    db: &DatabaseConnection,
    org: Uuid,
    automations: &[Uuid],
    events: usize,
) -> (usize, usize) {
    use futures_util::StreamExt as _;
    let in_flight = match db.get_database_backend() {
        DbBackend::Postgres => 2,
        _ => 1,
    };
    let engine = match db.get_database_backend() {
        DbBackend::Postgres => "postgres",
        _ => "sqlite",
    };
    let batches = (0..events).step_by(BATCH).map(|start| {
        let end = (start + BATCH).min(events);
        let mut rows = Vec::with_capacity(end - start);
        let mut runs = Vec::with_capacity(end - start);
        for i in start..end {
            let row = event_row(i, events, org);
            runs.push(if status_of(i, events) == "dispatched" {
                dispatch_runs(i, &row, automations)
            } else {
                Vec::new()
            });
            rows.push(row);
        }
        async move {
            let place = db::inbox::Place::default();
            let done = db::inbox::insert_matched(db, &rows, &runs, &place)
                .await
                .unwrap();
            let stored = done
                .outcomes
                .iter()
                .filter(|o| matches!(o, db::inbox::RowOutcome::Stored))
                .count();
            (end, stored, done.created.len())
        }
    });
    let (mut stored, mut runs_stored, mut loaded) = (0, 0, 0);
    let mut next_report = Instant::now() + Duration::from_secs(30);
    let mut done = futures_util::stream::iter(batches).buffer_unordered(in_flight);
    while let Some((end, rows, runs)) = done.next().await {
        stored += rows;
        runs_stored += runs;
        loaded = loaded.max(end);
        if Instant::now() >= next_report {
            println!("  ({engine} loaded {loaded} of {events} events, {runs_stored} runs)");
            next_report = Instant::now() + Duration::from_secs(30);
        }
    }
    (stored, runs_stored)
}

/// Event `i` of `events`, as the inbox writer stores it (a `dispatched` one already dispatched,
/// with its outcome).
fn event_row(i: usize, events: usize, org: Uuid) -> entity::event::Model {
    let ms = ms_of(i);
    let mut bits = [0u8; 10];
    bits[..8].copy_from_slice(&(i as u64).to_be_bytes());
    bits[8..].copy_from_slice(&[0x5a, 0xa5]);
    let id = uuid::Builder::from_unix_timestamp_millis(ms as u64, &bits).into_uuid();
    let at = chrono::DateTime::from_timestamp_millis(ms).unwrap();
    let status = status_of(i, events);
    let failed = matches!(status, "no_key" | "error");
    entity::event::Model {
        id,
        org_id: org,
        origin: "websocket".into(),
        source: format!("s{}", i % SOURCES),
        source_id: None,
        dedup_key: format!("d{i}"),
        event_key: (status != "no_key").then(|| format!("k{}", i % 50)),
        raw: json!({"id": format!("d{i}"), "type": format!("k{}", i % 50),
            "data": {"amount": i % 1000, "customer": format!("c{}", i % 7919)}}),
        payload: None,
        meta: json!({}),
        status: status.into(),
        error: failed.then(|| "event_key_expr gave null".to_owned()),
        outcome: (status == "dispatched").then(|| json!([])),
        received_at: at,
        dispatched_at: (status != "received").then_some(at),
        replay_key: None,
    }
}

/// The runs of event `i` (`event`): two automations', 2 % `PENDING`, 2 % `FAILED`.
fn dispatch_runs(
    i: usize,
    event: &entity::event::Model,
    automations: &[Uuid],
) -> Vec<entity::automation_run::Model> {
    let count = automations.len();
    [automations[i % count], automations[(i + 7) % count]]
        .into_iter()
        .enumerate()
        .map(|(n, automation)| {
            let run_id = db::inbox::run_id(automation, event.id, ms_of(i) as u64);
            let mut run =
                db::inbox::pending_run(run_id, event.org_id, automation, (event.id, &event.source));
            run.status = match (i + n) % 50 {
                0 => "PENDING",
                1 => "FAILED",
                _ => "SUCCEEDED",
            }
            .into();
            run.created_at = event.received_at;
            run
        })
        .collect()
}
