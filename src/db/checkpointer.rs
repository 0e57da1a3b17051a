//! The SQLite checkpointer: copies the write-ahead log back into the database every second.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr};

use super::gated;

/// The database file at `path`, opened once per path for the life of the process and never
/// closed: closing any descriptor of a SQLite database releases every POSIX lock the process
/// holds on it (the pool's connections' too), which would let another process act as if this one
/// held none. One descriptor per database file the process opens (one in production). `None` when
/// it cannot be opened (an in-memory database).
fn held_file(path: &Path) -> Option<Arc<File>> {
    static HELD: Mutex<Option<HashMap<PathBuf, Arc<File>>>> = Mutex::new(None);
    let mut held = HELD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let files = held.get_or_insert_with(HashMap::new);
    if let Some(file) = files.get(path) {
        return Some(file.clone());
    }
    let file = Arc::new(File::open(path).ok()?);
    files.insert(path.to_owned(), file.clone());
    Some(file)
}

/// Copies the SQLite WAL back into the database every second, so commits never pay for a
/// checkpoint and the WAL stays small: first [`ROUNDS_OUTSIDE_TURN`] rounds of `PASSIVE`
/// checkpoints and a sync of the database file while writers go on (the bulk of the copy and of
/// the disk writes: syncing thousands of scattered pages took tens of milliseconds), then another
/// checkpoint holding the write turn, which finishes the copy with no writer appending meanwhile
/// and syncs only what arrived during the last round. Only a WAL copied to its end is started
/// over by the next writer; under a steady stream of writes, passive checkpoints alone never
/// reach the end, and the WAL grew by tens of MB a second, slowing every read and write. Runs
/// until the returned guard is dropped (the application holds it; one checkpointer per database,
/// as each takes the write turn); `None` on PostgreSQL.
pub fn start_checkpointer(db: &DatabaseConnection) -> Option<Checkpointer> {
    if db.get_database_backend() != DbBackend::Sqlite {
        return None;
    }
    let db = db.clone();
    let path = db
        .get_sqlite_connection_pool()
        .connect_options()
        .get_filename()
        .to_owned();
    // `None` for an in-memory database: nothing to sync.
    let file = held_file(&path);
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        // A tick that ran long (a slow disk) is not made up for by ticks back to back.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The log as the last checkpoint left it.
        let mut last: Option<WalState> = None;
        loop {
            tick.tick().await;
            let copied = copy_outside_turn(&db, file.as_ref(), &mut last).await;
            let rest = gated(&db, passive_checkpoint(&db)).await;
            if let Ok(state) = rest {
                last = Some(state);
            }
            if let Err(err) = copied.map(drop).and(rest.map(drop)) {
                tracing::debug!(error = %err, "WAL checkpoint skipped");
            }
        }
    });
    Some(Checkpointer(task.abort_handle()))
}

/// The running SQLite checkpointer; stops it when dropped.
pub struct Checkpointer(tokio::task::AbortHandle);

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Up to [`ROUNDS_OUTSIDE_TURN`] rounds of passive checkpoints, each followed by a sync of the
/// database `file` (what the copies wrote reaches the disk now, while writers go on). Ends at the
/// first round that finds the log as `last` (the checkpoint before) left it: nothing new was
/// written, nothing copied, so no sync, and no later round would copy either. (A log that started
/// over and came back to the very same length looks the same; that round's sync is skipped, which
/// costs no safety: SQLite syncs the log before it copies and the file when a copy reaches the
/// end; these syncs only move that work out of the write turn.) Ends at the first error too.
/// Answers the rounds that synced.
async fn copy_outside_turn(
    db: &DatabaseConnection,
    file: Option<&Arc<File>>,
    last: &mut Option<WalState>,
) -> Result<usize, DbErr> {
    let mut synced = 0;
    for _ in 0..ROUNDS_OUTSIDE_TURN {
        let state = checkpoint_until_close(db).await?;
        if *last == Some(state) {
            break;
        }
        *last = Some(state);
        if let Some(file) = file {
            let file = file.clone();
            let _ = tokio::task::spawn_blocking(move || file.sync_data()).await;
        }
        synced += 1;
    }
    Ok(synced)
}

