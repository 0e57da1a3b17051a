//! Integration tests: the real application on a random port, against real SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;
mod http_peer;
mod ledger_peer;
mod peer;
mod peer_support;
mod pgtemp;
mod pki;
#[path = "../support/process.rs"]
#[allow(dead_code)]
mod process;
mod slack_peer;
mod tls_front;

mod automation_index;
mod automations;
mod checkpointer;
mod cluster;
mod cluster_faults;
mod contract_snapshots;
mod durability;
mod events_runs;
mod expressions;
mod faults;
mod group_commit;
mod health;
mod history;
mod hostile;
mod inbound;
mod inbox;
mod ingest;
mod isolation;
mod keys;
mod metrics;
mod outbound;
mod page;
mod protocol;
mod retention;
mod rotation;
mod run_counts;
mod schedules;
mod secrets;
mod slack;
mod sources;
mod status;
mod stream;
mod supervision;
mod tls;
mod tls_slack;
mod webhooks;
mod worker_backoff;
mod worker_batches;
mod worker_process;
mod worker_shutdown;
mod workers;
