//! The state every handler shares: the database pool, the keyring, the settings, and the handles
//! of the actors (handlers only send them typed messages).

use std::sync::Arc;

use actix::Addr;
use sea_orm::DatabaseConnection;

use crate::actors::inbox::deliveries::DeliveryInbox;
use crate::actors::publisher::Publisher;
use crate::actors::registry::AutomationRegistry;
use crate::actors::supervisor::SourceSupervisor;
use crate::config::Settings;
use crate::crypto::Keyring;
use crate::pipeline::ingest::SourceExprs;
use crate::webhooks::inbound::{DeliveryCounters, TokenBucket};

/// Compiled expressions and the `updated_at` of the revision they come from.
pub type CompiledRevision = (chrono::DateTime<chrono::Utc>, Arc<SourceExprs>);

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
    /// The automation index in force.
    pub automations: Arc<AutomationRegistry>,
    /// The webhook deliveries' group commit.
    pub deliveries: DeliveryInbox,
    /// Live observers: webhook ingest publishes here, live-stream sessions subscribe.
    pub publisher: Publisher,
    /// Per-webhook rate-limit buckets (per process).
    pub webhook_limits: std::sync::Mutex<std::collections::HashMap<uuid::Uuid, TokenBucket>>,
    /// Compiled expressions per webhook, with the `updated_at` they were compiled from.
    pub webhook_exprs: std::sync::Mutex<std::collections::HashMap<uuid::Uuid, CompiledRevision>>,
    /// Per-webhook delivery outcome counts (per process).
    pub webhook_counters: DeliveryCounters,
    /// The application's metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// When API keys were last used (coalesced `last_used_at` writes).
    pub key_uses: super::key_uses::KeyUses,
    /// Wakes claims waiting for runs.
    pub notifier: crate::queue::notifier::RunNotifier,
    /// The live-stream sessions of this process (caps, revocation).
    pub stream_sessions: Arc<crate::api::stream::registry::StreamSessions>,
    /// This replica's cluster state (commands for sources held elsewhere are relayed).
    pub cluster: Arc<crate::cluster::ClusterShared>,
}
