//! Writes of `source_status`: state transitions (rare) and counters (coalesced by the caller to
//! at most one write per source per second, and written for many sources in one statement:
//! five thousand busy sources must not cost five thousand commits a second).

use chrono::{DateTime, Utc};
use entity::source_status;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, EntityTrait, Set, Statement, Value};
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

/// Writes a state transition (creating the row when missing).
pub async fn write_state(
    db: &impl ConnectionTrait,
    source_id: Uuid,
    record: StateRecord,
) -> Result<(), DbErr> {
    let row = source_status::ActiveModel {
        source_id: Set(source_id),
        state: Set(record.state),
        detail: Set(record.detail),
        connected_at: Set(record.connected_at),
        last_event_at: Set(None),
        next_retry_at: Set(record.next_retry_at),
        consecutive_failures: Set(record.consecutive_failures),
        counters: Set(serde_json::json!({})),
        updated_at: Set(super::now()),
    };
    source_status::Entity::insert(row)
        .on_conflict(
            OnConflict::column(source_status::Column::SourceId)
                .update_columns([
                    source_status::Column::State,
                    source_status::Column::Detail,
                    source_status::Column::ConnectedAt,
                    source_status::Column::NextRetryAt,
                    source_status::Column::ConsecutiveFailures,
                    source_status::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
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
        let sql = "UPDATE source_status AS s SET counters = v.counters::jsonb, \
             last_event_at = COALESCE(NULLIF(v.at, '')::timestamptz, s.last_event_at), \
             updated_at = $4 FROM UNNEST($1::uuid[], $2::text[], $3::text[]) AS v(id, counters, at) \
             WHERE s.source_id = v.id";
        let values: Vec<Value> = vec![ids.into(), counters.into(), at.into(), now.into()];
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
