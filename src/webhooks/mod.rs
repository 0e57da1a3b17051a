//! Inbound webhooks: verifier presets and secrets. Pure: no actix, awc or sea-orm.

pub mod inbound;
mod mac;
mod sign;
pub mod verifier;
pub mod verify;
