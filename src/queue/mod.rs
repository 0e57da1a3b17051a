//! The run queue: the run lifecycle as pure rules ([`lifecycle`]), schedules ([`schedule`]), the
//! wake-up of waiting claims ([`notifier`]), ingest's priority over claims ([`ingest_first`]),
//! the periodic prune of old events and runs ([`retention`]) and the queue's metrics. The watchdog and the scheduler that apply the rules over
//! time are actors (`actors::run_queue`).

pub mod ingest_first;
pub mod lifecycle;
pub mod metrics;
pub mod notifier;
pub mod retention;
pub mod schedule;
