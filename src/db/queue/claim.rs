//! Claiming runs: oldest available first, never one run to two workers (`FOR UPDATE SKIP
//! LOCKED` on PostgreSQL, the single writer on SQLite), each automation's concurrency cap
//! respected. Served by the partial indexes of the run queue migration, whose predicates the
//! status literals below repeat.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use entity::automation_run;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait};
use uuid::Uuid;

use super::sql::Sql;
use crate::db::WriteTxn;
use crate::db::statuses::RunStatus;

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

/// Remaining room per capped automation (absent: uncapped).
type Room = HashMap<Uuid, u32>;

/// Claims up to `limit` claimable runs, oldest available first, leasing each for the seconds
/// `lease_of(automation_id)` gives; respects every cap in `caps`. Returns the claimed rows.
pub async fn claim(
    db: &DatabaseConnection,
    req: &ClaimRequest,
    caps: &Caps,
    lease_of: impl Fn(Uuid) -> u32,
) -> Result<Vec<automation_run::Model>, DbErr> {
    let txn = WriteTxn::begin(db).await?;
    let mut room = room_left(&txn, caps).await?;
    let picked = pick(&txn, req, &mut room).await?;
    // One update per lease length (usually one).
    let mut by_lease: BTreeMap<u32, Vec<Uuid>> = BTreeMap::new();
    for (id, automation_id) in &picked {
        by_lease
            .entry(lease_of(*automation_id))
            .or_default()
            .push(*id);
    }
    let mut claimed = Vec::with_capacity(picked.len());
    for (lease_s, ids) in by_lease {
        claimed.extend(lease(&txn, req, lease_s, &ids).await?);
    }
    txn.commit().await?;
    claimed.sort_by_key(|r| (r.available_at, r.id));
    Ok(claimed)
}

/// The room each capped automation has left (its cap minus its RUNNING runs). On PostgreSQL it
/// first takes a transaction-scoped advisory lock per capped automation, in id order, so that
/// two claims never both count the same free slot.
async fn room_left(txn: &WriteTxn, caps: &Caps) -> Result<Room, DbErr> {
    let mut room = Room::new();
    if caps.is_empty() {
        return Ok(room);
    }
    let backend = txn.get_database_backend();
    let mut sorted = caps.clone();
    sorted.sort_by_key(|(id, _)| *id);
    if backend == DbBackend::Postgres {
        for (id, _) in &sorted {
            let mut s = Sql::new(backend, "SELECT pg_advisory_xact_lock(");
            s.bind(advisory_key(*id)).push(")");
            txn.execute_raw(s.statement()).await?;
        }
    }
    let ids: Vec<Uuid> = sorted.iter().map(|(id, _)| *id).collect();
    let mut s = Sql::new(
        backend,
        &format!(
            "SELECT automation_id, COUNT(*) AS n FROM automation_runs \
             WHERE status = {} AND automation_id IN ",
            RunStatus::Running.sql()
        ),
    );
    s.bind_list(&ids).push(" GROUP BY automation_id");
    let mut running = HashMap::new();
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
    Ok(room)
}

/// Up to `limit` claimable runs as `(id, automation id)`, oldest available first, taking room
/// from `room` for each run of a capped automation (and locking the rows on PostgreSQL).
async fn pick(
    txn: &WriteTxn,
    req: &ClaimRequest,
    room: &mut Room,
) -> Result<Vec<(Uuid, Uuid)>, DbErr> {
    let backend = txn.get_database_backend();
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
        .push(&format!(
            " AND status = {} AND available_at <= ",
            RunStatus::Pending.sql()
        ))
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
    Ok(picked)
}

/// Moves the PENDING runs `ids` to RUNNING under the claim's token for `lease_s` seconds;
/// returns them as updated.
async fn lease(
    txn: &WriteTxn,
    req: &ClaimRequest,
    lease_s: u32,
    ids: &[Uuid],
) -> Result<Vec<automation_run::Model>, DbErr> {
    let expires = req.now + chrono::Duration::seconds(i64::from(lease_s));
    let mut s = Sql::new(
        txn.get_database_backend(),
        &format!(
            "UPDATE automation_runs SET status = {}, attempts = attempts + 1, lease_token = ",
            RunStatus::Running.sql()
        ),
    );
    s.bind(req.token.clone())
        .push(", lease_owner = ")
        .bind(req.worker.clone())
        .push(", lease_expires_at = ")
        .bind(expires)
        .push(", started_at = ")
        .bind(req.now)
        .push(&format!(
            ", completed_at = NULL WHERE status = {} AND id IN ",
            RunStatus::Pending.sql()
        ))
        .bind_list(ids)
        .push(" RETURNING *");
    automation_run::Entity::find()
        .from_raw_sql(s.statement())
        .all(txn)
        .await
}

/// The advisory lock key of an automation (its id's low 64 bits).
fn advisory_key(id: Uuid) -> i64 {
    id.as_u128() as u64 as i64
}
