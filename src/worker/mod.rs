//! `switchboard worker`: a reference worker. It long-polls `POST /v1/runs/claim`, runs a command
//! once per run (the run as JSON on stdin, `SWITCHBOARD_RUN_ID` and `SWITCHBOARD_ATTEMPT` in the
//! environment), heartbeats at a third of the lease, completes on exit 0 (stdout as the result
//! when it is JSON) and fails otherwise (the tail of stderr as the error). A heartbeat refused
//! (the run was cancelled or the lease lost) kills the command and reports nothing. On SIGTERM
//! or Ctrl-C it stops claiming, lets running commands finish within the grace period, then
//! exits; runs still running then are killed, and their leases expire and they are retried.

pub mod protocol;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use uuid::Uuid;

/// How the worker is started.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Base URL of the service.
    pub url: String,
    /// A `worker` (or admin) API key.
    pub key: String,
    /// Commands run at once.
    pub concurrency: usize,
    /// Only runs of these automations.
    pub automations: Vec<Uuid>,
    /// How long running commands may take to finish after SIGTERM.
    pub grace: Duration,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Name recorded as the lease owner.
    pub name: String,
}

/// One claimed run as the worker reads it.
#[derive(Debug, Clone, Deserialize)]
struct Claimed {
    id: String,
    attempt: i64,
    lease_token: String,
    lease_expires_at: Option<DateTime<Utc>>,
}

/// The HTTP side.
#[derive(Clone)]
struct Api {
    client: awc::Client,
    url: String,
    key: String,
}

impl Api {
    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let mut response = self
            .client
            .post(format!("{}{path}", self.url))
            .insert_header(("Authorization", format!("Bearer {}", self.key)))
            .send_json(body)
            .await
            .map_err(|e| anyhow::anyhow!("POST {path}: {e}"))?;
        let status = response.status().as_u16();
        let bytes = response
            .body()
            .limit(16 * 1024 * 1024)
            .await
            .map_err(|e| anyhow::anyhow!("POST {path}: reading the answer: {e}"))?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }
}

