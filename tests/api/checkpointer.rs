//! The SQLite checkpointer keeps the write-ahead log from growing under a steady stream of
//! writes: the log starts over every second, so its file stays at about a second of writes.

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use switchboard::db::{WriteTxn, connect_url, start_checkpointer};

/// Bytes written per transaction: one row of this size (a few 4 KiB pages in the log).
const ROW_BYTES: usize = 6_000;

#[actix_web::test]
async fn the_log_starts_over_under_steady_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpointed.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let db = connect_url(&url, 4).await.unwrap();
    db.execute_unprepared("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
        .await
        .unwrap();
    let _checkpointer = start_checkpointer(&db).expect("a checkpointer on SQLite");

    // Six seconds of back-to-back small write transactions, as the inbox writer commits them.
    let started = Instant::now();
    let mut written = 0usize;
    while started.elapsed() < Duration::from_secs(6) {
        let txn = WriteTxn::begin(&db).await.unwrap();
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "INSERT INTO t (body) VALUES (randomblob(?))",
            [i64::try_from(ROW_BYTES).unwrap().into()],
        ))
        .await
        .unwrap();
        txn.commit().await.unwrap();
        written += ROW_BYTES;
        // Leave the checkpointer's passive rounds room on this single-threaded runtime.
        tokio::task::yield_now().await;
    }

    let wal = std::fs::metadata(dir.path().join("checkpointed.db-wal"))
        .unwrap()
        .len() as usize;
    assert!(
        written > 8 << 20,
        "the writer wrote only {written} bytes in 6 s: too few to tell"
    );
    // Every row's bytes reach the log at least once (in fact about twice: a row spans pages of
    // 4 KiB, each written whole), so a log that never started over would be larger than
    // `written`; one that starts over every second holds a second or two of it.
    assert!(
        wal < written,
        "the log grew to {wal} bytes for {written} bytes written: it never started over"
    );
    let rows = db
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT count(*) FROM t",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap();
    assert_eq!(
        rows as usize * ROW_BYTES,
        written,
        "every committed row is there"
    );
}
