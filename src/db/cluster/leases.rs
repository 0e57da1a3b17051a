//! Source leases: one row per source that some replica holds (or held), with a fencing epoch that
//! grows by one at every change of holder. A replica runs a source only while its lease is
//! unexpired; it renews all of its leases in one statement. A lease is taken when it is free
//! (none, or expired) or handed over by a loaded or draining replica (`previous_replica_id` names
//! the replica letting go until it confirms).

use sea_orm::{ConnectionTrait, DbErr, QueryResult};
use uuid::Uuid;

use super::{WEIGHT, pg};

/// How long a Slack source's previous holder keeps its connections while its new holder gets
/// ready, at most.
pub const HANDOVER_MAX_S: f64 = 30.0;

/// A lease this replica holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The source.
    pub source_id: Uuid,
    /// The fencing epoch of this holding.
    pub epoch: i64,
    /// Connections the source keeps.
    pub weight: i64,
    /// A generic source handed over whose previous holder has not confirmed that it closed its
    /// connection: do not connect yet (two connections to a feed would receive everything twice).
    pub waiting: bool,
}

fn held(row: &QueryResult) -> Result<Held, DbErr> {
    Ok(Held {
        source_id: row.try_get("", "source_id")?,
        epoch: row.try_get("", "epoch")?,
        weight: i64::from(row.try_get::<i32>("", "weight")?),
        waiting: row.try_get("", "waiting")?,
    })
}

/// Whether a source of `websocket_sources AS s` is handed over make-before-break: a Slack app
/// (Slack delivers each envelope to one connection) or a feed with a dedup key (what both
/// connections receive is stored once). A feed without one is handed over break-before-make:
/// two connections would store every message twice.
const OVERLAP: &str = "(s.kind = 'slack' OR s.dedup_key_expr IS NOT NULL)";

/// The `waiting` column of [`Held`] for `source_leases AS l` joined with `websocket_sources AS s`
/// (`$2`: the lease time, after which a silent previous holder no longer counts).
fn waiting() -> String {
    format!(
        "(l.previous_replica_id IS NOT NULL AND NOT {OVERLAP} \
         AND l.handed_at >= now() - make_interval(secs => $2))"
    )
}

/// Extends every unexpired lease of `replica` by `lease_s` seconds and answers them: what the
/// replica may run. A lease that expired is not renewed (another replica may hold it already); a
/// deleted source's lease is let go. A disabled source stays held (its holder shows it disabled
/// and starts it again when it is enabled) but weighs nothing.
pub async fn renew(
    db: &impl ConnectionTrait,
    replica: Uuid,
    lease_s: f64,
) -> Result<Vec<Held>, DbErr> {
    let sql = format!(
        "UPDATE source_leases l SET expires_at = now() + make_interval(secs => $2), \
           weight = {WEIGHT} \
         FROM websocket_sources s \
         WHERE l.replica_id = $1 AND l.expires_at >= now() AND s.id = l.source_id \
         RETURNING l.source_id, l.epoch, CASE WHEN s.enabled THEN l.weight ELSE 0 END AS weight, \
           {waiting} AS waiting",
        waiting = waiting()
    );
    let rows = db
        .query_all_raw(pg(&sql, vec![replica.into(), lease_s.into()]))
        .await?;
    rows.iter().map(held).collect()
}

/// The enabled sources' total weight, and the part of it no replica holds.
pub async fn weights(db: &impl ConnectionTrait) -> Result<(i64, i64), DbErr> {
    let sql = format!(
        "SELECT COALESCE(SUM({WEIGHT}), 0)::bigint AS total, \
         COALESCE(SUM({WEIGHT}) FILTER (WHERE l.source_id IS NULL OR l.expires_at < now()), 0)::bigint AS free \
         FROM websocket_sources s LEFT JOIN source_leases l ON l.source_id = s.id WHERE s.enabled"
    );
    let row = db.query_one_raw(pg(&sql, vec![])).await?;
    match row {
        Some(row) => Ok((row.try_get("", "total")?, row.try_get("", "free")?)),
        None => Ok((0, 0)),
    }
}

