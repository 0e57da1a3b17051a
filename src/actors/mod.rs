//! Actors and the pure policies they apply.

pub mod policy;
pub mod rate_limit;
