//! `/v1/automations`: triggers that turn matching events into runs.
//!
//! `handlers` are the endpoints; `shapes` the request and response bodies; `checks` the
//! validation of a request (shared with the dry run).

pub mod checks;
mod handlers;
pub mod shapes;

pub use checks::check_trigger;
pub use handlers::*;
pub use shapes::Trigger;
