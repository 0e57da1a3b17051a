//! `/v1/webhooks`: inbound webhook configuration (admin only to change). Secrets are write-only;
//! a generated secret is returned once, at creation or rotation.
//!
//! `handlers` are the endpoints; `shapes` the request and response bodies; `row` turns a request
//! into the row to store (validation, the secret set); `service` one function per operation.

mod handlers;
pub mod row;
pub mod service;
pub mod shapes;

pub use handlers::*;
