//! The run queue's timekeepers: the watchdog that re-queues runs whose lease expired, and the
//! scheduler that creates one run per schedule tick. The rules they apply are pure and live in
//! [`crate::queue`].

pub mod scheduler;
pub mod watchdog;
