//! Actors and the pure policies they apply: the source supervisor and its source actors, the
//! connection loop they drive, the inbox writer, and the dispatch pool.

pub mod connect;
pub mod connection;
pub mod dial;
pub mod dispatch;
pub mod messages;
pub mod outbound;
pub mod persister;
pub mod policy;
pub mod protocol;
pub mod publisher;
pub mod rate_limit;
pub mod registry;
pub mod runtime;
pub mod slack_open;
pub mod source;
pub mod spec;
pub mod status;
pub mod supervisor;
