//! When API keys were last used, recorded without a write per request.

use uuid::Uuid;

use crate::db;

/// How often a key's `last_used_at` is written at most.
pub const KEY_USE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Records when keys are used without a write per request: at most one `last_used_at` write per
/// key per [`KEY_USE_INTERVAL`] in this process, made in the background through the SQLite write
/// gate (never on the request's path). The database update also skips rows written less than a
/// minute ago, for other processes.
#[derive(Default)]
pub struct KeyUses {
    last: std::sync::Mutex<std::collections::HashMap<Uuid, std::time::Instant>>,
}

impl KeyUses {
    /// Notes that `key_id` was used now; writes it when its last write is older than the interval.
    pub fn record(&self, db: &sea_orm::DatabaseConnection, key_id: Uuid) {
        let now = std::time::Instant::now();
        {
            let mut last = self
                .last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last
                .get(&key_id)
                .is_some_and(|at| now.duration_since(*at) < KEY_USE_INTERVAL)
            {
                return;
            }
            last.insert(key_id, now);
        }
        let db = db.clone();
        actix::spawn(async move {
            let touch = db::api_keys::touch_api_key(&db, key_id, db::now());
            if let Err(err) = db::gated(&db, touch).await {
                tracing::debug!(error = %err, "recording a key's use failed");
            }
        });
    }
}