/// Rounds of copying and syncing before the checkpoint that holds the write turn. Writers wait
/// for that one, and it syncs (the log, then the database file) whatever the rounds before it
/// left: the first round copies a second of log (5,000 sources at 1 message/s: ~40,000 frames,
/// ~100 ms, and a sync of up to ~90 ms), each later one only what arrived during the round
/// before. In the many-sources minute on SQLite (docs/benchmarks.md) the turn was held 45-80 ms
/// a second late in the run with one round, 15-35 ms with two, and send → run p99 went from
/// 79-95 ms (one) to 47-62 (two), 40-45 (three) and 33-45 ms (four). On a quiet database the
/// rounds end at once, without a sync ([`copy_outside_turn`]).
const ROUNDS_OUTSIDE_TURN: usize = 4;

/// WAL frames a checkpoint holding the write turn may copy without holding up the writers long.
const FRAMES_LEFT_IN_TURN: i64 = 256;

/// `PASSIVE` checkpoints while writers go on, until the last one left at most
/// [`FRAMES_LEFT_IN_TURN`] frames uncopied (what writers appended while it ran), five at most:
/// each copies what was appended during the one before, so they shrink quickly, and the one
/// taken with the write turn then copies little (it grew with the database to tens of
/// milliseconds a second otherwise, which writers waited for). Answers the log as the last one
/// left it.
async fn checkpoint_until_close(db: &DatabaseConnection) -> Result<WalState, DbErr> {
    let mut state = passive_checkpoint(db).await?;
    for _ in 1..5 {
        if state.frames_left() <= FRAMES_LEFT_IN_TURN {
            break;
        }
        state = passive_checkpoint(db).await?;
    }
    Ok(state)
}

/// The write-ahead log after a checkpoint: its frames, and how many of them are copied into the
/// database (both 0 once a writer started it over; both -1 when it is not in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WalState {
    log: i64,
    copied: i64,
}

impl WalState {
    /// Frames not yet copied into the database.
    fn frames_left(self) -> i64 {
        (self.log - self.copied).max(0)
    }
}

/// One `PASSIVE` checkpoint; answers the log as it left it.
async fn passive_checkpoint(db: &DatabaseConnection) -> Result<WalState, DbErr> {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            DbBackend::Sqlite,
            "PRAGMA wal_checkpoint(PASSIVE)",
        ))
        .await?;
    let Some(row) = row else {
        return Ok(WalState { log: 0, copied: 0 });
    };
    Ok(WalState {
        log: row.try_get_by_index(1)?,
        copied: row.try_get_by_index(2)?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    async fn write(db: &DatabaseConnection, bytes: i64) {
        crate::db::gated(
            db,
            db.execute_unprepared(&format!(
                "INSERT INTO t (body) VALUES (randomblob({bytes}))"
            )),
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn rounds_sync_only_after_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rounds.db");
        let db = crate::db::connect_url(&format!("sqlite://{}?mode=rwc", path.display()), 2)
            .await
            .unwrap();
        db.execute_unprepared("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
            .await
            .unwrap();
        write(&db, 100).await;
        let file = held_file(&path).expect("the database file");
        let mut last = None;

        // The first round copies the writes; the second finds nothing new and ends the rounds.
        assert_eq!(
            copy_outside_turn(&db, Some(&file), &mut last)
                .await
                .unwrap(),
            1
        );
        // Quiet: no round syncs.
        assert_eq!(
            copy_outside_turn(&db, Some(&file), &mut last)
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            copy_outside_turn(&db, Some(&file), &mut last)
                .await
                .unwrap(),
            0
        );
        // A write (tens of pages: the log is not the same length as before) is copied again.
        write(&db, 100_000).await;
        assert_eq!(
            copy_outside_turn(&db, Some(&file), &mut last)
                .await
                .unwrap(),
            1
        );
        assert_eq!(last.map(WalState::frames_left), Some(0));
    }
}
