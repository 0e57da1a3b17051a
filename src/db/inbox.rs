//! The durable inbox: batched event inserts that skip duplicates (unique per org + source + dedup
//! key) in one statement, and the dispatch commit that inserts runs (unique per automation + event)
//! and records each event's outcome in one transaction.

use super::statuses::{EventStatus, RunStatus};
use entity::{automation_run, event};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait,
};
use uuid::Uuid;

mod matched;

mod fresh;
pub use matched::{BatchSignal, MatchedCommit, Place, insert_matched, insert_matched_isolating};

/// Statement sizes: a batch is cut into chunks of these row counts only, so every insert reuses
/// one of a few prepared statements (planning a fresh 500-row statement per batch costs more than
/// the insert itself).
pub(crate) const CHUNK_SIZES: [usize; 3] = [100, 10, 1];

/// Splits `rows` into chunks whose sizes all come from `CHUNK_SIZES`.
pub fn fixed_chunks<T>(rows: &[T]) -> Vec<&[T]> {
    let mut chunks = Vec::new();
    let mut rest = rows;
    for size in CHUNK_SIZES {
        while rest.len() >= size {
            let (chunk, tail) = rest.split_at(size);
            chunks.push(chunk);
            rest = tail;
        }
    }
    chunks
}

/// Inserts `rows` in fixed-size chunks, skipping those that conflict; returns the ids inserted
/// (`RETURNING`: an id may name a row stored earlier, such as the run of an event dispatched
/// before; rows with ids made for this write go through `fresh::insert_events` and
/// `fresh::insert_runs`).
async fn insert_skipping<E>(
    db: &impl ConnectionTrait,
    rows: &[E::Model],
    conflict: &OnConflict,
    id: E::Column,
) -> Result<Vec<Uuid>, DbErr>
where
    E: EntityTrait,
    E::Model: IntoActiveModel<E::ActiveModel> + Clone,
{
    let mut inserted = Vec::with_capacity(rows.len());
    for chunk in fixed_chunks(rows) {
        let mut stmt = E::insert_many(
            chunk
                .iter()
                .cloned()
                .map(IntoActiveModel::into_active_model),
        )
        .on_conflict(conflict.clone())
        .into_query();
        stmt.returning_col(id);
        for row in db.query_all(&stmt).await? {
            inserted.push(row.try_get::<Uuid>("", "id")?);
        }
    }
    Ok(inserted)
}

/// Inserts events in one transaction, skipping those whose dedup key is already stored (also
/// within the batch). Returns, per input row, whether it was stored (`false`: a duplicate).
pub async fn insert_events(
    db: &sea_orm::DatabaseConnection,
    rows: &[event::Model],
) -> Result<Vec<bool>, DbErr> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    if db.get_database_backend() == sea_orm::DbBackend::Postgres {
        // One statement: no transaction round trips needed.
        let inserted: std::collections::HashSet<Uuid> = super::unnest::insert_events(db, rows)
            .await?
            .into_iter()
            .collect();
        return Ok(rows.iter().map(|r| inserted.contains(&r.id)).collect());
    }
    let txn = super::WriteTxn::begin(db).await?;
    let inserted: std::collections::HashSet<Uuid> = fresh::insert_events(&txn, rows)
        .await?
        .into_iter()
        .collect();
    txn.commit().await?;
    Ok(rows.iter().map(|r| inserted.contains(&r.id)).collect())
}

/// What became of one row of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowOutcome {
    /// Stored.
    Stored,
    /// Its dedup key was stored already (also earlier in the batch).
    Duplicate,
    /// Storage refused this row for a reason other than being unavailable (a value it cannot
    /// hold); the reason holds none of the row's data.
    Refused(String),
}

