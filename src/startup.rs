//! Boot order, top to bottom: database → migrations → keyring → first-start bootstrap → automation
//! set → dispatch pool → webhook deliveries' writer → source supervisor (and recovery of undispatched
//! events) → HTTP server.
//! `Application::build` binds (port 0 works) and `run_until_stopped` serves, then shuts the
//! sources down gracefully.

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor as _, Addr};
use actix_web::dev::Server;
use actix_web::web;
use anyhow::Context as _;
use sea_orm::DatabaseConnection;

use crate::actors::commands::Shutdown;
use crate::actors::dispatch::DispatchPool;
use crate::actors::inbox::deliveries::{DeliveryCtx, DeliveryInbox};
use crate::actors::publisher::Publisher;
use crate::actors::registry::AutomationRegistry;

use crate::actors::runtime::{SourceRuntime, StatusWriter};
use crate::actors::spec::SourceSpec;
use crate::actors::supervisor::SourceSupervisor;
use crate::api::server::{api_server, bind, metrics_server};
use crate::api::state::AppState;
use crate::cluster::ClusterShared;
use crate::config::Settings;
use crate::crypto::Keyring;
use crate::metrics::Metrics;
use crate::queue::notifier::RunNotifier;
use crate::{bootstrap, db, keyring_setup, rotate};

mod database;
mod upkeep;
use database::open_database;
use upkeep::{Upkeep, spawn_maintenance, spawn_queue_upkeep};

/// How long graceful shutdown of the sources may take.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a replica's stop waits for the other replicas to take its sources over.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stop waits for the sources' last status to be written.
const STATUS_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// A built, bound, not yet running service.
pub struct Application {
    port: u16,
    server: Server,
    supervisor: Addr<SourceSupervisor>,
    /// Persists source status; drained before the process ends.
    status: StatusWriter,
    /// Background loops and the watchdog, stopped before the process ends.
    upkeep: Upkeep,
    publisher: Publisher,
    bootstrap_key: Option<String>,
    metrics_server: Option<(Server, u16)>,
    metrics: Arc<Metrics>,
    /// SQLite only: the WAL checkpointer, stopped when serving ends (declared first: stopped
    /// before the hold on the file below is released).
    _checkpointer: Option<db::Checkpointer>,
    /// SQLite only: this process's hold on the database file, released when serving ends.
    _node_lock: Option<db::single_node::NodeLock>,
    /// This replica's cluster state (a single node's when not clustered).
    cluster: Arc<ClusterShared>,
    db: DatabaseConnection,
}

