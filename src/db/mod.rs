//! Storage: connecting (SQLite with WAL and a busy timeout, or a sized PostgreSQL pool), running
//! migrations, and the repository functions per table. Handlers never build queries themselves.

pub mod api_keys;
pub mod automations;
pub mod checkpointer;
pub mod cluster;
pub mod event_rows;
pub mod events;
pub mod inbox;
pub mod orgs;
pub mod pagination;
pub mod planned;
pub mod pool_check;
pub mod queue;
pub mod retention;
pub mod run_counts;
pub mod runs;
pub mod schedule;
pub mod single_node;
pub mod slugs;
pub mod sources;
pub(crate) mod sql;
pub mod status;
pub mod statuses;
pub mod stream_tokens;
pub mod unnest;
pub mod webhooks;
pub mod window;
pub mod write;

pub use checkpointer::{Checkpointer, start_checkpointer};
pub use write::{WriteTxn, gated};

use std::time::Duration;

use anyhow::Context as _;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};

use crate::config::Settings;

/// Opens the database named by the settings (creating the SQLite file and its directory when
/// needed) and tunes it.
pub async fn connect(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    let url = settings.database_url();
    if settings.is_sqlite() {
        std::fs::create_dir_all(&settings.data_dir).with_context(|| {
            format!(
                "creating the data directory {}",
                settings.data_dir.display()
            )
        })?;
    }
    connect_url(&url, settings.database_max_connections).await
}

/// Page cache per SQLite connection, in KiB (allocated as pages are read, up to this much).
/// SQLite's default (2 MiB) is far below the index pages that busy sources' writes touch: with
/// 5,000 sources, each commit's inserts land on pages spread over several indexes, and with the
/// default cache the writer re-read them from the file on every transaction. 64 MiB cut the
/// many-sources benchmark's send → run latency on SQLite from about 1.9 s to 0.3-0.9 s at p50
/// (docs/benchmarks.md).
const SQLITE_CACHE_KIB: u32 = 65_536;

/// Opens `url` with a pool of at most `max_connections`.
pub async fn connect_url(url: &str, max_connections: u32) -> anyhow::Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(3))
        // Checked before it is handed out only when it may be stale (see `pool_check`).
        .test_before_acquire(false)
        .map_sqlx_postgres_pool_opts(|pool| pool.before_acquire(pool_check::ping_if_stale))
        .sqlx_logging(false)
        // Every pooled SQLite connection: WAL, a busy timeout instead of "database is locked",
        // checkpoints in the background (below) rather than inside a writer's commit, and a page
        // cache that holds the write path's working set (see `SQLITE_CACHE_KIB`).
        .map_sqlx_sqlite_opts(|opts| {
            opts.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                .pragma("wal_autocheckpoint", "0")
                .pragma("cache_size", format!("-{SQLITE_CACHE_KIB}"))
        })
        // A connection returned still inside a transaction is closed, not reused. That happens
        // when a write fails with a full disk or an I/O error: SQLite rolls the transaction back
        // itself, sqlx's own rollback then fails and leaves it counting an open transaction, and
        // reused, the connection would hold (or believe it holds) the write lock forever.
        .map_sqlx_sqlite_pool_opts(|pool| {
            pool.before_acquire(pool_check::ping_if_stale)
                .after_release(|conn, _| {
                    Box::pin(async move {
                        use sea_orm::sqlx::Connection as _;
                        // After the rollback queued on drop has run.
                        let _ = conn.ping().await;
                        Ok(!conn.is_in_transaction())
                    })
                })
        });
    let db = Database::connect(options).await.with_context(|| {
        format!(
            "connecting to the database at {}",
            crate::redact::redact_url(url)
        )
    })?;
    Ok(db)
}

/// Brings the schema up to date.
pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    Migrator::up(db, None)
        .await
        .context("running database migrations")
}

/// Whether a database error means "storage is unavailable right now" (answer 503, retry) rather
/// than a bug.
pub fn is_unavailable(err: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::Error as Sqlx;
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            match e.as_ref() {
                Sqlx::Io(_)
                | Sqlx::PoolTimedOut
                | Sqlx::PoolClosed
                | Sqlx::WorkerCrashed
                | Sqlx::Protocol(_) => true,
                Sqlx::Database(db) => {
                    db.code().is_some_and(|code| unavailable_code(&code))
                        || db.message().contains("database is locked")
                }
                _ => false,
            }
        }
        _ => err.to_string().contains("database is locked"),
    }
}

