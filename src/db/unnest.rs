//! PostgreSQL bulk statements for the inbox's hot paths: every column travels as one array
//! parameter and `UNNEST` turns the arrays back into rows, so a batch of any size is one
//! statement with a fixed parameter count (one prepared plan, one round trip, no per-row
//! placeholders to build or bind).
//!
//! Array parameters cannot carry SQL `NULL` elements here, so nullable columns travel as text:
//! nullable JSON columns as their JSON text with `''` for `NULL` (JSON text is never empty), and
//! nullable scalars as a JSON literal (`null` or `"value"`) read back with `#>> '{}'`.

use std::borrow::Borrow;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use entity::{automation_run, event};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, QueryResult, Statement, Value};
use uuid::Uuid;

use super::statuses::EventStatus;

/// The `INSERT` of a batch of events ($1–$17), skipping those whose (org, source, dedup key) is
/// already stored (also within the batch), without its `RETURNING`.
// `ON CONFLICT DO NOTHING` without a target: a row is skipped when its dedup key or its replay
// key (webhooks) is already stored.
const INSERT_EVENTS: &str = "INSERT INTO events (id, org_id, origin, source, source_id, \
    dedup_key, event_key, raw, payload, meta, status, error, outcome, received_at, dispatched_at, \
    replay_key) \
    SELECT r.id, r.org_id, r.origin, r.source, NULLIF(r.source_id, $16::uuid), r.dedup_key, \
    r.event_key::jsonb #>> '{}', r.raw::jsonb, NULLIF(r.payload, '')::jsonb, r.meta::jsonb, \
    r.status, r.error::jsonb #>> '{}', NULLIF(r.outcome, '')::jsonb, r.received_at, \
    (r.dispatched_at::jsonb #>> '{}')::timestamptz, r.replay_key::jsonb #>> '{}' \
    FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::uuid[], $6::text[], \
    $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], \
    $14::timestamptz[], $15::text[], $17::text[]) \
    AS r(id, org_id, origin, source, source_id, dedup_key, event_key, raw, payload, meta, \
    status, error, outcome, received_at, dispatched_at, replay_key) \
    ON CONFLICT DO NOTHING";

/// Inserts events, skipping those whose (org, source, dedup key) is already stored (also within
/// the batch); returns the ids inserted.
pub async fn insert_events(
    db: &impl ConnectionTrait,
    rows: &[event::Model],
) -> Result<Vec<Uuid>, DbErr> {
    static SQL: LazyLock<String> = LazyLock::new(|| format!("{INSERT_EVENTS} RETURNING id"));
    returned_ids(db, &SQL, event_columns(rows)).await
}

/// The `INSERT` of a batch of new runs whose columns are the parameters from `$first` on (in
/// [`run_columns`]' order), keeping any existing run for the same automation and event and
/// returning the ids inserted; `filter` (empty, or a `WHERE` on the unnested rows `u`) limits
/// which runs are inserted.
fn insert_runs_sql(first: usize, filter: &str) -> String {
    let p = |i: usize, ty: &str| format!("${}::{ty}[]", first + i);
    format!(
        "INSERT INTO automation_runs (id, org_id, automation_id, event_id, source, status, \
         attempts, created_at, available_at) \
         SELECT u.*, u.created_at FROM UNNEST({}, {}, {}, {}, {}, {}, {}, {}) \
         AS u(id, org_id, automation_id, event_id, source, status, attempts, created_at) \
         {filter} ON CONFLICT (event_id, automation_id) DO NOTHING RETURNING id",
        p(0, "uuid"),
        p(1, "uuid"),
        p(2, "uuid"),
        p(3, "uuid"),
        p(4, "text"),
        p(5, "text"),
        p(6, "int4"),
        p(7, "timestamptz"),
    )
}

/// What [`insert_events_with_runs`] stored: the ids of the events inserted and of the runs
/// created.
#[derive(Debug, Default)]
pub struct Inserted {
    /// Events inserted (not skipped as duplicates).
    pub events: Vec<Uuid>,
    /// Runs created.
    pub runs: Vec<Uuid>,
}

/// [`insert_events`] and [`insert_runs`] in one statement (one round trip; atomic on its own in
/// autocommit): only the runs of events this statement inserted are created, so a duplicate's
/// runs are never written.
pub async fn insert_events_with_runs<R: Borrow<automation_run::Model>>(
    db: &impl ConnectionTrait,
    rows: &[event::Model],
    runs: &[R],
) -> Result<Inserted, DbErr> {
    // The events take $1–$17, the runs $18 on.
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH ev AS ({INSERT_EVENTS} RETURNING id), ru AS ({}) \
             SELECT true AS event, id FROM ev UNION ALL SELECT false, id FROM ru",
            insert_runs_sql(18, "WHERE u.event_id IN (SELECT id FROM ev)")
        )
    });
    let mut values = event_columns(rows);
    values.extend(run_columns(runs));
    let found = query(db, &SQL, values).await?;
    let mut inserted = Inserted::default();
    for row in found {
        let id = row.try_get::<Uuid>("", "id")?;
        if row.try_get::<bool>("", "event")? {
            inserted.events.push(id);
        } else {
            inserted.runs.push(id);
        }
    }
    Ok(inserted)
}

