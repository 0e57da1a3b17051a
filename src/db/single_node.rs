//! SQLite is single-node: one Switchboard process per database file. The service takes an
//! exclusive lock on `<database file>.lock` before it touches the database and holds it until the
//! process (or the [`NodeLock`]) ends; a second process started on the same file waits a few
//! seconds (an old process may still be closing its sources during a restart) and then refuses
//! to start with a message that says why. Several replicas need PostgreSQL.
//!
//! The lock is an advisory `flock`-style lock held through an open file (`std::fs::File::lock`),
//! so the operating system releases it when the process dies, however it dies: a lock file left
//! behind by a killed process never blocks the next start, and deleting it by hand is never
//! needed. It is taken only by the server (`Application::build`), not by `db::connect`, so
//! commands that open the database while the server runs keep working.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sea_orm::sqlx::sqlite::SqliteConnectOptions;

/// How long a start waits for another process to release the lock before refusing.
pub const LOCK_WAIT: Duration = Duration::from_secs(15);

/// How often a waiting start tries the lock again.
const RETRY_EVERY: Duration = Duration::from_millis(100);

/// The held lock on a SQLite database; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct NodeLock {
    _file: File,
    path: PathBuf,
}

impl NodeLock {
    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The database file a SQLite URL names, or `None` for an in-memory database (nothing to share).
pub fn sqlite_file(url: &str) -> anyhow::Result<Option<PathBuf>> {
    let options = SqliteConnectOptions::from_str(url)
        .with_context(|| format!("reading the SQLite URL {}", crate::redact::redact_url(url)))?;
    let file = options.get_filename();
    // sqlx names an in-memory database `file:sqlx-in-memory-N`.
    let in_memory = url.contains(":memory:")
        || url.contains("mode=memory")
        || file.to_string_lossy().starts_with("file:sqlx-in-memory");
    if in_memory {
        return Ok(None);
    }
    Ok(Some(file.to_path_buf()))
}

/// Takes the lock of the SQLite database `file`, waiting up to `wait` for another holder to let
/// go; fails with a message naming the database when it is still held after that.
pub async fn lock(file: &Path, wait: Duration) -> anyhow::Result<NodeLock> {
    let path = lock_path(file);
    let handle = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening the lock file {}", path.display()))?;
    let deadline = Instant::now() + wait;
    let mut announced = false;
    loop {
        match handle.try_lock() {
            Ok(()) => {
                return Ok(NodeLock {
                    _file: handle,
                    path,
                });
            }
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(err)) => {
                return Err(err).with_context(|| format!("locking {}", path.display()));
            }
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "another Switchboard process is using the SQLite database {} (it holds {}); \
                 SQLite serves one process at a time: stop the other process, give this one \
                 its own SWITCHBOARD_DATA_DIR, or run several replicas on PostgreSQL",
                file.display(),
                path.display()
            );
        }
        if !announced {
            tracing::warn!(
                lock = %path.display(),
                wait_s = wait.as_secs(),
                "another process holds the SQLite database; waiting for it to exit"
            );
            announced = true;
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

/// The lock of the database `settings` name when it is a SQLite file (`None` on PostgreSQL or an
/// in-memory database), creating its directory when needed; see [`lock`].
pub async fn lock_for(settings: &crate::config::Settings) -> anyhow::Result<Option<NodeLock>> {
    if !settings.is_sqlite() {
        return Ok(None);
    }
    let Some(file) = sqlite_file(&settings.database_url())? else {
        return Ok(None);
    };
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))?;
    }
    lock(&file, LOCK_WAIT).await.map(Some)
}

/// `<database file>.lock`, beside the database.
fn lock_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn urls_name_their_file_or_none() {
        let file = sqlite_file("sqlite:///tmp/x/switchboard.db?mode=rwc").expect("parses");
        assert_eq!(file, Some(PathBuf::from("/tmp/x/switchboard.db")));
        assert_eq!(sqlite_file("sqlite::memory:").expect("parses"), None);
        assert_eq!(
            sqlite_file("sqlite://x.db?mode=memory").expect("parses"),
            None
        );
    }

    #[tokio::test]
    async fn a_second_holder_waits_then_refuses_and_gets_it_once_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("switchboard.db");
        let first = lock(&db, Duration::ZERO).await.expect("first lock");
        assert_eq!(first.path(), dir.path().join("switchboard.db.lock"));
        let started = Instant::now();
        let refused = lock(&db, Duration::from_millis(300))
            .await
            .expect_err("held by the first");
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(
            refused.to_string().contains("another Switchboard process"),
            "{refused}"
        );
        // Released by a drop while the second waits: the second gets it.
        let waiter = tokio::spawn({
            let db = db.clone();
            async move { lock(&db, Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(first);
        waiter.await.expect("joins").expect("taken after release");
    }
}
