//! Inbound webhooks: verifier presets and secrets. Pure: no actix, awc or sea-orm.

pub mod inbound;
pub mod verifier;
pub mod verify;
