//! The state every handler shares: the database pool, the keyring, the settings, and the handles
//! of the actors (handlers only send them typed messages).

use std::sync::Arc;

use actix::Addr;
use sea_orm::DatabaseConnection;

use crate::actors::dispatch::DispatchPool;
use crate::actors::registry::AutomationRegistry;
use crate::actors::supervisor::SourceSupervisor;
use crate::config::Settings;
use crate::crypto::Keyring;
use crate::webhooks::inbound::{DeliveryCounters, TokenBucket};

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
    /// Where committed webhook events go.
    pub dispatch: DispatchPool,
    /// Per-webhook rate-limit buckets (per process).
    pub webhook_limits: std::sync::Mutex<std::collections::HashMap<uuid::Uuid, TokenBucket>>,
    /// Per-webhook delivery outcome counts (per process).
    pub webhook_counters: DeliveryCounters,
}
