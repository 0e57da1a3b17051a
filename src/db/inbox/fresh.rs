//! SQLite inserts of rows whose ids were made for this write: new events (fresh ids) and the runs
//! of events stored in the same transaction (no run can name an event before it is stored).
//!
//! Since no stored row can have one of these ids, an insert does not need `RETURNING` to learn
//! which rows it stored: when SQLite reports every row inserted, that is the answer; when it
//! skipped some (a duplicate dedup key), one `SELECT` of the chunk's ids says which are there.
//! (Should an earlier attempt of the same write have committed unbeknownst to its writer, its rows
//! count as stored by this one: they are stored, under these very ids, and still once.)
//! Returning every row instead, and building each statement through the query builder, cost
//! about a quarter of the inbox's write turn. PostgreSQL's inserts are in `db::unnest`.

use entity::{automation_run, event};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QuerySelect,
    Statement, Value,
};
use std::sync::LazyLock;
use uuid::Uuid;

use super::{CHUNK_SIZES, fixed_chunks};

/// The columns of a stored event, in the order [`event_values`] gives them.
const EVENT_COLUMNS: &str = "id, org_id, origin, source, source_id, dedup_key, event_key, raw, \
     payload, meta, status, error, outcome, received_at, dispatched_at, replay_key";

/// The columns of a new run, in the order [`run_values`] gives them; the others (lease, result,
/// error, start and end) start out NULL, as `inbox::pending_run` makes them.
const RUN_COLUMNS: &str =
    "id, org_id, automation_id, event_id, source, status, attempts, available_at, created_at";

/// Inserts new events, skipping those whose dedup key (or replay key) is stored already, also
/// earlier in `rows`; returns the ids stored.
pub async fn insert_events(
    db: &impl ConnectionTrait,
    rows: &[event::Model],
) -> Result<Vec<Uuid>, DbErr> {
    static SQL: LazyLock<ChunkSql> =
        LazyLock::new(|| ChunkSql::new("events", EVENT_COLUMNS, 16, ""));
    let id = event::Column::Id;
    insert_all::<event::Entity, _, 16>(db, rows, &SQL, event_values, |row| row.id, id).await
}

/// Inserts new `PENDING` runs of events stored in the caller's transaction; returns the ids
/// stored (all of them, unless a run for the same automation and event is earlier in `runs`).
pub async fn insert_runs(
    db: &impl ConnectionTrait,
    runs: &[automation_run::Model],
) -> Result<Vec<Uuid>, DbErr> {
    static SQL: LazyLock<ChunkSql> = LazyLock::new(|| {
        ChunkSql::new(
            "automation_runs",
            RUN_COLUMNS,
            9,
            "(automation_id, event_id)",
        )
    });
    debug_assert!(runs.iter().all(super::is_new_run));
    let id = automation_run::Column::Id;
    insert_all::<automation_run::Entity, _, 9>(db, runs, &SQL, run_values, |run| run.id, id).await
}

/// One table's insert statement for each of the chunk sizes, built once.
struct ChunkSql([String; CHUNK_SIZES.len()]);

impl ChunkSql {
    /// `INSERT INTO table (columns) VALUES (?, …), … ON CONFLICT target DO NOTHING` with rows of
    /// `width` values, for each chunk size.
    fn new(table: &str, columns: &str, width: usize, target: &str) -> ChunkSql {
        let row = format!("({})", vec!["?"; width].join(", "));
        ChunkSql(CHUNK_SIZES.map(|rows| {
            format!(
                "INSERT INTO {table} ({columns}) VALUES {} ON CONFLICT {target} DO NOTHING",
                vec![row.as_str(); rows].join(", ")
            )
        }))
    }

    /// The statement for a chunk of `rows` rows (a size [`fixed_chunks`] makes).
    fn for_rows(&self, rows: usize) -> Result<&str, DbErr> {
        CHUNK_SIZES
            .iter()
            .position(|size| *size == rows)
            .map(|at| self.0[at].as_str())
            .ok_or_else(|| DbErr::Custom(format!("no insert statement for {rows} rows")))
    }
}

/// Inserts `rows` chunk by chunk with `sql`; answers the ids stored.
async fn insert_all<E: EntityTrait, R, const WIDTH: usize>(
    db: &impl ConnectionTrait,
    rows: &[R],
    sql: &ChunkSql,
    values: fn(&R) -> [Value; WIDTH],
    id: fn(&R) -> Uuid,
    column: E::Column,
) -> Result<Vec<Uuid>, DbErr> {
    let mut stored = Vec::with_capacity(rows.len());
    for chunk in fixed_chunks(rows) {
        let bound = chunk.iter().flat_map(values).collect();
        let statement = sql.for_rows(chunk.len())?;
        let ids = chunk.iter().map(id);
        stored.extend(insert_chunk::<E>(db, statement, bound, ids, column).await?);
    }
    Ok(stored)
}

/// Runs one chunk's insert; answers the ids of `ids` it stored.
async fn insert_chunk<E: EntityTrait>(
    db: &impl ConnectionTrait,
    sql: &str,
    values: Vec<Value>,
    ids: impl ExactSizeIterator<Item = Uuid>,
    id: E::Column,
) -> Result<Vec<Uuid>, DbErr> {
    let statement = Statement::from_sql_and_values(DbBackend::Sqlite, sql, values);
    let inserted = db.execute_raw(statement).await?.rows_affected();
    if usize::try_from(inserted).is_ok_and(|n| n == ids.len()) {
        return Ok(ids.collect());
    }
    // Some were skipped: the ids now stored are the rows this insert added.
    E::find()
        .select_only()
        .column(id)
        .filter(id.is_in(ids))
        .into_tuple::<Uuid>()
        .all(db)
        .await
}

/// An event's values in [`EVENT_COLUMNS`] order.
fn event_values(row: &event::Model) -> [Value; 16] {
    [
        row.id.into(),
        row.org_id.into(),
        row.origin.clone().into(),
        row.source.clone().into(),
        row.source_id.into(),
        row.dedup_key.clone().into(),
        row.event_key.clone().into(),
        row.raw.clone().into(),
        row.payload.clone().into(),
        row.meta.clone().into(),
        row.status.clone().into(),
        row.error.clone().into(),
        row.outcome.clone().into(),
        row.received_at.into(),
        row.dispatched_at.into(),
        row.replay_key.clone().into(),
    ]
}

/// A new run's values in [`RUN_COLUMNS`] order.
fn run_values(run: &automation_run::Model) -> [Value; 9] {
    [
        run.id.into(),
        run.org_id.into(),
        run.automation_id.into(),
        run.event_id.into(),
        run.source.clone().into(),
        run.status.clone().into(),
        run.attempts.into(),
        run.available_at.into(),
        run.created_at.into(),
    ]
}