impl Application {
    /// Connects, migrates, loads the keyring, bootstraps, starts the actors and binds. A
    /// first-start admin key is not announced (see [`Application::build_announcing`]).
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        Self::build_announcing(settings, |_| {}).await
    }

    /// [`Application::build`], handing a random first-start admin key to `announce` before it is
    /// stored.
    pub async fn build_announcing(
        settings: Settings,
        announce: impl FnOnce(bootstrap::NewAdminKey<'_>),
    ) -> anyhow::Result<Application> {
        let (node_lock, db, checkpointer) = open_database(&settings).await?;
        let keyring = Arc::new(keyring_setup::load_keyring(&settings)?);
        rotate::verify_all(&db, &keyring).await?;
        let bootstrap_key = bootstrap::bootstrap(&db, &settings, announce).await?;
        let cluster = crate::cluster::join(&settings, &db).await?;
        let Actors {
            registry,
            publisher,
            metrics,
            notifier,
            deliveries,
            supervisor,
            status,
            upkeep,
        } = start_actors(&settings, &db, &keyring, &cluster).await?;
        let (listener, port) = bind(settings.bind)?;
        let stream_sessions = crate::api::stream::registry::StreamSessions::new(
            settings.stream_max_sessions,
            settings.stream_max_sessions_per_key,
        );
        let state = web::Data::new(AppState {
            db,
            deliveries,
            keyring,
            settings: Arc::new(settings),
            supervisor: supervisor.clone(),
            automations: registry,
            publisher: publisher.clone(),
            webhook_limits: std::sync::Mutex::new(std::collections::HashMap::new()),
            webhook_counters: Default::default(),
            webhook_exprs: Default::default(),
            metrics,
            key_uses: Default::default(),
            notifier,
            stream_sessions,
            cluster: cluster.clone(),
        });
        let (app_metrics, db_handle) = (state.metrics.clone(), state.db.clone());
        let metrics_server = (state.settings.metrics_bind)
            .map(|bind| metrics_server(bind, state.clone()))
            .transpose()?;
        let server = api_server(state, listener, metrics_server.is_none())?;
        tracing::info!(port, "listening");
        Ok(Application {
            port,
            server,
            supervisor,
            status,
            upkeep,
            publisher,
            bootstrap_key,
            metrics_server,
            metrics: app_metrics,
            _node_lock: node_lock,
            _checkpointer: checkpointer,
            cluster,
            db: db_handle,
        })
    }

    /// The application's metrics (benchmarks read counters from here).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The port `GET /metrics` is served on when `metrics_bind` gives it its own listener.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_server.as_ref().map(|(_, port)| *port)
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin key created on first start, if this start created one.
    pub fn bootstrap_key(&self) -> Option<&str> {
        self.bootstrap_key.as_deref()
    }

    /// The internal publisher (live observers subscribe here).
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// A handle to stop the server gracefully.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped (SIGINT/SIGTERM or the handle), then closes every source gracefully:
    /// stop reading, finish in-flight persists and ACKs, close frames (bounded).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let metrics = self.metrics_server.map(|(server, _)| {
            let handle = server.handle();
            actix_web::rt::spawn(server);
            handle
        });
        // `POST /v1/cluster/drain` stops the server like a SIGTERM does.
        let (server, cluster) = (self.server.handle(), self.cluster.clone());
        actix_web::rt::spawn(async move {
            cluster.stop_requested.notified().await;
            tracing::info!("drain requested; stopping");
            server.stop(true).await;
        });
        let served = self.server.await;
        if let Some(handle) = metrics {
            handle.stop(true).await;
        }
        tracing::info!("HTTP server stopped; closing sources");
        // With replicas: hand the sources over to the others first (make-before-break).
        self.cluster.drain(DRAIN_TIMEOUT).await;
        self.cluster.stop_coordinating();
        let _ = self
            .supervisor
            .send(Shutdown {
                timeout: SHUTDOWN_TIMEOUT,
                farewell: None,
            })
            .await;
        // The sources' last counters are queued now: write them before the runtime goes (a
        // write cut off mid-statement would also panic as the runtime is dropped).
        if tokio::time::timeout(STATUS_FLUSH_TIMEOUT, self.status.flushed())
            .await
            .is_err()
        {
            tracing::warn!("source status not written before the process ended");
        }
        self.upkeep.stop().await;
        self.cluster.leave(&self.db).await;
        served
    }
}

/// Loads every source, starts the supervisor, and dispatches what was committed but not yet
/// dispatched before the last stop.
async fn start_sources(
    settings: &Settings,
    db: &DatabaseConnection,
    keyring: &Keyring,
    dispatch: DispatchPool,
    publisher: Publisher,
    metrics: Arc<Metrics>,
    cluster: &Arc<ClusterShared>,
) -> anyhow::Result<(Addr<SourceSupervisor>, StatusWriter)> {
    if !cluster.enabled {
        // A single node runs every source: status written under any earlier replica's epoch
        // must not refuse its writes.
        db::status::reset_epochs(db)
            .await
            .context("resetting source status epochs")?;
    }
    let rows = db::sources::all_sources(db)
        .await
        .context("loading sources")?;
    let ids = rows.iter().map(|r| r.id).collect();
    let counters: std::collections::HashMap<_, _> = db::sources::find_statuses(db, ids)
        .await
        .context("loading source status")?
        .into_iter()
        .map(|s| (s.source_id, s.counters))
        .collect();
    let mut initial = Vec::new();
    for row in &rows {
        match SourceSpec::from_row(row, keyring, &settings.slack_api_base) {
            Ok(spec) => initial.push((
                Arc::new(spec),
                counters.get(&row.id).cloned().unwrap_or_default(),
            )),
            Err(err) => {
                tracing::error!(source_id = %row.id, error = format!("{err:#}"), "source cannot start")
            }
        }
    }
    let rt = SourceRuntime::build(
        settings,
        db,
        dispatch.clone(),
        publisher,
        metrics,
        cluster.epochs.clone(),
    )?;
    let status = rt.status.clone();
    let supervisor = SourceSupervisor::new(rt, initial).start();
    let recovered = dispatch
        .recover(db, None, None)
        .await
        .context("recovering undispatched events")?;
    if recovered > 0 {
        tracing::info!(
            events = recovered,
            "dispatching events committed before the last stop"
        );
    }
    Ok((supervisor, status))
}

