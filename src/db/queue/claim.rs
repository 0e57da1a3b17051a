//! Claiming runs: oldest available first, never one run to two workers (`FOR UPDATE SKIP
//! LOCKED` on PostgreSQL, the single writer on SQLite), each automation's concurrency cap
//! respected. Served by the partial indexes of the run queue migration, whose predicates the
//! status literals below repeat.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::automation_run;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, Statement};
use uuid::Uuid;

use crate::db::WriteTxn;
use crate::db::sql::Sql;
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
    /// How long each run is leased.
    pub leases: Leases,
    /// Now.
    pub now: DateTime<Utc>,
}

/// How long a claim leases each run: `default_s` seconds, or the seconds listed for its
/// automation.
#[derive(Debug, Clone, Default)]
pub struct Leases {
    /// Seconds for a run of an automation not listed.
    pub default_s: u32,
    /// `(automation, seconds)` of the automations whose lease differs from `default_s`.
    pub by_automation: Vec<(Uuid, u32)>,
}

impl Leases {
    /// Every run leased for `seconds`.
    pub fn uniform(seconds: u32) -> Leases {
        Leases {
            default_s: seconds,
            by_automation: Vec::new(),
        }
    }
}

/// `(automation, max_concurrency)` of the automations in scope that cap concurrency.
pub type Caps = Vec<(Uuid, u32)>;

/// Remaining room per capped automation (absent: uncapped).
type Room = HashMap<Uuid, u32>;

/// Claims up to `limit` claimable runs, oldest available first, leasing each as `req.leases`
/// says; respects every cap in `caps`. Returns the claimed rows, oldest available first.
///
/// Without caps (the usual case) the claim is one statement: it picks the rows (PostgreSQL:
/// `FOR UPDATE SKIP LOCKED`, so concurrent claims skip each other's rows instead of waiting)
/// and leases them, one round trip in autocommit whose commit does not wait for the disk. With
/// caps, a transaction first counts each capped automation's RUNNING runs under an advisory
/// lock.
pub async fn claim(
    db: &DatabaseConnection,
    req: &ClaimRequest,
    caps: &Caps,
) -> Result<Vec<automation_run::Model>, DbErr> {
    let mut claimed = if caps.is_empty() {
        claim_uncapped(db, req).await?
    } else {
        claim_capped(db, req, caps).await?
    };
    claimed.sort_by_key(|r| (r.available_at, r.id));
    Ok(claimed)
}

/// The claimed runs, and their events by id.
pub type ClaimedWithEvents = (
    Vec<automation_run::Model>,
    HashMap<Uuid, entity::event::Model>,
);

/// [`claim`], with the events of the runs claimed (what a worker is handed). On PostgreSQL
/// without caps, one statement claims and reads the events (one round trip); otherwise the events
/// are read after the claim.
pub async fn claim_with_events(
    db: &DatabaseConnection,
    req: &ClaimRequest,
    caps: &Caps,
) -> Result<ClaimedWithEvents, DbErr> {
    if db.get_database_backend() != DbBackend::Postgres || !caps.is_empty() {
        let claimed = claim(db, req, caps).await?;
        if claimed.is_empty() {
            return Ok((claimed, HashMap::new()));
        }
        let ids = claimed.iter().map(|r| r.event_id).collect();
        let events = crate::db::events::find_events_by_ids(db, ids).await?;
        return Ok((claimed, events.into_iter().map(|e| (e.id, e)).collect()));
    }
    let s = pick_and_lease(DbBackend::Postgres, req, true);
    let mut claimed = Vec::new();
    let mut events = HashMap::new();
    for row in db.query_all_raw(s).await? {
        claimed.push(
            <automation_run::Model as sea_orm::FromQueryResult>::from_query_result(&row, "")?,
        );
        if let Some(event) = crate::db::event_rows::decode_prefixed(&row, "e_")? {
            events.insert(event.id, event);
        }
    }
    claimed.sort_by_key(|r| (r.available_at, r.id));
    Ok((claimed, events))
}

/// Claims without caps: one statement in autocommit, one round trip. On PostgreSQL its commit
/// does not wait for the disk (see [`UNFLUSHED`]: a crash may undo a claim, which is a lease
/// lost: the run is claimed again and the old token refused); on SQLite it holds the write turn.
async fn claim_uncapped(
    db: &DatabaseConnection,
    req: &ClaimRequest,
) -> Result<Vec<automation_run::Model>, DbErr> {
    let backend = db.get_database_backend();
    let take = automation_run::Entity::find().from_raw_sql(pick_and_lease(backend, req, false));
    if backend == DbBackend::Postgres {
        take.all(db).await
    } else {
        crate::db::gated(db, take.all(db)).await
    }
}

/// PostgreSQL: the first common table expression of a statement run on its own (autocommit)
/// whose commit need not wait for the disk, with `AND EXISTS (SELECT 1 FROM unflushed)` in its
/// `WHERE`. `set_config(…, true)` lasts until the end of the statement's own transaction, whose
/// commit then reads `synchronous_commit = off`, as `SET LOCAL` does inside `BEGIN … COMMIT`
/// (which would cost three more round trips). What guarantees it runs is the `EXISTS`
/// reference: it becomes a one-time filter above the update, evaluated before any row is
/// changed (an unreferenced CTE, even `MATERIALIZED`, is never run). Only for a statement sent
/// alone (its own `Sync`), as `claim_uncapped` does: inside a transaction or a pipeline the
/// setting would last beyond it.
const UNFLUSHED: &str =
    "unflushed AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true) AS set)";

