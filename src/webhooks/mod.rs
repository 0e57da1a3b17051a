//! Inbound webhooks: verifier presets and secrets. Pure: no actix, awc or sea-orm.

pub mod inbound;
mod mac;
pub mod replay;
pub mod sign;
pub mod verifier;
pub mod verify;
mod verify_error;
