//! The compiled automation set in force: rebuilt once per automation change (and periodically, to
//! pick up changes made by other replicas), swapped atomically, read lock-free by dispatch.

use std::sync::Arc;

use arc_swap::ArcSwap;
use sea_orm::DatabaseConnection;

use crate::db;
use crate::pipeline::automations::AutomationSet;

/// Holder of the current automation set.
pub struct AutomationRegistry {
    db: DatabaseConnection,
    current: ArcSwap<AutomationSet>,
    reload_lock: tokio::sync::Mutex<()>,
}

impl AutomationRegistry {
    /// Loads the set once.
    pub async fn load(db: DatabaseConnection) -> Result<Arc<AutomationRegistry>, sea_orm::DbErr> {
        let registry = Arc::new(AutomationRegistry {
            db,
            current: ArcSwap::from_pointee(AutomationSet::default()),
            reload_lock: tokio::sync::Mutex::new(()),
        });
        registry.reload().await?;
        Ok(registry)
    }

    /// The set in force (cheap; the same `Arc` until the next reload).
    pub fn current(&self) -> Arc<AutomationSet> {
        self.current.load_full()
    }

    /// Rebuilds the set from storage and swaps it in. Reloads never interleave, so the newest
    /// committed state always wins.
    pub async fn reload(&self) -> Result<(), sea_orm::DbErr> {
        let _guard = self.reload_lock.lock().await;
        let rows = db::automations::all_enabled_automations(&self.db).await?;
        let set = AutomationSet::build(rows.into_iter().map(|r| (r.id, r.org_id, r.trigger)));
        for (id, why) in &set.skipped {
            tracing::warn!(automation_id = %id, error = %why, "automation skipped: it does not compile");
        }
        tracing::debug!(automations = set.len(), "automation set reloaded");
        self.current.store(Arc::new(set));
        Ok(())
    }
}
