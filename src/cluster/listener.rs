//! Follows the other replicas through PostgreSQL `LISTEN`: a committed source change (created,
//! changed, enabled, disabled, deleted on any replica) is read back and handed to this replica's
//! supervisor; an automation change is applied to this replica's automation index; live-stream
//! messages relayed by other replicas are published here; an operator command for a source held here is executed; new runs committed
//! elsewhere wake the claims waiting here. The connection is re-opened when it drops, and every
//! source is read again then (changes announced meanwhile were missed).

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use entity::websocket_source;
use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{DatabaseConnection, EntityTrait as _};
use uuid::Uuid;

use super::{
    AUTOMATIONS_CHANNEL, ClusterShared, RUNS_CHANNEL, SOURCES_CHANNEL, STREAM_CHANNEL, relay,
};
use crate::actors::commands::{Remove, Update};
use crate::actors::spec::SourceSpec;
use crate::actors::supervisor::SourceSupervisor;
use crate::crypto::Keyring;
use crate::db::cluster::commands;
use crate::queue::notifier::RunNotifier;

/// What the listener needs.
pub struct Listener {
    /// The database URL (a dedicated connection listens).
    pub url: String,
    /// Storage, to read what was announced.
    pub db: DatabaseConnection,
    /// The replica's cluster state.
    pub shared: Arc<ClusterShared>,
    /// Where source changes and commands go.
    pub supervisor: Addr<SourceSupervisor>,
    /// Opens the sources' secrets.
    pub keyring: Arc<Keyring>,
    /// The Slack Web API base (part of a source's spec).
    pub slack_api_base: String,
    /// Wakes waiting claims.
    pub notifier: RunNotifier,
    /// Publishes here what other replicas relay for the live stream.
    pub stream: Arc<dyn Fn(String) -> futures_util::future::BoxFuture<'static, ()> + Send + Sync>,
    /// The automation index, updated for changes made on other replicas.
    pub registry: Arc<crate::actors::registry::AutomationRegistry>,
}

impl Listener {
    /// Listens until the process ends.
    pub async fn run(self) {
        let this = Arc::new(self);
        // Stream batches keep their order on a task of their own, so that a burst of them never
        // holds up a command or a change.
        let (stream_tx, mut stream_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let stream = this.stream.clone();
        actix::spawn(async move {
            while let Some(payload) = stream_rx.recv().await {
                stream(payload).await;
            }
        });
        loop {
            match this.listen(&stream_tx).await {
                Ok(()) => {}
                Err(err) => tracing::warn!(error = %err, "cluster listener failed; reconnecting"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// One listening connection, until it fails. Everything is read again once it listens (what
    /// was announced before, at start-up or while it was down, is not delivered).
    async fn listen(
        self: &Arc<Self>,
        stream: &tokio::sync::mpsc::UnboundedSender<String>,
    ) -> Result<(), sea_orm::sqlx::Error> {
        let mut listener = PgListener::connect(&self.url).await?;
        listener
            .listen_all([
                SOURCES_CHANNEL,
                AUTOMATIONS_CHANNEL,
                commands::CHANNEL,
                RUNS_CHANNEL,
                STREAM_CHANNEL,
            ])
            .await?;
        self.resync().await;
        loop {
            match listener.try_recv().await? {
                Some(note) if note.channel() == STREAM_CHANNEL => {
                    let _ = stream.send(note.payload().to_owned());
                }
                Some(note) if note.channel() == RUNS_CHANNEL => self.notifier.wake_local(),
                Some(note) => {
                    let (this, channel, payload) = (
                        self.clone(),
                        note.channel().to_owned(),
                        note.payload().to_owned(),
                    );
                    actix::spawn(async move { this.handle(&channel, &payload).await });
                }
                // The connection dropped; the next receive re-opens it. Whatever was announced
                // meanwhile is lost: read everything again.
                None => self.resync().await,
            }
        }
    }

    /// A change or a command, each on a task of its own (a change carries its revision, so the
    /// supervisor ignores one that arrives after a newer one).
    async fn handle(&self, channel: &str, payload: &str) {
        match channel {
            AUTOMATIONS_CHANNEL => {
                if let Ok(id) = payload.parse::<Uuid>()
                    && let Err(err) = self.registry.apply(id).await
                {
                    tracing::warn!(error = %err, automation_id = %id, "applying an automation change failed");
                }
            }
            SOURCES_CHANNEL => {
                if let Ok(id) = payload.parse::<Uuid>() {
                    self.reload(id).await;
                    self.shared.nudge.notify_one();
                }
            }
            commands::CHANNEL => {
                if let Ok(id) = payload.parse::<i64>() {
                    let executed =
                        relay::execute(&self.db, &self.shared, &self.supervisor, id).await;
                    if let Err(err) = executed {
                        tracing::warn!(error = %err, command = id, "executing a relayed command failed");
                    }
                }
            }
            _ => {}
        }
    }

    /// Reads one source again and hands it to the supervisor (or tells it the source is gone).
    async fn reload(&self, id: Uuid) {
        match websocket_source::Entity::find_by_id(id).one(&self.db).await {
            Ok(Some(row)) => self.update(&row),
            Ok(None) => self.supervisor.do_send(Remove { source_id: id }),
            Err(err) => {
                tracing::warn!(error = %err, source_id = %id, "reading a changed source failed")
            }
        }
    }

    /// Reads every source (and automation) again.
    async fn resync(&self) {
        if let Err(err) = self.registry.resync().await {
            tracing::warn!(error = %err, "reading the automations again failed");
        }
        match crate::db::sources::all_sources(&self.db).await {
            Ok(rows) => rows.iter().for_each(|row| self.update(row)),
            Err(err) => tracing::warn!(error = %err, "reading the sources again failed"),
        }
    }

    fn update(&self, row: &websocket_source::Model) {
        match SourceSpec::from_row(row, &self.keyring, &self.slack_api_base) {
            Ok(spec) => self.supervisor.do_send(Update {
                spec: Arc::new(spec),
            }),
            Err(err) => {
                tracing::error!(source_id = %row.id, error = format!("{err:#}"), "source cannot start")
            }
        }
    }
}