/// Takes free sources (enabled, with no lease or an expired one) for `replica` up to `weight`
/// connections (in id order, each taken while the ones before it weigh less than `weight`: at
/// least one, at most one source's weight beyond).
/// The epoch continues from the lease's and from the source's status row (so a status written
/// under any earlier holding is older). Two replicas taking at once never take the same source:
/// the conflict and the expiry check settle it row by row.
pub async fn acquire_free(
    db: &impl ConnectionTrait,
    replica: Uuid,
    lease_s: f64,
    weight: i64,
) -> Result<Vec<Held>, DbErr> {
    let sql = format!(
        "WITH candidates AS ( \
           SELECT s.id, {WEIGHT} AS weight, \
             1 + GREATEST(COALESCE(l.epoch, 0), \
               COALESCE((SELECT st.owner_epoch FROM source_status st WHERE st.source_id = s.id), 0)) AS epoch \
           FROM websocket_sources s LEFT JOIN source_leases l ON l.source_id = s.id \
           WHERE s.enabled AND (l.source_id IS NULL OR l.expires_at < now()) \
           ORDER BY s.id LIMIT $3), \
         free AS (SELECT id, weight, epoch FROM ( \
           SELECT c.*, SUM(weight) OVER (ORDER BY id) - weight AS before FROM candidates c) x \
           WHERE before < $3) \
         INSERT INTO source_leases AS l (source_id, replica_id, epoch, weight, expires_at) \
         SELECT id, $1, epoch, weight, now() + make_interval(secs => $2) FROM free \
         ON CONFLICT (source_id) DO UPDATE SET replica_id = excluded.replica_id, \
           epoch = GREATEST(l.epoch + 1, excluded.epoch), weight = excluded.weight, \
           expires_at = excluded.expires_at, previous_replica_id = NULL, handed_at = NULL \
         WHERE l.expires_at < now() \
         RETURNING l.source_id, l.epoch, l.weight, false AS waiting"
    );
    let rows = db
        .query_all_raw(pg(
            &sql,
            vec![replica.into(), lease_s.into(), weight.into()],
        ))
        .await?;
    rows.iter().map(held).collect()
}

/// Takes over enabled sources that `from` holds (it has more than its share, or it drains) up to
/// `weight` connections, as [`acquire_free`] counts them: `from` is named as the previous holder
/// until it confirms; a source handed over make-before-break keeps its connections there until
/// the new holder is ready.
pub async fn take_over(
    db: &impl ConnectionTrait,
    replica: Uuid,
    from: Uuid,
    lease_s: f64,
    weight: i64,
) -> Result<Vec<Held>, DbErr> {
    let sql = format!(
        "WITH locked AS ( \
           SELECT l.source_id, l.weight FROM source_leases l JOIN websocket_sources s ON s.id = l.source_id \
           WHERE l.replica_id = $3 AND l.previous_replica_id IS NULL AND l.expires_at >= now() \
             AND s.enabled \
           ORDER BY l.source_id LIMIT $4 FOR UPDATE OF l SKIP LOCKED), \
         picked AS (SELECT source_id FROM ( \
           SELECT source_id, SUM(weight) OVER (ORDER BY source_id) - weight AS before FROM locked) x \
           WHERE before < $4) \
         UPDATE source_leases l SET replica_id = $1, epoch = l.epoch + 1, \
           previous_replica_id = l.replica_id, handed_at = now(), \
           expires_at = now() + make_interval(secs => $2) \
         FROM websocket_sources s \
         WHERE s.id = l.source_id AND l.source_id IN (SELECT source_id FROM picked) \
         RETURNING l.source_id, l.epoch, l.weight, NOT {OVERLAP} AS waiting"
    );
    let rows = db
        .query_all_raw(pg(
            &sql,
            vec![replica.into(), lease_s.into(), from.into(), weight.into()],
        ))
        .await?;
    rows.iter().map(held).collect()
}

