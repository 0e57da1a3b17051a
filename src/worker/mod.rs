//! `switchboard worker`: a reference worker. It long-polls `POST /v1/runs/claim`, runs a command
//! once per run (the run as JSON on stdin, `SWITCHBOARD_RUN_ID` and `SWITCHBOARD_ATTEMPT` in the
//! environment), heartbeats at a third of the lease, completes on exit 0 (stdout as the result
//! when it is JSON) and fails otherwise (the tail of stderr as the error). A heartbeat refused
//! (the run was cancelled or the lease lost) kills the command and reports nothing.
//!
//! A claim the service answers with an error other than 401/403, or that cannot reach it, is
//! tried again after a capped exponential backoff with jitter ([`backoff::Backoff::CLAIMS`]:
//! 0.5 s doubling to 30 s, each wait between half and all of its step); a 401 or 403 stops the
//! worker with a message saying the key was refused. On SIGTERM or Ctrl-C it stops claiming
//! (waiting for the answer of a claim already sent, and running what it brings), lets running
//! commands finish within the grace period, then exits; commands still running then are
//! killed, and their leases expire and the runs are retried.

mod api;
pub mod backoff;
mod command;
mod in_flight;
pub mod protocol;

use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use uuid::Uuid;

use api::Api;
use backoff::Backoff;
use in_flight::InFlight;

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

/// How long a claim waits for runs (`wait_s`): short enough that a worker told to stop while
/// idle is done within a few seconds (its claim in flight is waited for, see [`run`]).
const CLAIM_WAIT_S: u64 = 5;

