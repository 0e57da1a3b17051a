//! What a source is, without I/O: its configuration, the sans-IO protocol adapters (generic feeds,
//! Slack Socket Mode, the reassembly of fragmented messages), the vocabulary of connection failures,
//! and the status and counters a source shows. Nothing here imports actix, awc or sea-orm.

pub mod config;
pub mod failure;
pub mod generic;
pub mod kind;
pub mod reassembly;
pub mod secrets_in;
pub mod slack;
pub mod status;
pub mod validate;
pub mod validate_tls;
