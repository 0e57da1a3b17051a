//! The compiled automation set in force: rebuilt once per automation change (and periodically, to
//! pick up changes made by other replicas), swapped atomically, read lock-free by dispatch.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use sea_orm::DatabaseConnection;

use crate::db;
use crate::pipeline::automations::AutomationSet;
use crate::queue::lifecycle::RunPolicy;
use crate::queue::schedule::Schedule;

/// What the run queue needs to know of an automation (enabled or not: its runs outlive that).
#[derive(Debug, Clone)]
pub struct AutomationInfo {
    /// Its org.
    pub org_id: uuid::Uuid,
    /// Its name (claims show it).
    pub name: String,
    /// Its queue policy, defaults applied.
    pub policy: RunPolicy,
    /// Its schedule, when it is an enabled schedule automation that parses.
    pub schedule: Option<Schedule>,
    /// What its schedule was planned from (the trigger's text and `updated_at`).
    pub schedule_signature: String,
    /// Last changed.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// Holder of the current automation set.
pub struct AutomationRegistry {
    db: DatabaseConnection,
    current: ArcSwap<AutomationSet>,
    info: ArcSwap<HashMap<uuid::Uuid, AutomationInfo>>,
    reload_lock: tokio::sync::Mutex<()>,
}

impl AutomationRegistry {
    /// Loads the set once.
    pub async fn load(db: DatabaseConnection) -> Result<Arc<AutomationRegistry>, sea_orm::DbErr> {
        let registry = Arc::new(AutomationRegistry {
            db,
            current: ArcSwap::from_pointee(AutomationSet::default()),
            info: ArcSwap::from_pointee(HashMap::new()),
            reload_lock: tokio::sync::Mutex::new(()),
        });
        registry.reload().await?;
        Ok(registry)
    }

    /// The set in force (cheap; the same `Arc` until the next reload).
    pub fn current(&self) -> Arc<AutomationSet> {
        self.current.load_full()
    }

    /// Every automation's name and queue policy, by id (cheap; the same `Arc` until the next
    /// reload).
    pub fn info(&self) -> Arc<HashMap<uuid::Uuid, AutomationInfo>> {
        self.info.load_full()
    }

    /// The queue policy of an automation (the default for one deleted or not loaded yet).
    pub fn policy(&self, automation_id: uuid::Uuid) -> RunPolicy {
        self.info
            .load()
            .get(&automation_id)
            .map(|i| i.policy)
            .unwrap_or_default()
    }

    /// Rebuilds the set from storage and swaps it in. Reloads never interleave, so the newest
    /// committed state always wins.
    pub async fn reload(&self) -> Result<(), sea_orm::DbErr> {
        let _guard = self.reload_lock.lock().await;
        let rows = db::automations::all_automations(&self.db).await?;
        let info = rows
            .iter()
            .map(|r| {
                let policy =
                    RunPolicy::from_columns(r.retry.as_ref(), r.lease_s, r.max_concurrency);
                let schedule = match Schedule::from_trigger(&r.trigger) {
                    Some(Ok(s)) if r.enabled => Some(s),
                    Some(Err(why)) => {
                        tracing::warn!(automation_id = %r.id, error = %why, "schedule skipped: it does not parse");
                        None
                    }
                    _ => None,
                };
                let info = AutomationInfo {
                    org_id: r.org_id,
                    name: r.name.clone(),
                    policy,
                    schedule,
                    schedule_signature: format!("{}|{}", r.trigger, r.updated_at),
                    updated_at: r.updated_at,
                };
                (r.id, info)
            })
            .collect();
        let set = AutomationSet::build(
            rows.into_iter()
                .filter(|r| r.enabled && Schedule::from_trigger(&r.trigger).is_none())
                .map(|r| (r.id, r.org_id, r.trigger)),
        );
        for (id, why) in &set.skipped {
            tracing::warn!(automation_id = %id, error = %why, "automation skipped: it does not compile");
        }
        tracing::debug!(automations = set.len(), "automation set reloaded");
        self.current.store(Arc::new(set));
        self.info.store(Arc::new(info));
        Ok(())
    }
}
