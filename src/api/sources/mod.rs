//! `/v1/websocket-sources`: configuration of outbound WebSocket sources (admin only to change).
//! Secrets in `config` (`headers`, `secrets`, `app_token`, `tls.client_key`) are write-only: they
//! are sealed and shown back only as names and `has_…` flags.
//!
//! `handlers` are the endpoints (they read the request and answer); `shapes` the request and
//! response bodies; `row` turns a request into the row to store (validation, secrets, network
//! policy); `destination` the DNS part of the URL check; `service` one function per operation
//! (storage, then the message to the supervisor); `view` loads a source as shown.

pub mod destination;
mod handlers;
pub mod row;
pub mod service;
pub mod shapes;
pub mod view;

pub use handlers::*;
