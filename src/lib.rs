//! Switchboard keeps persistent outbound WebSocket connections to event sources and accepts signed
//! webhooks, turns every message into a durable event, matches it against automations and
//! enqueues one PENDING run per match.

#![warn(clippy::too_many_lines)]

pub mod actors;
pub mod api;
pub mod auth;
pub mod bootstrap;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod crypto;
pub mod db;
pub mod dns;
pub mod error;
pub mod keyring_setup;
pub mod metrics;
pub mod netpolicy;
pub mod pipeline;
pub mod queue;
pub mod recently;
pub mod redact;
pub mod rotate;
pub mod sealed;
pub mod signals;
pub mod sources;
pub mod startup;
pub mod telemetry;
pub mod tls;
pub mod validation;
pub mod webhooks;
pub mod worker;
