//! Opening the service's database at start-up.

use sea_orm::DatabaseConnection;

use crate::config::Settings;
use crate::db;

/// The database, opened (SQLite: after taking this process's hold on its file, before touching
/// it, so that a second process is refused), checkpointed (SQLite) and migrated.
pub(super) async fn open_database(
    settings: &Settings,
) -> anyhow::Result<(
    Option<db::single_node::NodeLock>,
    DatabaseConnection,
    Option<db::Checkpointer>,
)> {
    let node_lock = db::single_node::lock_for(settings).await?;
    let db = db::connect(settings).await?;
    let checkpointer = db::start_checkpointer(&db);
    db::migrate(&db).await?;
    Ok((node_lock, db, checkpointer))
}
