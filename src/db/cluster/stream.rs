//! Live-stream messages between replicas: a batch is sent as the `NOTIFY` payload itself when it
//! fits ([`MAX_PAYLOAD`], under PostgreSQL's 8,000-byte limit), else stored in `stream_relay` and
//! announced by id.

use sea_orm::{ConnectionTrait, DbErr};

use super::pg;

/// The largest payload sent inline.
pub const MAX_PAYLOAD: usize = 7_000;

/// Sends `payload` (a JSON array) to every replica listening on `channel`.
pub async fn send(db: &impl ConnectionTrait, channel: &str, payload: &str) -> Result<(), DbErr> {
    if payload.len() <= MAX_PAYLOAD {
        db.execute_raw(pg(
            "SELECT pg_notify($1, $2)",
            vec![channel.into(), payload.into()],
        ))
        .await?;
        return Ok(());
    }
    db.execute_raw(pg(
        "WITH m AS (INSERT INTO stream_relay (body, created_at) VALUES ($2, now()) RETURNING id) \
         SELECT pg_notify($1, '@' || id::text) FROM m",
        vec![channel.into(), payload.into()],
    ))
    .await?;
    Ok(())
}

/// The stored batch `id` (`None`: pruned already).
pub async fn stored(db: &impl ConnectionTrait, id: i64) -> Result<Option<String>, DbErr> {
    let row = db
        .query_one_raw(pg(
            "SELECT body FROM stream_relay WHERE id = $1",
            vec![id.into()],
        ))
        .await?;
    row.map(|row| row.try_get("", "body")).transpose()
}

/// Forgets stored batches older than a minute.
pub async fn prune(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    db.execute_raw(pg(
        "DELETE FROM stream_relay WHERE created_at < now() - interval '1 minute'",
        vec![],
    ))
    .await?;
    Ok(())
}
