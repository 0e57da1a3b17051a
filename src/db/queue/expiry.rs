//! The watchdog's storage: RUNNING runs whose lease expired (through the partial index on
//! `lease_expires_at` of RUNNING runs), and re-queueing or failing them, fenced so that a run
//! completed or heartbeated meanwhile is left alone.

use chrono::{DateTime, Utc};
use entity::automation_run;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::db::WriteTxn;
use crate::db::sql::Sql;
use crate::db::statuses::RunStatus;

/// The error an attempt ends with when its lease expires.
pub const LEASE_EXPIRED_ERROR: &str = "lease expired";

/// Up to `limit` RUNNING runs whose lease expired before `now`, earliest expiry first.
pub async fn expired_leases(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<automation_run::Model>, DbErr> {
    let mut s = Sql::new(
        db.get_database_backend(),
        &format!(
            "SELECT * FROM automation_runs WHERE status = {} AND lease_expires_at < ",
            RunStatus::Running.sql()
        ),
    );
    s.bind(now)
        .push(&format!(" ORDER BY lease_expires_at LIMIT {limit}"));
    automation_run::Entity::find()
        .from_raw_sql(s.statement())
        .all(db)
        .await
}

/// What the watchdog does with one expired run.
#[derive(Debug, Clone)]
pub struct Expiry {
    /// The run.
    pub id: Uuid,
    /// Its lease token when it was found expired (fences the update).
    pub token: Option<String>,
    /// `Some(at)`: back to PENDING, claimable at `at`; `None`: FAILED.
    pub retry_at: Option<DateTime<Utc>>,
}

/// Applies the watchdog's decisions in one transaction; returns the ids actually changed (a run
/// completed or heartbeated meanwhile is left alone).
pub async fn expire(
    db: &DatabaseConnection,
    items: &[Expiry],
    now: DateTime<Utc>,
) -> Result<Vec<Uuid>, DbErr> {
    let txn = WriteTxn::begin(db).await?;
    let mut changed = Vec::new();
    for item in items {
        let mut update = automation_run::Entity::update_many()
            .col_expr(
                automation_run::Column::ErrorDetail,
                Expr::value(LEASE_EXPIRED_ERROR),
            )
            .col_expr(
                automation_run::Column::LeaseExpiresAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            );
        update = match item.retry_at {
            Some(at) => update
                .col_expr(
                    automation_run::Column::Status,
                    Expr::value(RunStatus::Pending.as_str()),
                )
                .col_expr(automation_run::Column::AvailableAt, Expr::value(at)),
            None => update
                .col_expr(
                    automation_run::Column::Status,
                    Expr::value(RunStatus::Failed.as_str()),
                )
                .col_expr(automation_run::Column::CompletedAt, Expr::value(now)),
        };
        let mut update = update
            .filter(automation_run::Column::Id.eq(item.id))
            .filter(automation_run::Column::Status.eq(RunStatus::Running.as_str()))
            .filter(automation_run::Column::LeaseExpiresAt.lt(now));
        update = match &item.token {
            Some(token) => update.filter(automation_run::Column::LeaseToken.eq(token.as_str())),
            None => update.filter(automation_run::Column::LeaseToken.is_null()),
        };
        if update.exec(&txn).await?.rows_affected > 0 {
            changed.push(item.id);
        }
    }
    txn.commit().await?;
    Ok(changed)
}
