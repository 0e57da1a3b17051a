//! Recording the fenced outcomes of a batch (completions, failures, failures that go back to
//! PENDING) in one statement per engine: PostgreSQL `UPDATE … FROM UNNEST(…)` (every field one
//! array parameter, so a batch of any size is one prepared statement and one round trip),
//! SQLite `WITH v(…) AS (VALUES …) UPDATE … FROM v`. A row changes only while it is RUNNING under
//! the token the worker holds; the statement returns the ids it changed, which say per item
//! whether it applied.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, Value};
use uuid::Uuid;

use crate::db::sql::Sql;
use crate::db::statuses::RunStatus;

/// One fenced outcome to record.
#[derive(Debug, Clone)]
pub struct Finish {
    /// The run.
    pub id: Uuid,
    /// The lease token the worker holds.
    pub token: String,
    /// The status it moves to.
    pub status: RunStatus,
    /// The result (success).
    pub result: Option<serde_json::Value>,
    /// The error (failure).
    pub error: Option<String>,
    /// When it may be claimed again (a retried failure).
    pub available_at: Option<DateTime<Utc>>,
}

/// Applies fenced outcomes in one statement; for each, whether it matched (RUNNING, same
/// token). The lease ends (`lease_expires_at` NULL); a run back to PENDING becomes claimable at
/// its `available_at` (default `now`), any other outcome is completed at `now`; `result` and
/// `error` are written when given, and a success clears the error of an earlier attempt. An id
/// repeated in the batch applies at its first occurrence only (the later ones find the run
/// finished, as they would one call later).
pub async fn finish(
    db: &DatabaseConnection,
    org_id: Uuid,
    items: &[Finish],
    now: DateTime<Utc>,
) -> Result<Vec<bool>, DbErr> {
    let unique = first_occurrences(items);
    if unique.is_empty() {
        return Ok(Vec::new());
    }
    let changed = match db.get_database_backend() {
        DbBackend::Postgres => finish_unnest(db, org_id, &unique, now).await?,
        _ => crate::db::gated(db, finish_values(db, org_id, &unique, now)).await?,
    };
    Ok(applied(items, &changed))
}

/// The items whose id did not come earlier in the batch, in order.
fn first_occurrences(items: &[Finish]) -> Vec<&Finish> {
    let mut seen = HashSet::with_capacity(items.len());
    items.iter().filter(|f| seen.insert(f.id)).collect()
}

/// Per item whether it applied: its run changed and the item is its id's first occurrence.
fn applied(items: &[Finish], changed: &HashSet<Uuid>) -> Vec<bool> {
    let mut seen = HashSet::with_capacity(items.len());
    items
        .iter()
        .map(|f| seen.insert(f.id) && changed.contains(&f.id))
        .collect()
}

/// PostgreSQL: the whole batch as arrays. Arrays carry no `NULL` elements here, so the result
/// travels as JSON text (`''`: none), the error as a JSON literal (`null`: none), and the retry
/// time is read only for a run going back to PENDING.
///
/// The rows are found by primary key, one look-up per item. The status test is wrapped in a
/// `COALESCE` and the org test written `IS NOT DISTINCT FROM` (no-ops: both columns are `NOT
/// NULL`) so that no index on `status` or `org_id` can serve them (with statistics that lag a
/// fast-growing table, `org_id = …` alone still led to a scan of the org's every run):
/// PostgreSQL otherwise read the org's RUNNING runs through `ix_runs_org_status` and hashed
/// them, and the indexes on `status` keep an entry for every run that was ever RUNNING until
/// vacuum (bitmap scans never mark dead entries): midway through a drain of 100,000 runs,
/// `ix_runs_running` held 44,567 entries for 700 RUNNING runs, and the slowest completions
/// averaged 114 ms. By primary key the drain went from ~3,000 to ~11,000 runs/s
/// (docs/benchmarks.md).
async fn finish_unnest(
    db: &DatabaseConnection,
    org_id: Uuid,
    items: &[&Finish],
    now: DateTime<Utc>,
) -> Result<HashSet<Uuid>, DbErr> {
    let pending = RunStatus::Pending.sql();
    let sql = format!(
        "UPDATE automation_runs AS r SET status = v.status, lease_expires_at = NULL, \
         available_at = CASE WHEN v.status = {pending} THEN v.available_at ELSE r.available_at END, \
         completed_at = CASE WHEN v.status = {pending} THEN r.completed_at ELSE $7 END, \
         result = COALESCE(NULLIF(v.result, '')::jsonb, r.result), \
         error_detail = CASE WHEN v.status = {succeeded} THEN NULL \
         ELSE COALESCE(v.error::jsonb #>> '{{}}', r.error_detail) END \
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], \
         $6::timestamptz[]) AS v(id, token, status, result, error, available_at) \
         WHERE r.id = v.id AND r.org_id IS NOT DISTINCT FROM $8 \
         AND COALESCE(r.status, '') = {running} \
         AND r.lease_token = v.token RETURNING r.id",
        running = RunStatus::Running.sql(),
        succeeded = RunStatus::Succeeded.sql(),
    );
    let values: Vec<Value> = vec![
        array(items, |f| f.id),
        array(items, |f| f.token.clone()),
        array(items, |f| f.status.as_str().to_owned()),
        array(items, |f| {
            f.result
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default()
        }),
        array(items, |f| {
            serde_json::to_string(&f.error).unwrap_or_else(|_| "null".to_owned())
        }),
        array(items, |f| f.available_at.unwrap_or(now)),
        now.into(),
        org_id.into(),
    ];
    let statement = Statement::from_sql_and_values(DbBackend::Postgres, sql, values);
    returned_ids(db, statement).await
}

