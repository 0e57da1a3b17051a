//! The run queue's storage: claiming (oldest available first, never one run to two workers:
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL, the single writer on SQLite), fenced heartbeats,
//! completions and failures, re-queueing expired leases and putting runs back by hand. Every
//! query is served by a partial index of the run queue migration.

use chrono::{DateTime, Utc};
use entity::automation_run;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter,
    Statement, Value,
};
use uuid::Uuid;

use crate::queue::lifecycle::RunStatus;

/// Raw SQL with its bound values, placeholders numbered for the engine.
struct Sql {
    backend: DbBackend,
    text: String,
    values: Vec<Value>,
}

impl Sql {
    fn new(backend: DbBackend, text: &str) -> Sql {
        Sql {
            backend,
            text: text.to_owned(),
            values: Vec::new(),
        }
    }

    fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `value`.
    fn bind(&mut self, value: impl Into<Value>) -> &mut Sql {
        self.values.push(value.into());
        match self.backend {
            DbBackend::Postgres => {
                let n = self.values.len();
                self.text.push_str(&format!("${n}"));
            }
            _ => self.text.push('?'),
        }
        self
    }

    /// Appends `(v1, v2, …)`.
    fn bind_list<T: Into<Value> + Clone>(&mut self, items: &[T]) -> &mut Sql {
        self.push("(");
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(item.clone());
        }
        self.push(")")
    }

    fn statement(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.text, self.values)
    }
}

/// What a claim asks for.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// The caller's org.
    pub org_id: Uuid,
    /// Runs at most (1..=100).
    pub limit: u64,
    /// Only runs of these automations.
    pub automation_ids: Option<Vec<Uuid>>,
    /// Only runs of events from these sources.
    pub sources: Option<Vec<String>>,
    /// The worker's name, stored as the lease owner.
    pub worker: Option<String>,
    /// The new lease token of every run this claim takes.
    pub token: String,
    /// Now.
    pub now: DateTime<Utc>,
}

/// `(automation, max_concurrency)` of the automations in scope that cap concurrency.
pub type Caps = Vec<(Uuid, u32)>;

/// Claims up to `limit` claimable runs, oldest available first, leasing each for the seconds
/// `lease_of(automation_id)` gives; respects every cap in `caps`. Returns the claimed rows.
pub async fn claim(
    db: &DatabaseConnection,
    req: &ClaimRequest,
    caps: &Caps,
    lease_of: impl Fn(Uuid) -> u32,
) -> Result<Vec<automation_run::Model>, DbErr> {
    let backend = db.get_database_backend();
    let _gate = super::write_gate(db).await;
    let txn = super::begin_write(db).await?;
    // Remaining room per capped automation; capped ones that are full are left out entirely.
    let mut room: std::collections::HashMap<Uuid, u32> = std::collections::HashMap::new();
    if !caps.is_empty() {
        let mut sorted = caps.clone();
        sorted.sort_by_key(|(id, _)| *id);
        if backend == DbBackend::Postgres {
            // Two claims must not both count the same free slot: serialize per capped automation.
            for (id, _) in &sorted {
                let mut s = Sql::new(backend, "SELECT pg_advisory_xact_lock(");
                s.bind(advisory_key(*id)).push(")");
                txn.execute_raw(s.statement()).await?;
            }
        }
        let ids: Vec<Uuid> = sorted.iter().map(|(id, _)| *id).collect();
        let mut s = Sql::new(
            backend,
            "SELECT automation_id, COUNT(*) AS n FROM automation_runs \
             WHERE status = 'RUNNING' AND automation_id IN ",
        );
        s.bind_list(&ids).push(" GROUP BY automation_id");
        let mut running = std::collections::HashMap::new();
        for row in txn.query_all_raw(s.statement()).await? {
            running.insert(
                row.try_get::<Uuid>("", "automation_id")?,
                row.try_get::<i64>("", "n")?,
            );
        }
        for (id, max) in &sorted {
            let used = u32::try_from(running.get(id).copied().unwrap_or(0)).unwrap_or(u32::MAX);
            room.insert(*id, max.saturating_sub(used));
        }
    }
    let full: Vec<Uuid> = room
        .iter()
        .filter(|(_, r)| **r == 0)
        .map(|(id, _)| *id)
        .collect();
    let mut s = Sql::new(
        backend,
        "SELECT id, automation_id FROM automation_runs WHERE org_id = ",
    );
    s.bind(req.org_id)
        .push(" AND status = 'PENDING' AND available_at <= ")
        .bind(req.now);
    if let Some(ids) = &req.automation_ids {
        s.push(" AND automation_id IN ").bind_list(ids);
    }
    if let Some(sources) = &req.sources {
        s.push(" AND source IN ").bind_list(sources);
    }
    if !full.is_empty() {
        s.push(" AND automation_id NOT IN ").bind_list(&full);
    }
    // With caps in play, look further than `limit` so a capped automation's backlog does not
    // hide the runs of others.
    let fetch = if room.is_empty() {
        req.limit
    } else {
        req.limit * 4
    };
    s.push(&format!(" ORDER BY available_at, id LIMIT {fetch}"));
    if backend == DbBackend::Postgres {
        s.push(" FOR UPDATE SKIP LOCKED");
    }
    let mut picked: Vec<(Uuid, Uuid)> = Vec::new();
    for row in txn.query_all_raw(s.statement()).await? {
        if picked.len() as u64 >= req.limit {
            break;
        }
        let id = row.try_get::<Uuid>("", "id")?;
        let automation_id = row.try_get::<Uuid>("", "automation_id")?;
        if let Some(r) = room.get_mut(&automation_id) {
            if *r == 0 {
                continue;
            }
            *r -= 1;
        }
        picked.push((id, automation_id));
    }
    // One update per lease length (usually one).
    let mut by_lease: std::collections::BTreeMap<u32, Vec<Uuid>> = Default::default();
    for (id, automation_id) in &picked {
        by_lease
            .entry(lease_of(*automation_id))
            .or_default()
            .push(*id);
    }
    let mut claimed = Vec::with_capacity(picked.len());
    for (lease_s, ids) in by_lease {
        let expires = req.now + chrono::Duration::seconds(i64::from(lease_s));
        let mut s = Sql::new(
            backend,
            "UPDATE automation_runs SET status = 'RUNNING', attempts = attempts + 1, \
             lease_token = ",
        );
        s.bind(req.token.clone())
            .push(", lease_owner = ")
            .bind(req.worker.clone())
            .push(", lease_expires_at = ")
            .bind(expires)
            .push(", started_at = ")
            .bind(req.now)
            .push(", completed_at = NULL WHERE status = 'PENDING' AND id IN ")
            .bind_list(&ids)
            .push(" RETURNING *");
        claimed.extend(
            automation_run::Entity::find()
                .from_raw_sql(s.statement())
                .all(&txn)
                .await?,
        );
    }
    txn.commit().await?;
    claimed.sort_by_key(|r| (r.available_at, r.id));
    Ok(claimed)
}

