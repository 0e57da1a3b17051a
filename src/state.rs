//! The state every handler shares: the database pool, the keyring, the settings, and the handles
//! of the actors (handlers only send them typed messages).

use std::sync::Arc;

use actix::Addr;
use sea_orm::DatabaseConnection;

use crate::actors::registry::AutomationRegistry;
use crate::actors::supervisor::SourceSupervisor;
use crate::config::Settings;
use crate::crypto::Keyring;

/// Shared application state (held in `web::Data`).
pub struct AppState {
    /// The connection pool.
    pub db: DatabaseConnection,
    /// Seals and opens stored secrets.
    pub keyring: Arc<Keyring>,
    /// The validated settings.
    pub settings: Arc<Settings>,
    /// The source supervisor.
    pub supervisor: Addr<SourceSupervisor>,
    /// The automation set in force.
    pub automations: Arc<AutomationRegistry>,
}