/// The sources `replica` handed over and still runs, each with whether it should close them now:
/// a source handed over break-before-make at once (its new holder waits for that), one handed
/// over make-before-break once its new holder shows it connected under its epoch, or after
/// [`HANDOVER_MAX_S`].
pub async fn handing(db: &impl ConnectionTrait, replica: Uuid) -> Result<Vec<(Uuid, bool)>, DbErr> {
    let sql = format!(
        "SELECT l.source_id, COALESCE(s.kind IS NULL OR NOT {OVERLAP} \
           OR NOT s.enabled OR (st.owner_epoch = l.epoch AND st.state = 'connected') \
           OR l.handed_at < now() - make_interval(secs => $2), false) AS close_now \
         FROM source_leases l LEFT JOIN websocket_sources s ON s.id = l.source_id \
           LEFT JOIN source_status st ON st.source_id = l.source_id \
         WHERE l.previous_replica_id = $1"
    );
    let rows = db
        .query_all_raw(pg(&sql, vec![replica.into(), HANDOVER_MAX_S.into()]))
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("", "source_id")?, row.try_get("", "close_now")?)))
        .collect()
}

/// `replica` closed these handed-over sources: their new holders may connect.
pub async fn handed(db: &impl ConnectionTrait, replica: Uuid, ids: Vec<Uuid>) -> Result<(), DbErr> {
    db.execute_raw(pg(
        "UPDATE source_leases SET previous_replica_id = NULL \
         WHERE previous_replica_id = $1 AND source_id = ANY($2)",
        vec![replica.into(), ids.into()],
    ))
    .await?;
    Ok(())
}

/// Lets every lease of `replica` go at once (its sources are closed): the others may take them
/// at their next turn.
pub async fn release(db: &impl ConnectionTrait, replica: Uuid) -> Result<(), DbErr> {
    db.execute_raw(pg(
        "UPDATE source_leases SET expires_at = now() - interval '1 second' WHERE replica_id = $1",
        vec![replica.into()],
    ))
    .await?;
    db.execute_raw(pg(
        "UPDATE source_leases SET previous_replica_id = NULL WHERE previous_replica_id = $1",
        vec![replica.into()],
    ))
    .await?;
    Ok(())
}

/// The replica holding each of `ids` under an unexpired lease (sources no replica holds are
/// absent).
pub async fn holders(
    db: &impl ConnectionTrait,
    ids: Vec<Uuid>,
) -> Result<std::collections::HashMap<Uuid, Uuid>, DbErr> {
    let rows = db
        .query_all_raw(pg(
            "SELECT source_id, replica_id FROM source_leases \
             WHERE source_id = ANY($1) AND expires_at >= now()",
            vec![ids.into()],
        ))
        .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("", "source_id")?,
                row.try_get("", "replica_id")?,
            ))
        })
        .collect()
}

/// Forgets the leases of deleted sources.
pub async fn prune(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    db.execute_raw(pg(
        "DELETE FROM source_leases l \
         WHERE NOT EXISTS (SELECT 1 FROM websocket_sources s WHERE s.id = l.source_id)",
        vec![],
    ))
    .await?;
    Ok(())
}

/// The stored state of each of `ids` that holds it (`paused` or `failed`), with its detail.
pub async fn kept_states(
    db: &impl ConnectionTrait,
    ids: Vec<Uuid>,
) -> Result<std::collections::HashMap<Uuid, (String, Option<String>)>, DbErr> {
    let rows = db
        .query_all_raw(pg(
            "SELECT source_id, state, detail FROM source_status \
             WHERE source_id = ANY($1) AND state IN ('paused', 'failed')",
            vec![ids.into()],
        ))
        .await?;
    rows.iter()
        .map(|row| {
            let id: Uuid = row.try_get("", "source_id")?;
            Ok((id, (row.try_get("", "state")?, row.try_get("", "detail")?)))
        })
        .collect()
}
