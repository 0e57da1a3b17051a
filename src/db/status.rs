//! Writes of `source_status`: state transitions (rare) and counters (coalesced by the caller to
//! at most one write per source per second, and written for many sources in one statement:
//! five thousand busy sources must not cost five thousand commits a second).

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, Value};
use uuid::Uuid;

/// A state transition to persist.
#[derive(Debug, Clone, PartialEq)]
pub struct StateRecord {
    /// New state name.
    pub state: String,
    /// Reason or detail.
    pub detail: Option<String>,
    /// When the current connection became ready.
    pub connected_at: Option<DateTime<Utc>>,
    /// When the next attempt is due.
    pub next_retry_at: Option<DateTime<Utc>>,
    /// Consecutive failed attempts.
    pub consecutive_failures: i32,
}

/// Writes a state transition (creating the row when missing) under the holder's fencing `epoch`
/// (always 0 on a single node): a row last written under a newer epoch is left as it is, so a
/// replica that lost the source cannot overwrite what its successor shows.
pub async fn write_state(
    db: &impl ConnectionTrait,
    source_id: Uuid,
    record: StateRecord,
    epoch: i64,
) -> Result<(), DbErr> {
    let mut s = super::sql::Sql::new(
        db.get_database_backend(),
        "INSERT INTO source_status (source_id, state, detail, connected_at, last_event_at, \
         next_retry_at, consecutive_failures, counters, updated_at, owner_epoch) VALUES (",
    );
    s.bind(source_id)
        .push(", ")
        .bind(record.state)
        .push(", ")
        .bind(record.detail)
        .push(", ")
        .bind(record.connected_at)
        .push(", NULL, ")
        .bind(record.next_retry_at)
        .push(", ")
        .bind(record.consecutive_failures)
        .push(", ")
        .bind(serde_json::json!({}))
        .push(", ")
        .bind(super::now())
        .push(", ")
        .bind(epoch)
        .push(
            ") ON CONFLICT (source_id) DO UPDATE SET state = excluded.state, \
             detail = excluded.detail, connected_at = excluded.connected_at, \
             next_retry_at = excluded.next_retry_at, \
             consecutive_failures = excluded.consecutive_failures, \
             updated_at = excluded.updated_at, owner_epoch = excluded.owner_epoch \
             WHERE source_status.owner_epoch <= excluded.owner_epoch",
        );
    db.execute_raw(s.statement()).await?;
    Ok(())
}

/// One source's counters to write: its id, the counters, and the time of its last stored event
/// (`None`: keep the stored one).
pub type CountersWrite = (Uuid, serde_json::Value, Option<DateTime<Utc>>);

/// Sources per statement the status writer takes its turn for: about 5 ms of SQLite's write lock.
pub const COUNTERS_CHUNK: usize = 200;

/// Writes the counters of many sources, one statement per engine: PostgreSQL `UPDATE … FROM
/// UNNEST(…)` (one prepared statement whatever the count), SQLite `WITH v(…) AS (VALUES …)
/// UPDATE … FROM v` in chunks of [`COUNTERS_CHUNK`]. A source without a status row is skipped (its
/// first state transition creates it). Each source should appear once (the caller coalesces).
pub async fn write_counters_batch(
    db: &impl ConnectionTrait,
    writes: &[CountersWrite],
    epoch_of: &(dyn Fn(Uuid) -> i64 + Sync),
) -> Result<(), DbErr> {
    if writes.is_empty() {
        return Ok(());
    }
    let now = super::now();
    if db.get_database_backend() == DbBackend::Postgres {
        // Arrays carry no NULL elements: the counters travel as JSON text and the last event
        // time as RFC 3339 text ('' for none).
        let ids: Vec<Uuid> = writes.iter().map(|w| w.0).collect();
        let counters: Vec<String> = writes.iter().map(|w| w.1.to_string()).collect();
        let at: Vec<String> = writes
            .iter()
            .map(|w| w.2.map(|t| t.to_rfc3339()).unwrap_or_default())
            .collect();
        let epochs: Vec<i64> = writes.iter().map(|w| epoch_of(w.0)).collect();
        let sql = "UPDATE source_status AS s SET counters = v.counters::jsonb, \
             last_event_at = COALESCE(NULLIF(v.at, '')::timestamptz, s.last_event_at), \
             updated_at = $4 \
             FROM UNNEST($1::uuid[], $2::text[], $3::text[], $5::bigint[]) AS v(id, counters, at, epoch) \
             WHERE s.source_id = v.id AND s.owner_epoch <= v.epoch";
        let values: Vec<Value> = vec![
            ids.into(),
            counters.into(),
            at.into(),
            now.into(),
            epochs.into(),
        ];
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .await?;
        return Ok(());
    }
    for chunk in writes.chunks(COUNTERS_CHUNK) {
        let mut s = super::sql::Sql::new(
            db.get_database_backend(),
            "WITH v(id, counters, at) AS (VALUES ",
        );
        for (i, (id, counters, at)) in chunk.iter().enumerate() {
            s.push(if i == 0 { "(" } else { ", (" })
                .bind(*id)
                .push(", ")
                .bind(counters.clone())
                .push(", ")
                .bind(*at)
                .push(")");
        }
        s.push(
            ") UPDATE source_status SET counters = v.counters, \
             last_event_at = COALESCE(v.at, source_status.last_event_at), updated_at = ",
        )
        .bind(now)
        .push(" FROM v WHERE source_status.source_id = v.id");
        db.execute_raw(s.statement()).await?;
    }
    Ok(())
}

/// Forgets every status row's fencing epoch (a single node starting on a database replicas used).
pub async fn reset_epochs(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    db.execute_unprepared("UPDATE source_status SET owner_epoch = 0 WHERE owner_epoch <> 0")
        .await?;
    Ok(())
}
