//! The pure expression pipeline: JMESPath expressions with Switchboard's filter functions, and the
//! fnmatch globs of a trigger's `on` field. No I/O, no actors: values in, results out.

pub mod automation_index;
pub mod automations;
pub mod event_row;
pub mod expr;
mod functions;
pub mod glob;
pub mod ingest;
pub mod json;

pub use expr::{CompiledExpr, ExprError, ExprErrorKind, Value, is_truthy, to_json, to_value};
pub use glob::{GlobError, OnPatterns, glob_match};
