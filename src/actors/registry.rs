//! The automation index in force and every automation's queue facts, published as snapshots that
//! dispatch and the run queue read lock-free. Changes are applied one automation at a time by the
//! [`indexer::AutomationIndexer`] on its own arbiter: never on the HTTP workers' threads nor on the
//! source supervisor's.

mod indexer;
mod rows;

use std::sync::Arc;

use actix::Addr;
use arc_swap::ArcSwap;
use sea_orm::{DatabaseConnection, DbErr};
use uuid::Uuid;

pub use indexer::{ApplyChange, AutomationIndexer, RESYNC_INTERVAL, Resync};
pub use rows::AutomationInfo;

use crate::pipeline::automation_index::AutomationIndex;
use crate::queue::lifecycle::RunPolicy;

/// Every automation's queue facts by id (a persistent map: a snapshot is an O(1) clone).
pub type InfoMap = imbl::HashMap<Uuid, Arc<AutomationInfo>>;

/// What readers see: swapped by the indexer after every change.
#[derive(Default)]
pub(crate) struct Published {
    index: ArcSwap<AutomationIndex>,
    info: ArcSwap<InfoMap>,
}

/// Holder of the automation snapshots in force and the address of the indexer that changes them.
pub struct AutomationRegistry {
    published: Arc<Published>,
    indexer: Addr<AutomationIndexer>,
}

impl AutomationRegistry {
    /// Loads every automation once (the only full load) and starts the indexer on its own
    /// arbiter. Needs a running actix system.
    pub async fn load(db: DatabaseConnection) -> Result<Arc<AutomationRegistry>, DbErr> {
        let published = Arc::new(Published::default());
        let indexer = AutomationIndexer::load(db, published.clone()).await?;
        Ok(Arc::new(AutomationRegistry { published, indexer }))
    }

    /// The index in force (cheap; the same `Arc` until the next change).
    pub fn current(&self) -> Arc<AutomationIndex> {
        self.published.index.load_full()
    }

    /// Every automation's name and queue policy, by id (cheap; the same `Arc` until the next
    /// change).
    pub fn info(&self) -> Arc<InfoMap> {
        self.published.info.load_full()
    }

    /// The queue policy of an automation (the default for one deleted or not loaded yet).
    pub fn policy(&self, automation_id: Uuid) -> RunPolicy {
        self.published
            .info
            .load()
            .get(&automation_id)
            .map(|i| i.policy)
            .unwrap_or_default()
    }

    /// Applies what storage now holds of automation `id` (created, changed or deleted) and
    /// answers once readers see it: a handler that awaits this after its commit gives its caller
    /// read-your-writes (the next event dispatched matches the change).
    pub async fn apply(&self, id: Uuid) -> Result<(), DbErr> {
        self.indexer
            .send(ApplyChange { id })
            .await
            .map_err(|err| DbErr::Custom(format!("automation indexer: {err}")))?
    }

    /// Compares every stored automation's `updated_at` with the index and applies what differs
    /// (changes made through other replicas); answers how many automations changed. The indexer
    /// also does this every [`RESYNC_INTERVAL`].
    pub async fn resync(&self) -> Result<usize, DbErr> {
        self.indexer
            .send(Resync)
            .await
            .map_err(|err| DbErr::Custom(format!("automation indexer: {err}")))?
    }
}
