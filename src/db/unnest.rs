//! PostgreSQL bulk statements for the inbox's hot paths: every column travels as one array
//! parameter and `UNNEST` turns the arrays back into rows, so a batch of any size is one
//! statement with a fixed parameter count (one prepared plan, one round trip, no per-row
//! placeholders to build or bind).
//!
//! Array parameters cannot carry SQL `NULL` elements here, so nullable columns travel as text:
//! nullable JSON columns as their JSON text with `''` for `NULL` (JSON text is never empty), and
//! nullable scalars as a JSON literal (`null` or `"value"`) read back with `#>> '{}'`.

use chrono::{DateTime, Utc};
use entity::{automation_run, event};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, Value};
use uuid::Uuid;

/// Inserts events, skipping those whose (org, source, dedup key) is already stored (also within
/// the batch); returns the ids inserted.
pub async fn insert_events(
    db: &impl ConnectionTrait,
    rows: &[event::Model],
) -> Result<Vec<Uuid>, DbErr> {
    // `ON CONFLICT DO NOTHING` without a target: a row is skipped when its dedup key or its replay
    // key (webhooks) is already stored.
    const SQL: &str = "INSERT INTO events (id, org_id, origin, source, source_id, dedup_key, \
        event_key, raw, payload, meta, status, error, outcome, received_at, dispatched_at, \
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
        ON CONFLICT DO NOTHING RETURNING id";
    let n = rows.len();
    let mut ids = Vec::with_capacity(n);
    let mut org_ids = Vec::with_capacity(n);
    let mut origins = Vec::with_capacity(n);
    let mut sources = Vec::with_capacity(n);
    let mut source_ids = Vec::with_capacity(n);
    let mut dedup_keys = Vec::with_capacity(n);
    let mut event_keys = Vec::with_capacity(n);
    let mut raws = Vec::with_capacity(n);
    let mut payloads = Vec::with_capacity(n);
    let mut metas = Vec::with_capacity(n);
    let mut statuses = Vec::with_capacity(n);
    let mut errors = Vec::with_capacity(n);
    let mut outcomes = Vec::with_capacity(n);
    let mut received = Vec::with_capacity(n);
    let mut dispatched = Vec::with_capacity(n);
    let mut replay_keys = Vec::with_capacity(n);
    for row in rows {
        ids.push(row.id);
        org_ids.push(row.org_id);
        origins.push(row.origin.clone());
        sources.push(row.source.clone());
        source_ids.push(row.source_id.unwrap_or(Uuid::nil()));
        dedup_keys.push(row.dedup_key.clone());
        event_keys.push(json_literal(row.event_key.as_ref()));
        raws.push(row.raw.to_string());
        payloads.push(json_or_empty(row.payload.as_ref()));
        metas.push(row.meta.to_string());
        statuses.push(row.status.clone());
        errors.push(json_literal(row.error.as_ref()));
        outcomes.push(json_or_empty(row.outcome.as_ref()));
        received.push(row.received_at);
        dispatched.push(json_literal(row.dispatched_at.as_ref()));
        replay_keys.push(json_literal(row.replay_key.as_ref()));
    }
    let values: Vec<Value> = vec![
        ids.into(),
        org_ids.into(),
        origins.into(),
        sources.into(),
        source_ids.into(),
        dedup_keys.into(),
        event_keys.into(),
        raws.into(),
        payloads.into(),
        metas.into(),
        statuses.into(),
        errors.into(),
        outcomes.into(),
        received.into(),
        dispatched.into(),
        Uuid::nil().into(),
        replay_keys.into(),
    ];
    returned_ids(db, SQL, values).await
}

/// Inserts runs, keeping any existing run for the same automation and event; returns the ids
/// inserted.
pub async fn insert_runs(
    db: &impl ConnectionTrait,
    runs: &[automation_run::Model],
) -> Result<Vec<Uuid>, DbErr> {
    const SQL: &str = "INSERT INTO automation_runs (id, org_id, automation_id, event_id, source, \
        status, attempts, created_at, available_at) \
        SELECT u.*, u.created_at FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], \
        $5::text[], $6::text[], $7::int4[], $8::timestamptz[]) \
        AS u(id, org_id, automation_id, event_id, source, status, attempts, created_at) \
        ON CONFLICT (event_id, automation_id) DO NOTHING RETURNING id";
    // Only a new run's columns travel: the others (payload copy, lease, error, start and end)
    // start out NULL, as `inbox::pending_run` makes them; a new run is available from its
    // creation.
    debug_assert!(runs.iter().all(|r| r.event_payload.is_none()
        && r.lease_owner.is_none()
        && r.lease_expires_at.is_none()
        && r.error_detail.is_none()
        && r.started_at.is_none()
        && r.completed_at.is_none()));
    let values: Vec<Value> = vec![
        runs.iter().map(|r| r.id).collect::<Vec<_>>().into(),
        runs.iter().map(|r| r.org_id).collect::<Vec<_>>().into(),
        runs.iter()
            .map(|r| r.automation_id)
            .collect::<Vec<_>>()
            .into(),
        runs.iter().map(|r| r.event_id).collect::<Vec<_>>().into(),
        runs.iter()
            .map(|r| r.source.clone())
            .collect::<Vec<_>>()
            .into(),
        runs.iter()
            .map(|r| r.status.clone())
            .collect::<Vec<_>>()
            .into(),
        runs.iter().map(|r| r.attempts).collect::<Vec<_>>().into(),
        runs.iter().map(|r| r.created_at).collect::<Vec<_>>().into(),
    ];
    returned_ids(db, SQL, values).await
}

/// Marks events dispatched at `now` with their outcomes (`(event id, outcome)` pairs).
pub async fn mark_dispatched(
    db: &impl ConnectionTrait,
    outcomes: impl Iterator<Item = (Uuid, String)>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    const SQL: &str = "UPDATE events SET outcome = v.outcome::jsonb, status = 'dispatched', \
        dispatched_at = $3 FROM UNNEST($1::uuid[], $2::text[]) AS v(id, outcome) \
        WHERE events.id = v.id";
    let (ids, texts): (Vec<Uuid>, Vec<String>) = outcomes.unzip();
    if ids.is_empty() {
        return Ok(());
    }
    let values = vec![ids.into(), texts.into(), now.into()];
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        SQL,
        values,
    ))
    .await?;
    Ok(())
}

async fn returned_ids(
    db: &impl ConnectionTrait,
    sql: &str,
    values: Vec<Value>,
) -> Result<Vec<Uuid>, DbErr> {
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .await?;
    rows.iter()
        .map(|row| row.try_get::<Uuid>("", "id"))
        .collect()
}

/// `''` for `NULL`, else the JSON text.
fn json_or_empty(value: Option<&serde_json::Value>) -> String {
    value.map(serde_json::Value::to_string).unwrap_or_default()
}

/// A nullable scalar as a JSON literal: `null`, or the value as a JSON string.
fn json_literal<T: serde::Serialize>(value: Option<&T>) -> String {
    serde_json::to_string(&value).unwrap_or_else(|_| "null".to_owned())
}