/// Up to `limit` committed events not yet dispatched, oldest first, after `after`, received
/// before `older_than` and of one of `sources` when given. A row whose JSON cannot be decoded is not returned: it is
/// marked dispatched with status `error` and the reason (best effort), so no start-up or sweep
/// stumbles over it again.
pub async fn undispatched_events(
    db: &sea_orm::DatabaseConnection,
    after: Option<Uuid>,
    older_than: Option<chrono::DateTime<chrono::Utc>>,
    sources: Option<&[Uuid]>,
    limit: u64,
) -> Result<Vec<event::Model>, DbErr> {
    let mut query = event::Entity::find().filter(event::Column::DispatchedAt.is_null());
    if let Some(cutoff) = older_than {
        query = query.filter(event::Column::ReceivedAt.lt(cutoff));
    }
    if let Some(sources) = sources {
        query = query.filter(event::Column::SourceId.is_in(sources.iter().copied()));
    }
    if let Some(after) = after {
        query = query.filter(event::Column::Id.gt(after));
    }
    let query = query.order_by_asc(event::Column::Id).limit(limit);
    let mut events = Vec::new();
    for row in super::event_rows::all(db, query).await? {
        if row.undecodable {
            retire_undecodable(db, &row.model).await;
        } else {
            events.push(row.model);
        }
    }
    Ok(events)
}

/// Marks an undecodable undispatched event as dispatched with status `error` (logged; a failure
/// only means the next read meets it again).
async fn retire_undecodable(db: &sea_orm::DatabaseConnection, row: &event::Model) {
    tracing::warn!(event_id = %row.id, "an undispatched event cannot be decoded; marked as an error");
    let update = event::Entity::update_many()
        .col_expr(
            event::Column::Status,
            Expr::value(EventStatus::Error.as_str()),
        )
        .col_expr(event::Column::Error, Expr::value(row.error.clone()))
        .col_expr(event::Column::DispatchedAt, Expr::value(super::now()))
        .filter(event::Column::Id.eq(row.id))
        .exec(db);
    if let Err(err) = super::gated(db, update).await {
        tracing::warn!(event_id = %row.id, error = %err, "marking an undecodable event failed");
    }
}

/// What dispatch decided for one event.
#[derive(Debug, Clone)]
pub struct DispatchRecord {
    /// The event.
    pub event_id: Uuid,
    /// Per-automation outcome (JSON array).
    pub outcome: serde_json::Value,
    /// Runs to create (ids are deterministic per automation + event).
    pub runs: Vec<automation_run::Model>,
}

/// Inserts the runs (an existing run for the same automation and event is kept) and marks the
/// events dispatched with their outcome, in one transaction. Returns the ids of the runs this call
/// created.
pub async fn commit_dispatch(
    db: &sea_orm::DatabaseConnection,
    records: &[DispatchRecord],
) -> Result<Vec<Uuid>, DbErr> {
    commit_dispatch_after(db, records, std::future::ready(())).await
}

/// How long a dispatch commit waits for the commit of the batch before it before giving up (and
/// rolling back, to be retried): a bound that also breaks any wait cycle with another writer
/// holding rows the earlier batch needs (another replica dispatching the same events; within one
/// dispatch actor the two batches never share an event).
pub const PREVIOUS_COMMIT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// [`commit_dispatch`], with the `COMMIT` held back until `previous` (the commit of the batch
/// dispatched before this one) is done: a dispatch actor's batches are written concurrently yet
/// become visible in dispatch order.
pub async fn commit_dispatch_after(
    db: &sea_orm::DatabaseConnection,
    records: &[DispatchRecord],
    previous: impl std::future::Future<Output = ()>,
) -> Result<Vec<Uuid>, DbErr> {
    // A crash may undo this commit: the events stay undispatched, and recovery redoes it.
    let txn = super::WriteTxn::begin_unflushed(db).await?;
    let runs: Vec<automation_run::Model> = records
        .iter()
        .flat_map(|r| r.runs.iter().cloned())
        .collect();
    let now = super::now();
    if db.get_database_backend() == sea_orm::DbBackend::Postgres {
        let created = super::unnest::insert_runs(&txn, &runs).await?;
        let outcomes = records.iter().map(|r| (r.event_id, r.outcome.to_string()));
        super::unnest::mark_dispatched(&txn, outcomes, now).await?;
        after_previous(previous).await?;
        txn.commit().await?;
        return Ok(created);
    }
    let conflict = OnConflict::columns([
        automation_run::Column::AutomationId,
        automation_run::Column::EventId,
    ])
    .do_nothing()
    .to_owned();
    let created = insert_skipping::<automation_run::Entity>(
        &txn,
        &runs,
        &conflict,
        automation_run::Column::Id,
    )
    .await?;
    for chunk in fixed_chunks(records) {
        mark_dispatched(&txn, chunk, now).await?;
    }
    after_previous(previous).await?;
    txn.commit().await?;
    Ok(created)
}

