//! Schema migrations, run at start-up and by `switchboard migrate`; every migration runs unchanged on
//! SQLite and PostgreSQL.
pub use sea_orm_migration::prelude::*;

mod m20261123_000001_create_tables;
mod m20261202_000001_add_run_source;
mod m20261202_000002_add_event_replay_key;
mod m20261202_000003_history_indexes;
mod m20261203_000001_run_queue;
mod m20261203_000002_retention_index;
mod m20261204_000001_runs_automation_status_index;
mod m20261205_000001_drop_run_list_indexes;
mod m20261206_000001_cluster;

/// The ordered list of Switchboard's migrations.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_create_tables::Migration),
            Box::new(m20261202_000001_add_run_source::Migration),
            Box::new(m20261202_000002_add_event_replay_key::Migration),
            Box::new(m20261202_000003_history_indexes::Migration),
            Box::new(m20261203_000001_run_queue::Migration),
            Box::new(m20261203_000002_retention_index::Migration),
            Box::new(m20261204_000001_runs_automation_status_index::Migration),
            Box::new(m20261205_000001_drop_run_list_indexes::Migration),
            Box::new(m20261206_000001_cluster::Migration),
        ]
    }
}
