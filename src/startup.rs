//! Boot order, top to bottom: database → migrations → keyring → first-start bootstrap → HTTP
//! server. `Application::build` binds (port 0 works) and `run_until_stopped` serves.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use anyhow::Context as _;
use tracing_actix_web::TracingLogger;

use crate::config::Settings;
use crate::state::AppState;
use crate::{api, bootstrap, db, keyring_setup, rotate};

/// A built, bound, not yet running service.
pub struct Application {
    port: u16,
    server: Server,
    bootstrap_key: Option<String>,
}

impl Application {
    /// Connects, migrates, loads the keyring, bootstraps and binds.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let db = db::connect(&settings).await?;
        db::migrate(&db).await?;
        let keyring = keyring_setup::load_keyring(&settings)?;
        rotate::verify_all(&db, &keyring).await?;
        let bootstrap_key = bootstrap::bootstrap(&db, &settings).await?;
        let listener = TcpListener::bind(settings.bind)
            .with_context(|| format!("binding {}", settings.bind))?;
        let port = listener
            .local_addr()
            .context("reading the bound address")?
            .port();
        let state = web::Data::new(AppState {
            db,
            keyring: Arc::new(keyring),
            settings: Arc::new(settings),
        });
        let server = HttpServer::new(move || {
            App::new()
                .wrap(TracingLogger::default())
                .app_data(state.clone())
                .configure(api::configure)
        })
        .listen(listener)
        .context("listening")?
        .shutdown_timeout(10)
        .run();
        tracing::info!(port, "listening");
        Ok(Application {
            port,
            server,
            bootstrap_key,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin key created on first start, if this start created one.
    pub fn bootstrap_key(&self) -> Option<&str> {
        self.bootstrap_key.as_deref()
    }

    /// A handle to stop the server gracefully.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped (SIGINT/SIGTERM or the handle).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