/// What [`after_previous`] fails with.
const PREVIOUS_TIMEOUT: &str = "the previous batch did not commit in time";

/// Waits for the earlier batch's commit, at most [`PREVIOUS_COMMIT_WAIT`].
async fn after_previous(previous: impl std::future::Future<Output = ()>) -> Result<(), DbErr> {
    tokio::time::timeout(PREVIOUS_COMMIT_WAIT, previous)
        .await
        .map_err(|_| DbErr::Custom(PREVIOUS_TIMEOUT.into()))
}

/// SQLite: one statement per chunk, `WITH v(id, outcome) AS (VALUES …) UPDATE events … FROM v`.
async fn mark_dispatched(
    db: &impl ConnectionTrait,
    records: &[DispatchRecord],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), DbErr> {
    let mut values = Vec::with_capacity(records.len() * 2 + 1);
    for record in records {
        values.push(sea_orm::Value::from(record.event_id));
        values.push(record.outcome.clone().into());
    }
    // Bound positionally in text order: the timestamp comes after the VALUES list.
    values.push(now.into());
    let sql = format!(
        "WITH v(id, outcome) AS (VALUES {}) UPDATE events SET outcome = v.outcome, status = {}, \
         dispatched_at = ? FROM v WHERE events.id = v.id",
        vec!["(?, ?)"; records.len()].join(", "),
        EventStatus::Dispatched.sql()
    );
    db.execute_raw(sea_orm::Statement::from_sql_and_values(
        db.get_database_backend(),
        sql,
        values,
    ))
    .await?;
    Ok(())
}

/// A new `PENDING` run of `automation_id` for an event (its id and source slug), as dispatch
/// inserts it. It holds no copy
/// of the event's payload: that is read from the event when the run is shown or claimed.
pub fn pending_run(
    id: Uuid,
    org_id: Uuid,
    automation_id: Uuid,
    event: (Uuid, &str),
) -> automation_run::Model {
    pending_run_at(id, org_id, automation_id, event, super::now())
}

/// [`pending_run`] created (and claimable) at `now` (dispatch gives all runs of a batch one
/// time).
pub fn pending_run_at(
    id: Uuid,
    org_id: Uuid,
    automation_id: Uuid,
    event: (Uuid, &str),
    now: chrono::DateTime<chrono::Utc>,
) -> automation_run::Model {
    let (event_id, source) = event;
    automation_run::Model {
        id,
        org_id,
        automation_id,
        event_id,
        source: source.to_owned(),
        status: RunStatus::Pending.as_str().to_owned(),
        event_payload: None,
        attempts: 0,
        available_at: Some(now),
        lease_owner: None,
        lease_token: None,
        lease_expires_at: None,
        result: None,
        error_detail: None,
        created_at: now,
        started_at: None,
        completed_at: None,
    }
}

/// Whether `run` carries only a new run's columns, as [`pending_run_at`] makes it: the inserts of
/// new runs (`unnest::insert_runs`, `fresh::insert_runs`) send those alone and leave the others
/// (payload copy, lease, result, error, start and end) NULL.
pub(crate) fn is_new_run(run: &automation_run::Model) -> bool {
    run.event_payload.is_none()
        && run.lease_owner.is_none()
        && run.lease_token.is_none()
        && run.lease_expires_at.is_none()
        && run.result.is_none()
        && run.error_detail.is_none()
        && run.started_at.is_none()
        && run.completed_at.is_none()
}

/// The run id for an automation and an event: a UUID v7 whose time is the event's and whose other
/// bits derive from both ids, so every replica and every retry names the same run.
pub fn run_id(automation_id: Uuid, event_id: Uuid, event_millis: u64) -> Uuid {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(automation_id.as_bytes())
        .chain_update(event_id.as_bytes())
        .finalize();
    let mut bits = [0u8; 10];
    bits.copy_from_slice(&digest[..10]);
    uuid::Builder::from_unix_timestamp_millis(event_millis, &bits).into_uuid()
}
