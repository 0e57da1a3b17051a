//! Reads that PostgreSQL plans with their values, every time.
//!
//! Prepared statements are cached per connection, and after five executions of one statement
//! text PostgreSQL may switch to a generic plan made without the parameter values. Its guess for
//! an unknown range (`id >= $2 AND id < $3`: 0.5 % of the rows) and an unknown source makes the
//! primary key walk look cheapest for the history lists and the operator's run counts, and at scale that walk reads a whole
//! time window, or every run, for one page. With the values, the planner picks the filter's index
//! (plans in docs/operations.md). Planning a list query takes about a millisecond.

use sea_orm::TransactionTrait as _;
use sea_orm::{ConnectionTrait as _, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr};

/// Begins a read transaction in which PostgreSQL plans each statement with its values
/// (`SET LOCAL plan_cache_mode = force_custom_plan`); on SQLite a plain transaction. Commit or
/// drop it when done.
pub async fn planned_read(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    let txn = db.begin().await?;
    if db.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared("SET LOCAL plan_cache_mode = force_custom_plan")
            .await?;
    }
    Ok(txn)
}
