//! The actors and the pure policies they apply.
//!
//! - [`supervisor`]: the `SourceSupervisor`, one per process: one `SourceActor` per enabled
//!   source, restarted when it stops unexpectedly; routes the API's [`commands`].
//! - [`source`]: the `SourceActor` of one source and its pure supervision [`source::board`].
//! - [`connection`]: the `ConnectionActor` of one connection, its loop and the protocol driver.
//! - [`inbox`]: the shared inbox writers that group-commit every connection's messages.
//! - [`dispatch`]: the dispatch pool that runs the trigger pipeline on committed events.
//! - [`run_queue`]: the run queue's watchdog and schedule ticks.
//! - [`publisher`], [`registry`], [`runtime`], [`spec`]: what they share.
//! - [`policy`], [`rate_limit`], [`restart_budget`]: pure decisions (backoff, connect pacing,
//!   restart intensity).

pub mod commands;
pub mod connection;
pub mod dispatch;
pub mod epochs;
pub mod inbox;
pub mod policy;
pub mod publisher;
pub mod rate_limit;
pub mod registry;
pub mod restart_budget;
pub mod run_queue;
pub mod runtime;
pub mod source;
pub mod spec;
pub mod supervisor;
