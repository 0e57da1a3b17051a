//! The replica registry: each replica's row with its heartbeat, read by every replica to know who
//! is alive (a heartbeat younger than the lease time) and by `GET /v1/cluster`.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr};
use uuid::Uuid;

use super::pg;

/// One registered replica as the others see it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaRow {
    /// Its id (new at every start).
    pub id: Uuid,
    /// Where it serves its API.
    pub address: String,
    /// Its version.
    pub version: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Milliseconds since its last heartbeat, by the database's clock.
    pub heartbeat_age_ms: i64,
    /// Whether it is handing its sources over before it stops.
    pub draining: bool,
    /// Sources it holds.
    pub sources: i64,
    /// Connections those sources keep (their weight).
    pub connections: i64,
    /// Live-stream clients it serves.
    pub streams: i32,
}

/// What a replica says of itself at every heartbeat.
#[derive(Debug, Clone, Copy)]
pub struct Beat<'a> {
    /// Its id.
    pub id: Uuid,
    /// Where it serves its API.
    pub address: &'a str,
    /// Its version.
    pub version: &'a str,
    /// Whether it is handing its sources over before it stops.
    pub draining: bool,
    /// Live-stream clients it serves.
    pub streams: i32,
}

/// Registers the replica (or refreshes its row): its heartbeat is now.
pub async fn heartbeat(db: &impl ConnectionTrait, beat: Beat<'_>) -> Result<(), DbErr> {
    let sql = "INSERT INTO replicas (id, address, version, started_at, heartbeat_at, draining, streams) \
         VALUES ($1, $2, $3, now(), now(), $4, $5) ON CONFLICT (id) DO UPDATE \
         SET heartbeat_at = now(), draining = excluded.draining, streams = excluded.streams";
    let values = vec![
        beat.id.into(),
        beat.address.into(),
        beat.version.into(),
        beat.draining.into(),
        beat.streams.into(),
    ];
    db.execute_raw(pg(sql, values)).await?;
    Ok(())
}

/// Forgets replicas silent for ten times `alive_s` seconds (the leader's upkeep).
pub async fn forget_silent(db: &impl ConnectionTrait, alive_s: f64) -> Result<(), DbErr> {
    db.execute_raw(pg(
        "DELETE FROM replicas WHERE heartbeat_at < now() - make_interval(secs => $1 * 10)",
        vec![alive_s.into()],
    ))
    .await?;
    Ok(())
}

/// Every replica whose heartbeat is younger than `alive_s` seconds, with what it holds (a read
/// only: `GET /v1/cluster` and every turn of every coordinator call it).
pub async fn alive(db: &impl ConnectionTrait, alive_s: f64) -> Result<Vec<ReplicaRow>, DbErr> {
    let sql = "SELECT r.id, r.address, r.version, r.started_at, r.draining, r.streams, \
         (EXTRACT(EPOCH FROM (now() - r.heartbeat_at)) * 1000)::bigint AS age, \
         COUNT(l.source_id) AS sources, \
         COALESCE(SUM(l.weight) FILTER (WHERE s.enabled), 0)::bigint AS connections \
         FROM replicas r LEFT JOIN source_leases l \
           ON l.replica_id = r.id AND l.expires_at >= now() \
         LEFT JOIN websocket_sources s ON s.id = l.source_id \
         WHERE r.heartbeat_at >= now() - make_interval(secs => $1) \
         GROUP BY r.id ORDER BY r.id";
    let rows = db.query_all_raw(pg(sql, vec![alive_s.into()])).await?;
    rows.iter()
        .map(|row| {
            Ok(ReplicaRow {
                id: row.try_get("", "id")?,
                address: row.try_get("", "address")?,
                version: row.try_get("", "version")?,
                started_at: row.try_get("", "started_at")?,
                heartbeat_age_ms: row.try_get("", "age")?,
                draining: row.try_get("", "draining")?,
                sources: row.try_get("", "sources")?,
                connections: row.try_get("", "connections")?,
                streams: row.try_get("", "streams")?,
            })
        })
        .collect()
}

/// Removes the replica's row (a graceful stop).
pub async fn deregister(db: &impl ConnectionTrait, id: Uuid) -> Result<(), DbErr> {
    db.execute_raw(pg("DELETE FROM replicas WHERE id = $1", vec![id.into()]))
        .await?;
    Ok(())
}
