//! One claimed run, carried out: its command started with the run on stdin, its lease extended
//! at a third of the lease while it runs, and its end reported (complete on exit 0, fail
//! otherwise), retrying with backoff while the service cannot take the report.

use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

use super::WorkerConfig;
use super::api::Api;
use super::backoff::Backoff;
use super::protocol;

/// One claimed run as the worker reads it.
#[derive(Debug, Clone, Deserialize)]
struct Claimed {
    id: String,
    attempt: i64,
    lease_token: String,
    lease_expires_at: Option<DateTime<Utc>>,
}

/// Runs the command for one run (`raw`, as the claim answered it) and reports how it ended.
pub async fn handle(api: &Api, config: &WorkerConfig, raw: Value) -> anyhow::Result<()> {
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

/// Extends the run's lease every `every` until the service refuses (the run was cancelled, the
/// lease lost, or the key refused); returns why. A heartbeat that fails otherwise is tried again
/// sooner, with backoff up to `every`.
async fn heartbeat_until_refused(api: &Api, run: &Claimed, every: Duration) -> String {
    let path = format!("/v1/runs/{}/heartbeat", run.id);
    let body = json!({"lease_token": run.lease_token});
    let mut backoff = Backoff::new(Duration::from_millis(500), every);
    let mut wait = every;
    loop {
        tokio::time::sleep(wait).await;
        match api.post(&path, &body).await {
            Ok((200, _)) => {
                backoff.succeeded();
                wait = every;
            }
            Ok((status @ (401 | 403 | 404 | 409), value)) => {
                let detail = value["detail"].as_str().unwrap_or("refused");
                return format!("HTTP {status}: {detail}");
            }
            Ok((status, _)) => {
                wait = backoff.failed(rand::random());
                tracing::warn!(run_id = %run.id, status, retry_in = ?wait, "heartbeat refused; retrying");
            }
            Err(err) => {
                wait = backoff.failed(rand::random());
                tracing::warn!(run_id = %run.id, error = %err, retry_in = ?wait, "heartbeat failed; retrying");
            }
        }
    }
}

/// Completes or fails a run, retrying with backoff while the service answers 5xx or cannot be
/// reached, until a minute after the lease ran out (by then the run went back to the queue).
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
    let deadline = run.lease_expires_at.unwrap_or_else(Utc::now) + chrono::Duration::seconds(60);
    let mut backoff = Backoff::REPORTS;
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
                if Utc::now() > deadline {
                    anyhow::bail!("giving up: {other:?}");
                }
                let wait = backoff.failed(rand::random());
                tracing::warn!(run_id = %run.id, answer = ?other, retry_in = ?wait, "report failed; retrying");
                tokio::time::sleep(wait).await;
            }
        }
    }
}
