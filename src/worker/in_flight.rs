//! The runs whose commands are running: how many, a wake-up whenever one ends, and the wait for
//! them at shutdown.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use serde_json::Value;

use super::WorkerConfig;
use super::api::Api;
use super::command;

/// The running commands of one worker (single-threaded: the worker runs on one actix arbiter).
#[derive(Clone, Default)]
pub struct InFlight {
    running: Rc<Cell<usize>>,
    freed: Rc<tokio::sync::Notify>,
}

impl InFlight {
    /// Commands running now.
    pub fn count(&self) -> usize {
        self.running.get()
    }

    /// Resolves when a command ends (after this call).
    pub async fn freed(&self) {
        self.freed.notified().await;
    }

    /// Runs the command for `run` in the background.
    pub fn spawn(&self, api: &Api, config: &Rc<WorkerConfig>, run: Value) {
        self.running.set(self.running.get() + 1);
        let (api, config, this) = (api.clone(), config.clone(), self.clone());
        actix_rt::spawn(async move {
            let id = run["id"].clone();
            if let Err(err) = command::handle(&api, &config, run).await {
                tracing::warn!(run_id = %id, error = format!("{err:#}"), "reporting the run failed");
            }
            this.running.set(this.running.get() - 1);
            this.freed.notify_waiters();
        });
    }

    /// Waits up to `grace` for every running command to end and report; answers how many were
    /// still running when the grace period ran out.
    pub async fn drain(&self, grace: Duration) -> usize {
        let drained = tokio::time::timeout(grace, async {
            while self.running.get() > 0 {
                let notified = self.freed.notified();
                if self.running.get() == 0 {
                    break;
                }
                notified.await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                running = self.running.get(),
                "grace period over; their commands are stopped, their leases will expire and the runs be retried"
            );
        }
        self.running.get()
    }
}