/// The array parameters of [`INSERT_EVENTS`], in order ($16 is the nil uuid that stands for a
/// NULL `source_id`).
fn event_columns(rows: &[event::Model]) -> Vec<Value> {
    vec![
        column(rows, |r| r.id),
        column(rows, |r| r.org_id),
        column(rows, |r| r.origin.clone()),
        column(rows, |r| r.source.clone()),
        column(rows, |r| r.source_id.unwrap_or(Uuid::nil())),
        column(rows, |r| r.dedup_key.clone()),
        column(rows, |r| json_literal(r.event_key.as_ref())),
        column(rows, |r| r.raw.to_string()),
        column(rows, |r| json_or_empty(r.payload.as_ref())),
        column(rows, |r| r.meta.to_string()),
        column(rows, |r| r.status.clone()),
        column(rows, |r| json_literal(r.error.as_ref())),
        column(rows, |r| json_or_empty(r.outcome.as_ref())),
        column(rows, |r| r.received_at),
        column(rows, |r| json_literal(r.dispatched_at.as_ref())),
        Uuid::nil().into(),
        column(rows, |r| json_literal(r.replay_key.as_ref())),
    ]
}

/// Inserts runs, keeping any existing run for the same automation and event; returns the ids
/// inserted.
pub async fn insert_runs(
    db: &impl ConnectionTrait,
    runs: &[automation_run::Model],
) -> Result<Vec<Uuid>, DbErr> {
    static SQL: LazyLock<String> = LazyLock::new(|| insert_runs_sql(1, ""));
    returned_ids(db, &SQL, run_columns(runs)).await
}

/// The array parameters of a new run's columns, in order: id, org, automation, event, source,
/// status, attempts, creation.
fn run_columns<R: Borrow<automation_run::Model>>(runs: &[R]) -> Vec<Value> {
    // A new run is available from its creation.
    debug_assert!(
        runs.iter()
            .map(Borrow::borrow)
            .all(super::inbox::is_new_run)
    );
    vec![
        column(runs, |r| run(r).id),
        column(runs, |r| run(r).org_id),
        column(runs, |r| run(r).automation_id),
        column(runs, |r| run(r).event_id),
        column(runs, |r| run(r).source.clone()),
        column(runs, |r| run(r).status.clone()),
        column(runs, |r| run(r).attempts),
        column(runs, |r| run(r).created_at),
    ]
}

/// Marks events dispatched at `now` with their outcomes (`(event id, outcome)` pairs).
pub async fn mark_dispatched(
    db: &impl ConnectionTrait,
    outcomes: impl Iterator<Item = (Uuid, String)>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let sql = format!(
        "UPDATE events SET outcome = v.outcome::jsonb, status = {}, \
         dispatched_at = $3 FROM UNNEST($1::uuid[], $2::text[]) AS v(id, outcome) \
         WHERE events.id = v.id",
        EventStatus::Dispatched.sql()
    );
    let (ids, texts): (Vec<Uuid>, Vec<String>) = outcomes.unzip();
    if ids.is_empty() {
        return Ok(());
    }
    let values = vec![ids.into(), texts.into(), now.into()];
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        values,
    ))
    .await?;
    Ok(())
}

/// The rows a statement returns.
async fn query(
    db: &impl ConnectionTrait,
    sql: &str,
    values: Vec<Value>,
) -> Result<Vec<QueryResult>, DbErr> {
    db.query_all_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        values,
    ))
    .await
}

/// The `id` column of the rows a statement returns.
async fn returned_ids(
    db: &impl ConnectionTrait,
    sql: &str,
    values: Vec<Value>,
) -> Result<Vec<Uuid>, DbErr> {
    query(db, sql, values)
        .await?
        .iter()
        .map(|row| row.try_get::<Uuid>("", "id"))
        .collect()
}

/// A run given owned or borrowed.
fn run<R: Borrow<automation_run::Model>>(r: &R) -> &automation_run::Model {
    r.borrow()
}

/// One column of a batch as an array parameter.
fn column<R, T>(rows: &[R], field: impl Fn(&R) -> T) -> Value
where
    Vec<T>: Into<Value>,
{
    rows.iter().map(field).collect::<Vec<T>>().into()
}

/// `''` for `NULL`, else the JSON text.
fn json_or_empty(value: Option<&serde_json::Value>) -> String {
    value.map(serde_json::Value::to_string).unwrap_or_default()
}

/// A nullable scalar as a JSON literal: `null`, or the value as a JSON string.
fn json_literal<T: serde::Serialize>(value: Option<&T>) -> String {
    serde_json::to_string(&value).unwrap_or_else(|_| "null".to_owned())
}
