//! The run queue's storage: claiming (oldest available first, never one run to two workers:
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL, the single writer on SQLite), fenced heartbeats,
//! completions and failures, re-queueing expired leases and putting runs back by hand. Every
//! query is served by a partial index of the run queue migration.

use chrono::{DateTime, Utc};
use entity::automation_run;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};

use uuid::Uuid;

mod claim;
mod expiry;
mod finish;

pub use claim::{Caps, ClaimRequest, ClaimedWithEvents, Leases, claim, claim_with_events};
pub use expiry::{Expiry, LEASE_EXPIRED_ERROR, expire, expired_leases};
pub use finish::{Finish, finish};

use super::statuses::RunStatus;
use crate::db::sql::Sql;

/// Extends the lease of a RUNNING run held with `token` to `expires`; whether it was.
pub async fn heartbeat(
    db: &DatabaseConnection,
    org_id: Uuid,
    id: Uuid,
    token: &str,
    expires: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let extend = automation_run::Entity::update_many()
        .col_expr(automation_run::Column::LeaseExpiresAt, Expr::value(expires))
        .filter(automation_run::Column::Id.eq(id))
        .filter(automation_run::Column::OrgId.eq(org_id))
        .filter(automation_run::Column::Status.eq(RunStatus::Running.as_str()))
        .filter(automation_run::Column::LeaseToken.eq(token))
        .exec(db);
    Ok(super::gated(db, extend).await?.rows_affected > 0)
}

/// Puts a FAILED or CANCELLED run whose event is still stored back to PENDING with a fresh set
/// of attempts; whether it was.
pub async fn retry_run(
    db: &DatabaseConnection,
    org_id: Uuid,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let none: Option<DateTime<Utc>> = None;
    let requeue = automation_run::Entity::update_many()
        .col_expr(
            automation_run::Column::Status,
            Expr::value(RunStatus::Pending.as_str()),
        )
        .col_expr(automation_run::Column::Attempts, Expr::value(0))
        .col_expr(automation_run::Column::AvailableAt, Expr::value(now))
        .col_expr(automation_run::Column::StartedAt, Expr::value(none))
        .col_expr(automation_run::Column::CompletedAt, Expr::value(none))
        .col_expr(automation_run::Column::LeaseExpiresAt, Expr::value(none))
        .col_expr(
            automation_run::Column::LeaseToken,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            automation_run::Column::LeaseOwner,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            automation_run::Column::Result,
            Expr::value(Option::<serde_json::Value>::None),
        )
        .filter(automation_run::Column::Id.eq(id))
        .filter(automation_run::Column::OrgId.eq(org_id))
        .filter(
            automation_run::Column::Status
                .is_in(RunStatus::RETRYABLE_BY_HAND.map(RunStatus::as_str)),
        )
        // A run whose event retention deleted has nothing to hand a worker: not re-queued. Tested
        // in the statement itself; a retention delete running at the very same moment can still
        // win the race (the claim then hands the run a null payload).
        .filter(Expr::cust(
            "EXISTS (SELECT 1 FROM events WHERE events.id = automation_runs.event_id)",
        ))
        .exec(db);
    Ok(super::gated(db, requeue).await?.rows_affected > 0)
}

/// How many runs are PENDING and how many RUNNING (all orgs), for the
/// `switchboard_runs_by_status` gauge.
/// Each count reads only its status's partial index (`ix_runs_claim`, `ix_runs_running`), so it
/// costs the size of the backlog, never a scan of the finished runs.
pub async fn count_open(db: &impl ConnectionTrait) -> Result<Vec<(RunStatus, i64)>, DbErr> {
    let mut counts = Vec::with_capacity(2);
    for status in [RunStatus::Pending, RunStatus::Running] {
        let s = Sql::new(
            db.get_database_backend(),
            &format!(
                "SELECT COUNT(*) AS n FROM automation_runs WHERE status = {}",
                status.sql()
            ),
        );
        let n = match db.query_one_raw(s.statement()).await? {
            Some(row) => row.try_get::<i64>("", "n")?,
            None => 0,
        };
        counts.push((status, n));
    }
    Ok(counts)
}