/// Runs the worker until SIGTERM/SIGINT.
pub async fn run(config: WorkerConfig) -> anyhow::Result<()> {
    anyhow::ensure!(!config.command.is_empty(), "give the command after `--`");
    anyhow::ensure!(config.concurrency >= 1, "--concurrency must be at least 1");
    let api = Api {
        client: awc::Client::builder()
            .timeout(Duration::from_secs(60))
            .finish(),
        url: config.url.trim_end_matches('/').to_owned(),
        key: config.key.clone(),
    };
    let config = Rc::new(config);
    let in_flight = InFlight::default();
    let stop = shutdown_signal();
    tokio::pin!(stop);
    let mut backoff = Duration::from_millis(500);
    tracing::info!(url = %config.url, concurrency = config.concurrency, "worker started");
    loop {
        let free = config.concurrency - in_flight.count();
        if free == 0 {
            tokio::select! {
                _ = &mut stop => break,
                _ = in_flight.freed.notified() => continue,
            }
        }
        let body = claim_body(&config, free);
        let answer = tokio::select! {
            _ = &mut stop => break,
            answer = api.post("/v1/runs/claim", &body) => answer,
        };
        match read_claim(answer)? {
            Claim::Runs(items) => {
                backoff = Duration::from_millis(500);
                for run in items {
                    in_flight.spawn(&api, &config, run);
                }
            }
            Claim::Refused => {}
            Claim::Unreachable => {
                tokio::select! {
                    _ = &mut stop => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
    tracing::info!(
        running = in_flight.count(),
        "stopping: no more claims; waiting for running commands"
    );
    in_flight.drain(config.grace).await;
    Ok(())
}

/// The claim request for up to `free` runs.
fn claim_body(config: &WorkerConfig, free: usize) -> Value {
    let mut body = json!({"limit": free.min(100), "wait_s": 20, "worker": config.name});
    if !config.automations.is_empty() {
        body["automation_ids"] = json!(config.automations);
    }
    body
}

/// What a claim call led to.
enum Claim {
    /// Claimed runs (perhaps none).
    Runs(Vec<Value>),
    /// The service answered with an error other than a refused key: claim again.
    Refused,
    /// The service could not be reached: claim again after a backoff.
    Unreachable,
}

/// Reads a claim's answer; a refused key ends the worker.
fn read_claim(answer: anyhow::Result<(u16, Value)>) -> anyhow::Result<Claim> {
    match answer {
        Ok((200, value)) => Ok(Claim::Runs(
            value["items"].as_array().cloned().unwrap_or_default(),
        )),
        Ok((status @ (401 | 403), value)) => anyhow::bail!(
            "the service refused the key (HTTP {status}): {}",
            value["detail"]
        ),
        Ok((status, value)) => {
            tracing::warn!(status, detail = %value["detail"], "claim refused; retrying");
            Ok(Claim::Refused)
        }
        Err(err) => {
            tracing::warn!(error = %err, "claim failed; retrying");
            Ok(Claim::Unreachable)
        }
    }
}

/// The runs whose commands are running: how many, and a wake-up whenever one ends.
#[derive(Clone, Default)]
struct InFlight {
    running: Rc<Cell<usize>>,
    freed: Rc<tokio::sync::Notify>,
}

impl InFlight {
    fn count(&self) -> usize {
        self.running.get()
    }

    /// Runs the command for `run` in the background.
    fn spawn(&self, api: &Api, config: &Rc<WorkerConfig>, run: Value) {
        self.running.set(self.running.get() + 1);
        let (api, config, this) = (api.clone(), config.clone(), self.clone());
        actix_rt::spawn(async move {
            let id = run["id"].clone();
            if let Err(err) = handle(&api, &config, run).await {
                tracing::warn!(run_id = %id, error = format!("{err:#}"), "reporting the run failed");
            }
            this.running.set(this.running.get() - 1);
            this.freed.notify_waiters();
        });
    }

    /// Waits up to `grace` for every running command to end.
    async fn drain(&self, grace: Duration) {
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
                "grace period over; their leases will expire and the runs be retried"
            );
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Runs the command for one run and reports how it ended.
async fn handle(api: &Api, config: &WorkerConfig, raw: Value) -> anyhow::Result<()> {
    let run: Claimed = serde_json::from_value(raw.clone()).context("reading a claimed run")?;
    let spawned = tokio::process::Command::new(&config.command[0])
        .args(&config.command[1..])
        .envs(protocol::command_env(&run.id, run.attempt))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) => {
            let error = format!("the command could not be started: {err}");
            return report(api, &run, Err(error)).await;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        let input = serde_json::to_vec(&raw).unwrap_or_default();
        actix_rt::spawn(async move {
            // A command that does not read its stdin is not an error.
            let _ = stdin.write_all(&input).await;
        });
    }
    let every = protocol::heartbeat_interval(run.lease_expires_at, Utc::now());
    let output = tokio::select! {
        output = child.wait_with_output() => output.context("waiting for the command")?,
        why = heartbeat_until_refused(api, &run, every) => {
            // Dropping the child kills it (kill_on_drop): the run is no longer ours.
            tracing::warn!(run_id = %run.id, reason = %why, "lease lost; command stopped");
            return Ok(());
        }
    };
    let outcome = if output.status.success() {
        Ok(protocol::result_of(&output.stdout))
    } else {
        Err(protocol::error_of(output.status.code(), &output.stderr))
    };
    report(api, &run, outcome).await
}

/// Extends the run's lease every `every` until the service refuses (the run was cancelled or the
/// lease lost); returns why.
async fn heartbeat_until_refused(api: &Api, run: &Claimed, every: Duration) -> String {
    let path = format!("/v1/runs/{}/heartbeat", run.id);
    let body = json!({"lease_token": run.lease_token});
    loop {
        tokio::time::sleep(every).await;
        match api.post(&path, &body).await {
            Ok((200, _)) => {}
            Ok((409, value)) | Ok((404, value)) => {
                return value["detail"].as_str().unwrap_or("refused").to_owned();
            }
            Ok((status, _)) => {
                tracing::warn!(run_id = %run.id, status, "heartbeat refused; retrying")
            }
            Err(err) => {
                tracing::warn!(run_id = %run.id, error = %err, "heartbeat failed; retrying")
            }
        }
    }
}

/// Completes or fails a run, retrying while the service cannot be reached (the lease bounds it).
async fn report(
    api: &Api,
    run: &Claimed,
    outcome: Result<Option<Value>, String>,
) -> anyhow::Result<()> {
    let (path, body) = match &outcome {
        Ok(result) => {
            let mut body = json!({"lease_token": run.lease_token});
            if let Some(result) = result {
                body["result"] = result.clone();
            }
            (format!("/v1/runs/{}/complete", run.id), body)
        }
        Err(error) => (
            format!("/v1/runs/{}/fail", run.id),
            json!({"lease_token": run.lease_token, "error": error}),
        ),
    };
    let deadline = run.lease_expires_at.unwrap_or_else(Utc::now);
    let mut delay = Duration::from_millis(200);
    loop {
        match api.post(&path, &body).await {
            Ok((200, _)) => {
                tracing::info!(run_id = %run.id, ok = outcome.is_ok(), "run reported");
                return Ok(());
            }
            Ok((status, value)) if status < 500 => {
                anyhow::bail!("HTTP {status}: {}", value["detail"]);
            }
            other => {
                if Utc::now() > deadline + chrono::Duration::seconds(60) {
                    anyhow::bail!("giving up: {other:?}");
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}
