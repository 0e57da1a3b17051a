//! The Slack scenario: a Socket Mode source (2 connections) against the child-process Slack peer,
//! a burst or a paced load: ACK latency and events/s to committed runs.

use std::io::{BufRead as _, BufReader, Lines};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Instant;

use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::json;

use super::env::{Backend, Env, start_app};

/// How the Slack peer sends.
#[derive(Clone, Copy)]
pub(crate) enum SlackLoad {
    /// This many envelopes as fast as the service reads.
    Burst(usize),
    /// Envelopes/s for seconds.
    Paced(usize, usize),
}

impl SlackLoad {
    /// Envelopes in all, and the peer's arguments (`slack RATE COUNT`, RATE 0 for a burst).
    fn peer_args(self) -> (usize, Vec<String>) {
        let (rate, total) = match self {
            SlackLoad::Burst(n) => (0, n),
            SlackLoad::Paced(rate, seconds) => (rate, rate * seconds),
        };
        (
            total,
            vec!["slack".to_owned(), rate.to_string(), total.to_string()],
        )
    }

    fn describe(self) -> String {
        match self {
            SlackLoad::Burst(n) => format!("burst of {n}"),
            SlackLoad::Paced(rate, seconds) => format!("{rate}/s for {seconds} s"),
        }
    }
}

/// The Slack peer as a child process, with its stdout lines after the port it printed first.
fn spawn_slack_peer(args: &[String]) -> (Child, Lines<BufReader<ChildStdout>>, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("peer")
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port = lines.next().unwrap().unwrap();
    (child, lines, port.trim().to_owned())
}

/// The scenario on one engine with one load.
pub(crate) async fn slack(backend: Backend, load: SlackLoad) {
    let mut env = Env::new(backend).await;
    let (total, args) = load.peer_args();
    let (mut child, mut lines, port) = spawn_slack_peer(&args);
    env.settings.slack_api_base = format!("http://127.0.0.1:{port}/api");
    let app = start_app(&env).await;
    app.automations_on("slack", "message", "amount > `100`", 10)
        .await;
    let expected_runs = (total / 2) * 10;
    let started = Instant::now();
    app.post(
        "/v1/websocket-sources",
        json!({"name": "slack", "source": "slack", "kind": "slack",
            "config": {"app_token": "xapp-bench", "connections": 2}}),
    )
    .await;
    app.wait_for_runs(expected_runs).await;
    let elapsed = started.elapsed().as_secs_f64();
    // The peer prints its ACK latencies once every envelope is ACKed.
    let report = tokio::task::spawn_blocking(move || lines.next())
        .await
        .ok()
        .flatten()
        .and_then(Result::ok)
        .unwrap_or_default();
    let ms: Vec<f64> = report
        .split_whitespace()
        .filter_map(|v| v.parse::<f64>().ok())
        .map(|us| us / 1000.0)
        .collect();
    let stored = entity::event::Entity::find().count(&app.db).await.unwrap();
    let committed_runs = entity::automation_run::Entity::find()
        .count(&app.db)
        .await
        .unwrap();
    println!(
        "slack     {:<9} {}: ACK p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {:.0} events/s to committed runs (stored {stored}, runs {committed_runs})",
        backend.name(),
        load.describe(),
        ms.first().copied().unwrap_or(f64::NAN),
        ms.get(1).copied().unwrap_or(f64::NAN),
        ms.get(2).copied().unwrap_or(f64::NAN),
        total as f64 / elapsed,
    );
    let _ = child.kill();
    let _ = child.wait();
    app.stop().await;
}
