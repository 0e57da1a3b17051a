//! The reconnect scenario: `sources` generic sources spread over `hosts` destination hosts
//! (127.0.0.2, 127.0.0.3, …, all served by the child-process peer in `hosts_peer.rs`). The service
//! is stopped and a new one started on the same database: time from the start of the new
//! application until every source is connected again. Then the peer drops every socket at once:
//! time until all are back. Finally the peer's accept times per host are checked against the
//! per-host pacing (the benchmark fails when any host saw more than its rate plus its burst).
//!
//! "Connected" is counted by the peer: a WebSocket handshake it completed and whose socket is
//! still open (a generic source without `ready_expr` is connected once it reads that handshake's
//! answer).

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use switchboard::actors::rate_limit::HOST_BURST;

use super::env::{Backend, Env, RunningApp, start_app};

/// Delivery jitter allowed when checking the per-host rate: a connect the service starts on time
/// may complete at the peer up to this much later than the one after it (2.5 connects at 50/s).
const ACCEPT_SLACK_MS: u64 = 50;

/// The peer child process and its command pipe.
pub(crate) struct HostsPeer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    ports: Vec<u16>,
}

impl HostsPeer {
    pub(crate) fn spawn(hosts: usize) -> HostsPeer {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["peer", "hosts", &hosts.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let ports = line
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        HostsPeer {
            child,
            stdin,
            stdout,
            ports,
        }
    }

    pub(crate) fn ask(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim().to_owned()
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
    }

    fn open(&mut self) -> usize {
        self.ask("open").parse().unwrap()
    }

    /// The URL of source `i`: host `i % hosts`.
    fn url(&self, i: usize) -> String {
        let host = i % self.ports.len();
        format!("ws://127.0.0.{}:{}/ws", host + 2, self.ports[host])
    }

    /// Waits until `count` connections are open (at most `limit`); answers how long it took
    /// from `since`, or `None` with the count reached.
    pub(crate) async fn wait_open(
        &mut self,
        count: usize,
        since: Instant,
        limit: Duration,
    ) -> Result<Duration, usize> {
        loop {
            let open = self.open();
            if open >= count {
                return Ok(since.elapsed());
            }
            if since.elapsed() > limit {
                return Err(open);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl HostsPeer {
    /// Waits (at most `limit`) until no connection is open; answers how many still are.
    pub(crate) async fn wait_closed(&mut self, limit: Duration) -> usize {
        let since = Instant::now();
        loop {
            let open = self.open();
            if open == 0 || since.elapsed() > limit {
                return open;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Fails with a clear message when this process may not open enough sockets.
pub(crate) fn check_open_files(needed: usize) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(soft) = soft {
        assert!(
            soft >= needed,
            "the reconnect scenario needs {needed} open files (ulimit -n is {soft}): raise it with `ulimit -n {needed}` first"
        );
    }
}

pub(crate) async fn reconnect(backend: Backend, sources: usize, hosts: usize) {
    check_open_files(sources + 1_000);
    let env = Env::new(backend).await;
    let rate = env.settings.connects_per_second_per_host;
    let mut peer = HostsPeer::spawn(hosts);
    let app = start_app(&env).await;
    let created = Instant::now();
    create_sources(&app, &peer, sources).await;
    let first = peer
        .wait_open(sources, created, Duration::from_secs(300))
        .await;
    println!(
        "reconnect {:<9} {sources} sources over {hosts} hosts created through the API and connected in {:.1} s",
        backend.name(),
        first
            .unwrap_or_else(|open| panic!("only {open} of {sources} connected"))
            .as_secs_f64()
    );
    app.stop().await;
    let left = peer.wait_closed(Duration::from_secs(10)).await;
    let started = Instant::now();
    let app = start_app(&env).await;
    let restart = peer
        .wait_open(sources + left, started, Duration::from_secs(60))
        .await;
    report("restart (process start → all connected)", restart, 5.0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let dropped_at = Instant::now();
    let dropped = peer.ask("drop");
    let back = peer
        .wait_open(sources, dropped_at, Duration::from_secs(60))
        .await;
    report(&format!("peer {dropped} at once → all back"), back, 10.0);
    let check = peer.ask(&format!("check {rate} {HOST_BURST} {ACCEPT_SLACK_MS}"));
    println!(
        "          per-host accept rate (at most {HOST_BURST} + {rate}/s × (window + {ACCEPT_SLACK_MS} ms)): {check}"
    );
    peer.kill();
    app.stop().await;
    assert!(
        check.starts_with("ok"),
        "a host saw more than its per-host rate: {check}"
    );
}

fn report(what: &str, took: Result<Duration, usize>, target_s: f64) {
    match took {
        Ok(took) => {
            let verdict = if took.as_secs_f64() <= target_s {
                "met"
            } else {
                "missed"
            };
            println!(
                "          {what}: {:.2} s (target ≤ {target_s} s: {verdict})",
                took.as_secs_f64()
            );
        }
        Err(open) => println!("          {what}: only {open} connected after the limit (missed)"),
    }
}

/// Creates the sources through the API, 16 requests at a time.
pub(crate) async fn create_sources(app: &RunningApp, peer: &HostsPeer, sources: usize) {
    let urls: Vec<String> = (0..sources).map(|i| peer.url(i)).collect();
    futures_util::stream::iter(urls.iter().enumerate())
        .for_each_concurrent(16, |(i, url)| async move {
            app.source(&format!("r-{i}"), url).await;
        })
        .await;
}