/// Runs the worker until SIGTERM/SIGINT (then `Ok`), or until the service refuses its key.
///
/// On SIGTERM the claim in flight, if any, is not abandoned: the service would still hand it
/// runs that no one then works on (until their leases expire). It is waited for (at most
/// [`CLAIM_WAIT_S`], and within the grace period), and the runs it brings are run like the
/// others; no claim is sent after it.
pub async fn run(config: WorkerConfig) -> anyhow::Result<()> {
    anyhow::ensure!(!config.command.is_empty(), "give the command after `--`");
    anyhow::ensure!(config.concurrency >= 1, "--concurrency must be at least 1");
    let api = Api::new(&config.url, &config.key);
    let config = Rc::new(config);
    let in_flight = InFlight::default();
    let stop = crate::signals::stop_requested();
    tokio::pin!(stop);
    let mut backoff = Backoff::CLAIMS;
    tracing::info!(url = %config.url, concurrency = config.concurrency, "worker started");
    let stopped_at = loop {
        let free = config.concurrency - in_flight.count();
        if free == 0 {
            tokio::select! {
                _ = &mut stop => break Instant::now(),
                _ = in_flight.freed() => continue,
            }
        }
        let (answer, stopped_at) = claim(&api, &config, free, stop.as_mut()).await;
        let Some(answer) = answer else {
            break stopped_at.unwrap_or_else(Instant::now);
        };
        match read_claim(answer)? {
            Claim::Runs(items) => {
                backoff.succeeded();
                for run in items {
                    in_flight.spawn(&api, &config, run);
                }
            }
            Claim::Retry(_) if stopped_at.is_some() => {}
            Claim::Retry(why) => {
                let wait = backoff.failed(rand::random());
                let failures = backoff.failures();
                tracing::warn!(%why, failures, retry_in = ?wait, "claim failed; backing off");
                tokio::select! {
                    _ = &mut stop => break Instant::now(),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
        if let Some(at) = stopped_at {
            break at;
        }
    };
    tracing::info!(
        running = in_flight.count(),
        "stopping: no more claims; waiting for running commands"
    );
    in_flight
        .drain(config.grace.saturating_sub(stopped_at.elapsed()))
        .await;
    tracing::info!("worker stopped");
    Ok(())
}

/// Claims up to `free` runs. When `stop` resolves meanwhile, the claim is waited for rather than
/// abandoned (at most the grace period; `None` when that ran out first); answers when the stop
/// came, if it did.
async fn claim(
    api: &Api,
    config: &WorkerConfig,
    free: usize,
    stop: Pin<&mut impl Future<Output = ()>>,
) -> (Option<anyhow::Result<(u16, Value)>>, Option<Instant>) {
    let body = claim_body(config, free);
    let claim = api.post("/v1/runs/claim", &body);
    tokio::pin!(claim);
    tokio::select! {
        answer = &mut claim => (Some(answer), None),
        () = stop => {
            let at = Instant::now();
            tracing::info!("stopping: waiting for the claim in flight");
            let answer = tokio::time::timeout(config.grace, claim).await.ok();
            (answer, Some(at))
        }
    }
}

/// The claim request for up to `free` runs.
fn claim_body(config: &WorkerConfig, free: usize) -> Value {
    let mut body = json!({"limit": free.min(100), "wait_s": CLAIM_WAIT_S, "worker": config.name});
    if !config.automations.is_empty() {
        body["automation_ids"] = json!(config.automations);
    }
    body
}

/// What a claim call led to.
#[derive(Debug, PartialEq)]
enum Claim {
    /// Claimed runs (perhaps none, after the long poll).
    Runs(Vec<Value>),
    /// The service answered another error, or could not be reached: claim again after a
    /// backoff. Says what happened.
    Retry(String),
}

/// Reads a claim's answer; a refused key (401) or role (403) ends the worker.
fn read_claim(answer: anyhow::Result<(u16, Value)>) -> anyhow::Result<Claim> {
    match answer {
        Ok((200, value)) => Ok(Claim::Runs(
            value["items"].as_array().cloned().unwrap_or_default(),
        )),
        Ok((401, value)) => anyhow::bail!(
            "the service refused the key (HTTP 401: {}); give a valid `worker` or admin API key \
             with --key or SWITCHBOARD_KEY",
            detail(&value)
        ),
        Ok((403, value)) => anyhow::bail!(
            "the key may not claim runs (HTTP 403: {}); give a `worker` or admin API key",
            detail(&value)
        ),
        Ok((status, value)) => Ok(Claim::Retry(format!("HTTP {status}: {}", detail(&value)))),
        Err(err) => Ok(Claim::Retry(format!("{err:#}"))),
    }
}

/// The `detail` of a problem+json answer, or what there is instead.
fn detail(value: &Value) -> String {
    match value.get("detail").and_then(Value::as_str) {
        Some(detail) => detail.to_owned(),
        None if value.is_null() => "no JSON answer".to_owned(),
        None => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_refused_key_or_role_stops_and_says_so() {
        let refused = read_claim(Ok((401, json!({"detail": "invalid API key"})))).unwrap_err();
        let refused = refused.to_string();
        assert!(refused.contains("refused the key") && refused.contains("invalid API key"));
        let forbidden = read_claim(Ok((403, json!({"detail": "needs worker"})))).unwrap_err();
        assert!(forbidden.to_string().contains("may not claim runs"));
    }

    #[test]
    fn other_errors_and_unreachable_services_are_retried() {
        let busy = read_claim(Ok((503, json!({"detail": "storage down"})))).unwrap();
        assert_eq!(busy, Claim::Retry("HTTP 503: storage down".to_owned()));
        let proxy = read_claim(Ok((502, Value::Null))).unwrap();
        assert_eq!(proxy, Claim::Retry("HTTP 502: no JSON answer".to_owned()));
        let gone = read_claim(Err(anyhow::anyhow!("connection refused"))).unwrap();
        assert_eq!(gone, Claim::Retry("connection refused".to_owned()));
        let runs = read_claim(Ok((200, json!({"items": [{"id": "r"}]})))).unwrap();
        assert_eq!(runs, Claim::Runs(vec![json!({"id": "r"})]));
    }
}
