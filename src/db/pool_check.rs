//! When a pooled connection is checked (pinged) before it is handed out. Pinging at every
//! acquire (the pool's default) cost a round trip before every statement and transaction (on
//! SQLite, a hop to its worker thread), most of a hot path's overhead. A connection is pinged
//! only when it may be stale: it sat idle for [`IDLE`] or more (a server restarted, a proxy or
//! firewall dropped it meanwhile), or storage was found unavailable in the last [`AFTER_OUTAGE`]
//! (a connection used during an outage, or just before a quick restart, is not handed out
//! again unchecked). Only the statement that first finds storage gone fails, as it would with
//! any check (the outage began after its check), and so can one on each connection used in the
//! second before a quick restart: they are answered "storage unavailable" (handlers 503, writers
//! retry). Which errors say a connection may be gone: [`note_error`], called where the API and the
//! inbox writers meet storage errors.

use std::time::Duration;

use crate::recently::Recently;

/// A connection idle this long is checked before it is handed out again.
pub const IDLE: Duration = Duration::from_secs(1);
/// Every connection is checked for this long after storage was last found unavailable.
pub const AFTER_OUTAGE: Duration = Duration::from_secs(30);

/// When storage was last found unavailable.
static LAST_OUTAGE: Recently = Recently::new();

/// Storage was just found unavailable: every connection is checked for [`AFTER_OUTAGE`].
pub fn note_outage() {
    LAST_OUTAGE.mark();
}

/// The pools' `before_acquire` hook: pings `conn` first when [`needs_check`] says it may be
/// stale; a failed ping discards it and the pool opens another.
pub fn ping_if_stale<C: sea_orm::sqlx::Connection>(
    conn: &mut C,
    meta: sea_orm::sqlx::pool::PoolConnectionMetadata,
) -> futures_util::future::BoxFuture<'_, Result<bool, sea_orm::sqlx::Error>> {
    Box::pin(async move {
        if needs_check(meta.idle_for) {
            conn.ping().await?;
        }
        Ok(true)
    })
}

/// Notes an outage when `err` says a connection was lost or refused (I/O, protocol, pool, a
/// PostgreSQL connection exception (08) or shutdown (57)); a conflict, a lock timeout or a busy
/// SQLite say nothing about connections and change nothing.
pub fn note_error(err: &sea_orm::DbErr) {
    use sea_orm::sqlx::Error as Sqlx;
    use sea_orm::{DbErr, RuntimeErr};
    let lost = match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            match e.as_ref() {
                Sqlx::Io(_)
                | Sqlx::Protocol(_)
                | Sqlx::PoolTimedOut
                | Sqlx::PoolClosed
                | Sqlx::WorkerCrashed => true,
                Sqlx::Database(db) => db
                    .code()
                    .is_some_and(|code| code.starts_with("08") || code.starts_with("57")),
                _ => false,
            }
        }
        _ => false,
    };
    if lost {
        note_outage();
    }
}

/// Whether a connection idle for `idle_for` is checked before it is handed out.
pub fn needs_check(idle_for: Duration) -> bool {
    idle_for >= IDLE || LAST_OUTAGE.within(AFTER_OUTAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_connections_and_any_after_an_outage_are_checked() {
        assert!(needs_check(IDLE));
        // Other tests of this process may report outages; after one, every connection is checked.
        note_outage();
        assert!(needs_check(Duration::ZERO));
    }
}