/// Claims under concurrency caps, in one transaction: the room each capped automation has
/// left, the runs that fit (looking further than `limit` so that a capped automation's backlog
/// does not hide the others'), and one update leasing them.
async fn claim_capped(
    db: &DatabaseConnection,
    req: &ClaimRequest,
    caps: &Caps,
) -> Result<Vec<automation_run::Model>, DbErr> {
    let txn = WriteTxn::begin_unflushed(db).await?;
    let mut room = room_left(&txn, caps).await?;
    let picked = pick(&txn, req, &mut room).await?;
    let claimed = if picked.is_empty() {
        Vec::new()
    } else {
        let s = lease(txn.get_database_backend(), req, &picked);
        automation_run::Entity::find()
            .from_raw_sql(s)
            .all(&txn)
            .await?
    };
    txn.commit().await?;
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
        // One statement takes them all, in key order.
        let mut keys: Vec<i64> = sorted.iter().map(|(id, _)| advisory_key(*id)).collect();
        keys.sort_unstable();
        let mut s = Sql::new(
            backend,
            "SELECT pg_advisory_xact_lock(k) FROM (SELECT k FROM UNNEST(",
        );
        s.bind(keys).push("::int8[]) AS k ORDER BY k) AS ordered");
        txn.execute_raw(s.statement()).await?;
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

/// Up to `limit` claimable runs' ids, oldest available first, taking room from `room` for each
/// run of a capped automation (and locking the rows on PostgreSQL).
async fn pick(txn: &WriteTxn, req: &ClaimRequest, room: &mut Room) -> Result<Vec<Uuid>, DbErr> {
    let backend = txn.get_database_backend();
    let full: Vec<Uuid> = room
        .iter()
        .filter(|(_, r)| **r == 0)
        .map(|(id, _)| *id)
        .collect();
    let mut s = Sql::new(
        backend,
        "SELECT id, automation_id FROM automation_runs WHERE ",
    );
    claimable(&mut s, req);
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
    let mut picked: Vec<Uuid> = Vec::new();
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
        picked.push(id);
    }
    Ok(picked)
}

/// Appends the conditions of a claimable run of the claim's scope (served by `ix_runs_claim`).
fn claimable(s: &mut Sql, req: &ClaimRequest) {
    s.push("org_id = ")
        .bind(req.org_id)
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
}

/// One statement that picks up to `limit` claimable runs, oldest available first (PostgreSQL:
/// skipping rows other claims hold), and leases them; it returns the leased rows, each followed
/// by its event's columns (`e_…`, see `event_rows::text_columns`) when `with_events`
/// (PostgreSQL only).
fn pick_and_lease(backend: DbBackend, req: &ClaimRequest, with_events: bool) -> Statement {
    let postgres = backend == DbBackend::Postgres;
    let mut s = Sql::new(backend, "WITH ");
    if postgres {
        s.push(UNFLUSHED).push(", ");
    }
    s.push("picked AS (SELECT id FROM automation_runs WHERE ");
    claimable(&mut s, req);
    s.push(&format!(" ORDER BY available_at, id LIMIT {}", req.limit));
    if postgres {
        s.push(" FOR UPDATE SKIP LOCKED");
    }
    s.push(if with_events { "), leased AS (" } else { ") " });
    lease_update(&mut s, req);
    s.push(" id IN (SELECT id FROM picked)");
    if postgres {
        s.push(" AND EXISTS (SELECT 1 FROM unflushed)");
    }
    s.push(" RETURNING *");
    if with_events {
        // Built once: the same for every claim.
        static READ_EVENTS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                ") SELECT leased.*, {} FROM leased LEFT JOIN events e ON e.id = leased.event_id",
                crate::db::event_rows::text_columns("e", "e_")
            )
        });
        s.push(&READ_EVENTS);
    }
    s.statement()
}

/// One statement moving the PENDING runs `ids` to RUNNING under the claim's token; it returns
/// them as updated.
fn lease(backend: DbBackend, req: &ClaimRequest, ids: &[Uuid]) -> Statement {
    let mut s = Sql::new(backend, "");
    lease_update(&mut s, req);
    s.push(" id IN ").bind_list(ids).push(" RETURNING *");
    s.statement()
}

/// Appends `UPDATE … SET <the lease> WHERE status = PENDING AND`: the caller appends which rows.
/// Each run's lease ends `req.leases` seconds from now (a `CASE` over the automations whose lease
/// differs from the default).
fn lease_update(s: &mut Sql, req: &ClaimRequest) {
    let expires = |seconds: u32| req.now + chrono::Duration::seconds(i64::from(seconds));
    s.push(&format!(
        "UPDATE automation_runs SET status = {}, attempts = attempts + 1, lease_token = ",
        RunStatus::Running.sql()
    ))
    .bind(req.token.clone())
    .push(", lease_owner = ")
    .bind(req.worker.clone())
    .push(", lease_expires_at = ");
    if req.leases.by_automation.is_empty() {
        s.bind(expires(req.leases.default_s));
    } else {
        s.push("CASE automation_id");
        for (automation_id, seconds) in &req.leases.by_automation {
            s.push(" WHEN ")
                .bind(*automation_id)
                .push(" THEN ")
                .bind(expires(*seconds));
        }
        s.push(" ELSE ")
            .bind(expires(req.leases.default_s))
            .push(" END");
    }
    s.push(", started_at = ").bind(req.now).push(&format!(
        ", completed_at = NULL WHERE status = {} AND",
        RunStatus::Pending.sql()
    ));
}

/// The advisory lock key of an automation (its id's low 64 bits).
fn advisory_key(id: Uuid) -> i64 {
    id.as_u128() as u64 as i64
}
