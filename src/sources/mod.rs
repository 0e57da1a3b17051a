//! Source configuration and the sans-IO protocol adapters (generic feeds, Slack Socket Mode, the
//! reassembly of fragmented messages). Nothing here imports actix, awc or sea-orm.

pub mod config;
pub mod failure;
pub mod generic;
pub mod reassembly;
pub mod redact;
pub mod slack;
pub mod status;
pub mod validate;
pub mod validate_tls;
