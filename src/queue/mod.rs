//! The run queue: the run lifecycle as pure rules ([`lifecycle`]), the wake-up of waiting claims
//! ([`notifier`]) and the watchdog that re-queues runs whose lease expired ([`watchdog`]).

pub mod lifecycle;
pub mod metrics;
pub mod notifier;
pub mod retention;
pub mod schedule;
pub mod scheduler;
pub mod watchdog;
