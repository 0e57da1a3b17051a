//! The cluster's storage (PostgreSQL only; docs/architecture.md, "Replicas"): the replica
//! registry, the source leases with their fencing epochs, and the command table. Every time in
//! these statements is the database's clock (`now()`), so replicas never compare their own clocks.

pub mod commands;
pub mod leases;
pub mod replicas;
pub mod slack_budget;
pub mod stream;

use sea_orm::{DbBackend, Statement, Value};

/// A PostgreSQL statement with its values.
fn pg(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// How much of a replica's capacity a source takes, in SQL over `websocket_sources AS s`: one per
/// connection it keeps (a Slack source's `connections`, default 2; a generic source's one).
const WEIGHT: &str = "CASE WHEN s.kind = 'slack' \
     THEN COALESCE((s.config->'settings'->>'connections')::int, 2) ELSE 1 END";
