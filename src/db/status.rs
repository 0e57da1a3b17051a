//! Writes of `source_status`: state transitions (rare, written at once) and counters (coalesced by
//! the caller to at most one write per source per second).

use chrono::{DateTime, Utc};
use entity::source_status;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set};
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

/// Writes counters and the time of the last stored event.
pub async fn write_counters(
    db: &impl ConnectionTrait,
    source_id: Uuid,
    counters: serde_json::Value,
    last_event_at: Option<DateTime<Utc>>,
) -> Result<(), DbErr> {
    let mut update = source_status::Entity::update_many()
        .col_expr(source_status::Column::Counters, Expr::value(counters))
        .col_expr(source_status::Column::UpdatedAt, Expr::value(super::now()));
    if let Some(at) = last_event_at {
        update = update.col_expr(source_status::Column::LastEventAt, Expr::value(at));
    }
    update
        .filter(source_status::Column::SourceId.eq(source_id))
        .exec(db)
        .await?;
    Ok(())
}
