//! Source configuration and (later) the sans-IO protocol adapters. Nothing here imports actix,
//! awc or sea-orm.

pub mod config;
pub mod generic;
pub mod redact;
pub mod slack;
pub mod validate;
pub mod validate_tls;