/// Error codes that mean "try again later", not "this data is wrong". PostgreSQL: connection
/// exceptions (class 08), insufficient resources such as a full disk (53), shutting down or
/// starting (57), system errors (58), and the transient conflicts a retry resolves: serialization
/// failure (40001), deadlock (40P01), statement completion unknown (40003), lock not available
/// (55P03, e.g. under a `lock_timeout`). SQLite (primary code of an extended one): busy (5),
/// locked (6), I/O error (10), disk full (13), cannot open (14).
///
/// A SQLSTATE always has five characters, some all digits (`53100`, disk full); SQLite's extended
/// codes stay below 10,000, so the length tells the two apart.
fn unavailable_code(code: &str) -> bool {
    if code.len() != 5 {
        return code
            .parse::<u32>()
            .is_ok_and(|sqlite| matches!(sqlite & 0xff, 5 | 6 | 10 | 13 | 14));
    }
    ["08", "53", "57", "58", "40001", "40P01", "40003", "55P03"]
        .iter()
        .any(|prefix| code.starts_with(prefix))
}

/// Whether storage refused the data itself: retrying the same row can never succeed, so the
/// inbox isolates the row and rejects it (its message is acknowledged: it can never be stored).
/// PostgreSQL: data exceptions (class 22, such as a NUL character or an untranslatable one),
/// integrity constraints (23), program limits such as an index row too large (54), and errors
/// raised by a trigger or function (P0). SQLite: too big (18), constraint (19, which its
/// triggers' `RAISE(ABORT, …)` also gives); its datatype mismatch (20) and out-of-range bind (25)
/// come from the statement, not the data, and are retried. A value the driver cannot encode
/// counts too. Anything else, including errors that concern every row
/// alike (a read-only database, a permission revoked, a schema mismatch), is not a refusal: the
/// writer keeps the batch and retries, acknowledging nothing.
pub fn is_row_refusal(err: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::Error as Sqlx;
    let (DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e))) = err
    else {
        return false;
    };
    match e.as_ref() {
        Sqlx::Encode(_) => true,
        Sqlx::Database(db) => db.code().is_some_and(|code| refusal_code(&code)),
        _ => false,
    }
}

/// Error codes of [`is_row_refusal`] (a SQLSTATE has five characters, a SQLite code fewer).
fn refusal_code(code: &str) -> bool {
    if code.len() != 5 {
        return code
            .parse::<u32>()
            .is_ok_and(|sqlite| matches!(sqlite & 0xff, 18 | 19));
    }
    ["22", "23", "54", "P0"]
        .iter()
        .any(|prefix| code.starts_with(prefix))
}

/// A description of why storage refused data that holds none of the data (PostgreSQL quotes
/// offending values in its messages): the SQLSTATE or SQLite code when there is one.
pub fn refusal_reason(err: &DbErr) -> String {
    use sea_orm::RuntimeErr;
    let code = match err {
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => e
            .as_database_error()
            .and_then(|db| db.code().map(|c| c.into_owned())),
        _ => None,
    };
    match code {
        Some(code) => format!("storage refused the message (error code {code})"),
        None => "storage refused the message".to_owned(),
    }
}

/// Whether a database error is a unique-constraint violation.
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

/// Current time, truncated to microseconds so values round-trip through both engines unchanged.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    let now = chrono::Utc::now();
    let micros = now.timestamp_micros();
    chrono::DateTime::from_timestamp_micros(micros).unwrap_or(now)
}

/// A new time-ordered id.
pub fn new_id() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}

#[cfg(test)]
mod tests {
    use super::unavailable_code;

    #[test]
    fn transient_codes_of_both_engines_mean_unavailable() {
        // PostgreSQL: all-digit SQLSTATEs too.
        for code in [
            "08006", "53100", "57P01", "58030", "40001", "40P01", "55P03",
        ] {
            assert!(unavailable_code(code), "{code}");
        }
        for code in ["23505", "22P02", "42601", "22001"] {
            assert!(!unavailable_code(code), "{code}");
        }
        // SQLite: busy, locked, I/O error (extended), full, cannot open; not a constraint.
        for code in ["5", "6", "266", "3338", "13", "14"] {
            assert!(unavailable_code(code), "{code}");
        }
        for code in ["19", "2067", "1"] {
            assert!(!unavailable_code(code), "{code}");
        }
    }
}
