//! The one writer of the automation snapshots: applies one automation change at a time (load that
//! row, compile it with the shared glob interner, swap in the new snapshots) on its own arbiter,
//! so neither compilation nor storage round trips run on the HTTP workers' or the supervisor's
//! threads. Changes never interleave: each holds the writer's lock from its read of storage to
//! the swap, so the newest committed state of a row always wins.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr, Arbiter, AsyncContext, Context, Handler, Message, ResponseFuture};
use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::rows::{indexed_row, info_of};
use super::{InfoMap, Published};
use crate::db;
use crate::pipeline::automation_index::IndexWriter;

/// How often the indexer compares storage with the index (changes made through other replicas).
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(10);

/// Apply what storage now holds of one automation. Sent by the automation API handlers (through
/// `AutomationRegistry::apply`) after they commit a create, PATCH or delete; answered by the
/// indexer once the new snapshots are swapped in.
#[derive(Debug)]
pub struct ApplyChange {
    /// The automation created, changed or deleted.
    pub id: Uuid,
}

impl Message for ApplyChange {
    type Result = Result<(), DbErr>;
}

/// Compare every stored automation's `updated_at` with the index and apply what differs. Sent by
/// the indexer's own timer every [`RESYNC_INTERVAL`] (and by `AutomationRegistry::resync`);
/// answered with the number of automations changed.
#[derive(Debug)]
pub struct Resync;

impl Message for Resync {
    type Result = Result<usize, DbErr>;
}

/// The writer's state: the index with its glob interner, and every automation's queue facts.
struct Writer {
    index: IndexWriter,
    info: InfoMap,
}

/// The actor that owns the writer (see the module docs).
pub struct AutomationIndexer {
    db: DatabaseConnection,
    published: Arc<Published>,
    writer: Arc<Mutex<Writer>>,
}

impl AutomationIndexer {
    /// Loads every automation (the full load at start), publishes it, and starts the indexer on
    /// a new arbiter of the running system.
    pub(super) async fn load(
        db: DatabaseConnection,
        published: Arc<Published>,
    ) -> Result<Addr<AutomationIndexer>, DbErr> {
        let rows = db::automations::all_automations(&db).await?;
        let info: InfoMap = rows.iter().map(|r| (r.id, Arc::new(info_of(r)))).collect();
        let (index, skipped) = IndexWriter::build(rows.iter().filter_map(indexed_row));
        for (id, why) in &skipped {
            tracing::warn!(automation_id = %id, error = %why, "automation skipped: it does not compile");
        }
        tracing::debug!(
            automations = index.index().len(),
            globs = index.globs().len(),
            "automation index loaded"
        );
        let writer = Writer { index, info };
        writer.publish(&published);
        let writer = Arc::new(Mutex::new(writer));
        let arbiter = Arbiter::new();
        Ok(AutomationIndexer::start_in_arbiter(
            &arbiter.handle(),
            move |_| AutomationIndexer {
                db,
                published,
                writer,
            },
        ))
    }
}

impl Writer {
    fn publish(&self, published: &Published) {
        published.index.store(Arc::new(self.index.snapshot()));
        published.info.store(Arc::new(self.info.clone()));
    }

    /// Takes in what storage holds of automation `id` (`None`: deleted).
    fn take(&mut self, id: Uuid, row: Option<&entity::automation::Model>) {
        match row {
            Some(row) => self.info.insert(id, Arc::new(info_of(row))),
            None => self.info.remove(&id),
        };
        if let Err(why) = self.index.apply(id, row.and_then(indexed_row)) {
            tracing::warn!(automation_id = %id, error = %why, "automation skipped: it does not compile");
        }
    }
}

async fn apply_one(
    db: &DatabaseConnection,
    writer: &Mutex<Writer>,
    published: &Published,
    id: Uuid,
) -> Result<(), DbErr> {
    let mut writer = writer.lock().await;
    let row = db::automations::find_automation_by_id(db, id).await?;
    writer.take(id, row.as_ref());
    writer.publish(published);
    Ok(())
}

async fn resync(
    db: &DatabaseConnection,
    writer: &Mutex<Writer>,
    published: &Published,
) -> Result<usize, DbErr> {
    let mut writer = writer.lock().await;
    let stored: HashMap<Uuid, chrono::DateTime<chrono::Utc>> =
        db::automations::automation_versions(db)
            .await?
            .into_iter()
            .collect();
    let gone = writer.info.keys().filter(|id| !stored.contains_key(id));
    let changed = stored
        .iter()
        .filter(|(id, at)| writer.info.get(*id).is_none_or(|i| i.updated_at != **at));
    let ids: Vec<Uuid> = gone.copied().chain(changed.map(|(id, _)| *id)).collect();
    let mut rows: HashMap<Uuid, entity::automation::Model> =
        db::automations::automations_by_ids(db, &ids)
            .await?
            .into_iter()
            .map(|row| (row.id, row))
            .collect();
    for id in &ids {
        writer.take(*id, rows.remove(id).as_ref());
    }
    if !ids.is_empty() {
        tracing::debug!(changed = ids.len(), "automation index resynchronised");
        writer.publish(published);
    }
    Ok(ids.len())
}

impl Actor for AutomationIndexer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(RESYNC_INTERVAL, |indexer, ctx| {
            let (db, writer, published) = indexer.parts();
            ctx.spawn(actix::fut::wrap_future(async move {
                if let Err(err) = resync(&db, &writer, &published).await {
                    tracing::warn!(error = %err, "resynchronising automations failed");
                }
            }));
        });
    }
}

impl AutomationIndexer {
    fn parts(&self) -> (DatabaseConnection, Arc<Mutex<Writer>>, Arc<Published>) {
        (self.db.clone(), self.writer.clone(), self.published.clone())
    }
}

impl Handler<ApplyChange> for AutomationIndexer {
    type Result = ResponseFuture<Result<(), DbErr>>;

    fn handle(&mut self, msg: ApplyChange, _: &mut Context<Self>) -> Self::Result {
        let (db, writer, published) = self.parts();
        Box::pin(async move { apply_one(&db, &writer, &published, msg.id).await })
    }
}

impl Handler<Resync> for AutomationIndexer {
    type Result = ResponseFuture<Result<usize, DbErr>>;

    fn handle(&mut self, _: Resync, _: &mut Context<Self>) -> Self::Result {
        let (db, writer, published) = self.parts();
        Box::pin(async move { resync(&db, &writer, &published).await })
    }
}
