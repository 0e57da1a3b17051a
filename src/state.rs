//! The state every handler shares: the database pool, the keyring and the settings.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::config::Settings;
use crate::crypto::Keyring;

/// Shared, cheaply clonable application state (held in `web::Data`).
pub struct AppState {
    /// The connection pool.
    pub db: DatabaseConnection,
    /// Seals and opens stored secrets.
    pub keyring: Arc<Keyring>,
    /// The validated settings.
    pub settings: Arc<Settings>,
}