/// The pool of dispatch actors.
fn start_dispatch(
    settings: &Settings,
    db: &DatabaseConnection,
    registry: &Arc<AutomationRegistry>,
    publisher: &Publisher,
    metrics: &Arc<Metrics>,
    notifier: &RunNotifier,
) -> DispatchPool {
    DispatchPool::start(
        settings.dispatch_workers(),
        settings.dispatch_queue_limit,
        db.clone(),
        registry.clone(),
        publisher.clone(),
        metrics.clone(),
        notifier.clone(),
    )
}

/// With replicas: the coordinator, the listener, the announcer of new runs and the live stream's
/// relay.
fn start_cluster(
    listener: crate::cluster::listener::Listener,
    publisher: Publisher,
    dispatch: DispatchPool,
) {
    let (db, cluster) = (listener.db.clone(), listener.shared.clone());
    crate::cluster::spawn(listener, dispatch);
    let relay = crate::api::stream::relay::relay(db, cluster.clone(), publisher);
    cluster.track(actix::spawn(relay));
}

/// The actors and what they share, started.
struct Actors {
    registry: Arc<AutomationRegistry>,
    publisher: Publisher,
    metrics: Arc<Metrics>,
    notifier: RunNotifier,
    deliveries: DeliveryInbox,
    supervisor: Addr<SourceSupervisor>,
    status: StatusWriter,
    upkeep: Upkeep,
}

/// Loads the automation index, starts the dispatch pool, the webhook deliveries' writer, the
/// source supervisor and the background upkeep.
async fn start_actors(
    settings: &Settings,
    db: &DatabaseConnection,
    keyring: &Arc<Keyring>,
    cluster: &Arc<ClusterShared>,
) -> anyhow::Result<Actors> {
    let registry = AutomationRegistry::load(db.clone())
        .await
        .context("loading automations")?;
    let publisher = Publisher::new();
    let metrics = Arc::new(Metrics::new());
    let notifier = RunNotifier::new();
    let dispatch = start_dispatch(settings, db, &registry, &publisher, &metrics, &notifier);
    let (supervisor, status) = start_sources(
        settings,
        db,
        keyring,
        dispatch.clone(),
        publisher.clone(),
        metrics.clone(),
        cluster,
    )
    .await?;
    if cluster.enabled {
        start_cluster(
            crate::cluster::listener::Listener {
                url: settings.database_url(),
                db: db.clone(),
                shared: cluster.clone(),
                supervisor: supervisor.clone(),
                keyring: keyring.clone(),
                slack_api_base: settings.slack_api_base.clone(),
                notifier: notifier.clone(),
                registry: registry.clone(),
                stream: crate::api::stream::relay::receiver(
                    db.clone(),
                    cluster.replica_id,
                    publisher.clone(),
                ),
            },
            publisher.clone(),
            dispatch.clone(),
        );
    }
    let mut upkeep = spawn_queue_upkeep(
        settings, db, &registry, &notifier, &metrics, &publisher, cluster,
    );
    upkeep.add(spawn_maintenance(db, &dispatch, cluster));
    let deliveries = DeliveryInbox::start(DeliveryCtx {
        db: db.clone(),
        dispatch,
        metrics: metrics.clone(),
        publisher: publisher.clone(),
    });
    Ok(Actors {
        registry,
        publisher,
        metrics,
        notifier,
        deliveries,
        supervisor,
        status,
        upkeep,
    })
}
