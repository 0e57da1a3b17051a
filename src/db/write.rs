//! Every write takes its turn here: [`WriteTxn`] owns the write-gate → begin → … → commit
//! sequence of a transaction, [`gated`] holds the turn around a single statement.
//!
//! On SQLite one gate per process queues writers for the single write lock, first come first
//! served. Without it, writers that find the lock taken sleep in SQLite's busy handler in growing
//! steps (up to 100 ms), long after the lock is free again: that sleep, not the writes, was most of
//! the ACK latency under load. One gate serves every SQLite database of the process (one in
//! production). PostgreSQL needs none.

use sea_orm::prelude::async_trait::async_trait;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, ExecResult,
    QueryResult, Statement, TransactionTrait as _,
};
use tokio::sync::MutexGuard;

/// The process's SQLite write turn (`None` on PostgreSQL).
type Turn = Option<MutexGuard<'static, ()>>;

/// Waits for this process's SQLite write turn (PostgreSQL: none, `None`); the turn lasts until
/// the guard is dropped. Prefer [`WriteTxn`] and [`gated`], which hold it for exactly as long as
/// the write.
pub async fn write_gate(db: &DatabaseConnection) -> Turn {
    static GATE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    if db.get_database_backend() == DbBackend::Sqlite {
        Some(GATE.lock().await)
    } else {
        None
    }
}

/// Runs `write` (one statement in autocommit) holding the write turn.
pub async fn gated<T>(db: &DatabaseConnection, write: impl Future<Output = T>) -> T {
    let _turn = write_gate(db).await;
    write.await
}

/// A write transaction holding the write turn from before `BEGIN` until it commits, rolls back
/// or is dropped (an uncommitted transaction is rolled back, then the turn is released). Use it
/// wherever a connection is expected: it is one.
pub struct WriteTxn {
    // Declared before the turn: dropped (rolled back) before the turn is released.
    txn: DatabaseTransaction,
    turn: Turn,
}

impl WriteTxn {
    /// Takes the write turn, then begins. On SQLite the transaction takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so a writer of another process makes it wait (busy timeout) instead
    /// of failing at its first write with "database is locked".
    pub async fn begin(db: &DatabaseConnection) -> Result<WriteTxn, DbErr> {
        let turn = write_gate(db).await;
        let mut options = sea_orm::TransactionOptions::default();
        if db.get_database_backend() == DbBackend::Sqlite {
            options.sqlite_transaction_mode = Some(sea_orm::SqliteTransactionMode::Immediate);
        }
        let txn = db.begin_with_options(options).await?;
        Ok(WriteTxn { txn, turn })
    }

    /// [`WriteTxn::begin`] for a write that a crash may undo without breaking any guarantee: on
    /// PostgreSQL its `COMMIT` returns once the commit is in the write-ahead log's buffers,
    /// without waiting for the flush to disk (`SET LOCAL synchronous_commit = off`; ~3 ms per
    /// commit on a virtual disk). The commit stays atomic, and every later commit that does wait
    /// for its flush flushes this one first; a crash in between loses it (and only it) whole.
    /// Used for dispatch (the event it reads is durable and stays undispatched, so the recovery
    /// sweep dispatches it again) and claims (an undone claim is a lease lost: the run is
    /// claimed again, and the old token is refused). SQLite (WAL, `synchronous = NORMAL`) never
    /// waits for a flush at commit, so there it is [`WriteTxn::begin`].
    pub async fn begin_unflushed(db: &DatabaseConnection) -> Result<WriteTxn, DbErr> {
        let txn = WriteTxn::begin(db).await?;
        if db.get_database_backend() == DbBackend::Postgres {
            txn.execute_unprepared("SET LOCAL synchronous_commit = off")
                .await?;
        }
        Ok(txn)
    }

    /// Commits, then releases the write turn.
    pub async fn commit(self) -> Result<(), DbErr> {
        let WriteTxn { txn, turn } = self;
        let result = txn.commit().await;
        drop(turn);
        result
    }

    /// Rolls back, then releases the write turn.
    pub async fn rollback(self) -> Result<(), DbErr> {
        let WriteTxn { txn, turn } = self;
        let result = txn.rollback().await;
        drop(turn);
        result
    }
}

#[async_trait]
impl ConnectionTrait for WriteTxn {
    fn get_database_backend(&self) -> DbBackend {
        self.txn.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.txn.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.txn.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.txn.query_one_raw(stmt).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.txn.query_all_raw(stmt).await
    }

    fn support_returning(&self) -> bool {
        self.txn.support_returning()
    }
}
