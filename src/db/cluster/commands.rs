//! The command table: an operator command for a source held by another replica is written here
//! and announced with `NOTIFY` (whose payload is only the row's id, far below NOTIFY's 8,000-byte
//! limit, however large a frame to send is); the holder executes it and writes the answer, which
//! the sending replica waits for.

use sea_orm::{ConnectionTrait, DbErr};
use uuid::Uuid;

use super::pg;

/// The channel commands are announced on.
pub const CHANNEL: &str = "switchboard_commands";

/// One command as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRow {
    /// The source it is for.
    pub source_id: Uuid,
    /// `reconnect`, `pause`, `resume` or `send`.
    pub kind: String,
    /// The command's body (the frame's text for `send`).
    pub body: String,
}

/// Stores a command and announces it; answers its id.
pub async fn insert(
    db: &impl ConnectionTrait,
    source_id: Uuid,
    kind: &str,
    body: &str,
) -> Result<i64, DbErr> {
    let sql = format!(
        "WITH c AS (INSERT INTO source_commands (source_id, kind, body, created_at) \
           VALUES ($1, $2, $3, now()) RETURNING id) \
         SELECT id, pg_notify('{CHANNEL}', id::text) FROM c"
    );
    let row = db
        .query_one_raw(pg(&sql, vec![source_id.into(), kind.into(), body.into()]))
        .await?
        .ok_or_else(|| DbErr::RecordNotInserted)?;
    row.try_get("", "id")
}

/// What an answer reads while the holder executes the command.
const CLAIMED: &str = "claimed";

/// Claims the unanswered command `id` for `replica`, only while `replica` holds the command's
/// source under an unexpired lease (one claim wins).
pub async fn claim(
    db: &impl ConnectionTrait,
    id: i64,
    replica: Uuid,
) -> Result<Option<CommandRow>, DbErr> {
    let sql = format!(
        "UPDATE source_commands c SET answer = '{CLAIMED}' FROM source_leases l \
         WHERE c.id = $1 AND c.answer IS NULL AND l.source_id = c.source_id \
           AND l.replica_id = $2 AND l.expires_at >= now() \
         RETURNING c.source_id, c.kind, c.body"
    );
    let row = db
        .query_one_raw(pg(&sql, vec![id.into(), replica.into()]))
        .await?;
    row.map(|row| {
        Ok(CommandRow {
            source_id: row.try_get("", "source_id")?,
            kind: row.try_get("", "kind")?,
            body: row.try_get("", "body")?,
        })
    })
    .transpose()
}

/// Writes the answer of the claimed command `id`.
pub async fn answer(db: &impl ConnectionTrait, id: i64, answer: &str) -> Result<(), DbErr> {
    let sql =
        format!("UPDATE source_commands SET answer = $2 WHERE id = $1 AND answer = '{CLAIMED}'");
    db.execute_raw(pg(&sql, vec![id.into(), answer.into()]))
        .await?;
    Ok(())
}

/// The answer of command `id`, once the holder has written it.
pub async fn answer_of(db: &impl ConnectionTrait, id: i64) -> Result<Option<String>, DbErr> {
    let row = db
        .query_one_raw(pg(
            "SELECT answer FROM source_commands WHERE id = $1",
            vec![id.into()],
        ))
        .await?;
    let answer = row.and_then(|row| row.try_get::<Option<String>>("", "answer").ok().flatten());
    Ok(answer.filter(|a| a != CLAIMED))
}

/// Forgets commands older than a minute (answered or not: their senders stopped waiting).
pub async fn prune(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    db.execute_raw(pg(
        "DELETE FROM source_commands WHERE created_at < now() - interval '1 minute'",
        vec![],
    ))
    .await?;
    Ok(())
}