/// SQLite: the batch as a `VALUES` list (which may carry `NULL`: nothing to write).
async fn finish_values(
    db: &DatabaseConnection,
    org_id: Uuid,
    items: &[&Finish],
    now: DateTime<Utc>,
) -> Result<HashSet<Uuid>, DbErr> {
    let mut s = Sql::new(
        DbBackend::Sqlite,
        "WITH v(run_id, token, status, result, error, available_at, completed_at) AS (VALUES ",
    );
    for (i, f) in items.iter().enumerate() {
        let pending = f.status == RunStatus::Pending;
        s.push(if i == 0 { "(" } else { ", (" })
            .bind(f.id)
            .push(", ")
            .bind(f.token.clone())
            .push(", ")
            .bind(f.status.as_str())
            .push(", ")
            .bind(f.result.clone())
            .push(", ")
            .bind(f.error.clone())
            .push(", ")
            .bind(pending.then(|| f.available_at.unwrap_or(now)))
            .push(", ")
            .bind((!pending).then_some(now))
            .push(")");
    }
    s.push(&format!(
        ") UPDATE automation_runs SET status = v.status, lease_expires_at = NULL, \
         available_at = COALESCE(v.available_at, automation_runs.available_at), \
         completed_at = COALESCE(v.completed_at, automation_runs.completed_at), \
         result = COALESCE(v.result, automation_runs.result), \
         error_detail = CASE WHEN v.status = {} THEN NULL \
         ELSE COALESCE(v.error, automation_runs.error_detail) END \
         FROM v WHERE automation_runs.id = v.run_id AND automation_runs.org_id = ",
        RunStatus::Succeeded.sql()
    ))
    .bind(org_id)
    .push(&format!(
        " AND automation_runs.status = {} AND automation_runs.lease_token = v.token RETURNING id",
        RunStatus::Running.sql()
    ));
    returned_ids(db, s.statement()).await
}

/// One field of every item as an array parameter.
fn array<T>(items: &[&Finish], field: impl Fn(&Finish) -> T) -> Value
where
    Vec<T>: Into<Value>,
{
    items.iter().map(|f| field(f)).collect::<Vec<T>>().into()
}

/// The `id` column of every row a statement returned.
async fn returned_ids(
    db: &DatabaseConnection,
    statement: Statement,
) -> Result<HashSet<Uuid>, DbErr> {
    db.query_all_raw(statement)
        .await?
        .iter()
        .map(|row| row.try_get::<Uuid>("", "id"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: Uuid) -> Finish {
        Finish {
            id,
            token: "t".to_owned(),
            status: RunStatus::Succeeded,
            result: None,
            error: None,
            available_at: None,
        }
    }

    #[test]
    fn a_repeated_id_applies_at_its_first_occurrence_only() {
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let items = [item(a), item(b), item(a), item(c)];
        let unique: Vec<Uuid> = first_occurrences(&items).iter().map(|f| f.id).collect();
        assert_eq!(unique, vec![a, b, c]);
        let changed: HashSet<Uuid> = [a, c].into_iter().collect();
        assert_eq!(applied(&items, &changed), vec![true, false, false, true]);
    }
}