/// The advisory lock key of an automation (its id's low 64 bits).
fn advisory_key(id: Uuid) -> i64 {
    id.as_u128() as u64 as i64
}

/// Extends the lease of a RUNNING run held with `token` to `expires`; whether it was.
pub async fn heartbeat(
    db: &DatabaseConnection,
    org_id: Uuid,
    id: Uuid,
    token: &str,
    expires: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let _gate = super::write_gate(db).await;
    let result = automation_run::Entity::update_many()
        .col_expr(automation_run::Column::LeaseExpiresAt, Expr::value(expires))
        .filter(automation_run::Column::Id.eq(id))
        .filter(automation_run::Column::OrgId.eq(org_id))
        .filter(automation_run::Column::Status.eq(RunStatus::Running.as_str()))
        .filter(automation_run::Column::LeaseToken.eq(token))
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
}

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

/// Applies fenced outcomes in one transaction; for each, whether it matched (RUNNING, same
/// token).
pub async fn finish(
    db: &DatabaseConnection,
    org_id: Uuid,
    items: &[Finish],
    now: DateTime<Utc>,
) -> Result<Vec<bool>, DbErr> {
    let _gate = super::write_gate(db).await;
    let txn = super::begin_write(db).await?;
    let mut applied = Vec::with_capacity(items.len());
    for item in items {
        let mut update = automation_run::Entity::update_many()
            .col_expr(
                automation_run::Column::Status,
                Expr::value(item.status.as_str()),
            )
            .col_expr(
                automation_run::Column::LeaseExpiresAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            );
        if item.status == RunStatus::Pending {
            update = update.col_expr(
                automation_run::Column::AvailableAt,
                Expr::value(item.available_at.unwrap_or(now)),
            );
        } else {
            update = update.col_expr(automation_run::Column::CompletedAt, Expr::value(now));
        }
        if item.result.is_some() {
            update = update.col_expr(
                automation_run::Column::Result,
                Expr::value(item.result.clone()),
            );
        }
        if item.error.is_some() {
            update = update.col_expr(
                automation_run::Column::ErrorDetail,
                Expr::value(item.error.clone()),
            );
        }
        let result = update
            .filter(automation_run::Column::Id.eq(item.id))
            .filter(automation_run::Column::OrgId.eq(org_id))
            .filter(automation_run::Column::Status.eq(RunStatus::Running.as_str()))
            .filter(automation_run::Column::LeaseToken.eq(item.token.as_str()))
            .exec(&txn)
            .await?;
        applied.push(result.rows_affected > 0);
    }
    txn.commit().await?;
    Ok(applied)
}

/// Up to `limit` RUNNING runs whose lease expired before `now`, earliest expiry first.
pub async fn expired_leases(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<automation_run::Model>, DbErr> {
    let mut s = Sql::new(
        db.get_database_backend(),
        "SELECT * FROM automation_runs WHERE status = 'RUNNING' AND lease_expires_at < ",
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
    let _gate = super::write_gate(db).await;
    let txn = super::begin_write(db).await?;
    let mut changed = Vec::new();
    for item in items {
        let mut update = automation_run::Entity::update_many()
            .col_expr(
                automation_run::Column::ErrorDetail,
                Expr::value("lease expired"),
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

/// Puts a FAILED or CANCELLED run back to PENDING with a fresh set of attempts; whether it was.
pub async fn retry_run(
    db: &DatabaseConnection,
    org_id: Uuid,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let _gate = super::write_gate(db).await;
    let none: Option<DateTime<Utc>> = None;
    let result = automation_run::Entity::update_many()
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
                .is_in([RunStatus::Failed.as_str(), RunStatus::Cancelled.as_str()]),
        )
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
}

/// Runs of an org by status (for the operator page and metrics).
pub async fn count_by_status(
    db: &impl ConnectionTrait,
    org_id: Option<Uuid>,
) -> Result<Vec<(String, i64)>, DbErr> {
    let mut s = Sql::new(
        db.get_database_backend(),
        "SELECT status, COUNT(*) AS n FROM automation_runs",
    );
    if let Some(org) = org_id {
        s.push(" WHERE org_id = ").bind(org);
    }
    s.push(" GROUP BY status");
    db.query_all_raw(s.statement())
        .await?
        .iter()
        .map(|row| Ok((row.try_get("", "status")?, row.try_get("", "n")?)))
        .collect()
}
