//! The reference worker's pure rules: how often to heartbeat, what a finished command reports
//! (its stdout as the result when that is JSON; the tail of its stderr as the error) and the
//! environment a command gets.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// Most bytes of stderr kept as a failed run's error (the end, where the cause usually is).
pub const ERROR_TAIL_BYTES: usize = 4096;
/// Most bytes of stdout sent as a result (the service refuses more than 64 KiB).
pub const MAX_RESULT_BYTES: usize = 60 * 1024;

/// A third of the lease left at `now`, at least 1 s.
pub fn heartbeat_interval(lease_expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Duration {
    let lease = lease_expires_at
        .map(|at| (at - now).to_std().unwrap_or_default())
        .unwrap_or(Duration::from_secs(60));
    (lease / 3).max(Duration::from_secs(1))
}

/// The result of a command that exited 0: its stdout when that is one JSON document small
/// enough to send, else none.
pub fn result_of(stdout: &[u8]) -> Option<Value> {
    if stdout.len() > MAX_RESULT_BYTES {
        return None;
    }
    let text = std::str::from_utf8(stdout).ok()?.trim();
    if text.is_empty() {
        return None;
    }
    serde_json::from_str(text).ok()
}

/// The error of a command that did not exit 0: the tail of its stderr, or how it ended.
pub fn error_of(code: Option<i32>, stderr: &[u8]) -> String {
    let start = stderr.len().saturating_sub(ERROR_TAIL_BYTES);
    let tail = String::from_utf8_lossy(&stderr[start..]).trim().to_owned();
    let how = match code {
        Some(code) => format!("exit status {code}"),
        None => "killed by a signal".to_owned(),
    };
    if tail.is_empty() {
        how
    } else {
        format!("{how}: {tail}")
    }
}

/// The environment a command runs with, besides the worker's own.
pub fn command_env(run_id: &str, attempt: i64) -> [(&'static str, String); 2] {
    [
        ("SWITCHBOARD_RUN_ID", run_id.to_owned()),
        ("SWITCHBOARD_ATTEMPT", attempt.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn heartbeats_at_a_third_of_the_lease() {
        let now = Utc::now();
        let at = now + chrono::Duration::seconds(60);
        assert_eq!(heartbeat_interval(Some(at), now), Duration::from_secs(20));
        assert_eq!(heartbeat_interval(Some(now), now), Duration::from_secs(1));
        assert_eq!(heartbeat_interval(None, now), Duration::from_secs(20));
    }

    #[test]
    fn stdout_is_the_result_when_it_is_json() {
        assert_eq!(
            result_of(b" {\"a\":1}\n"),
            Some(serde_json::json!({"a": 1}))
        );
        assert_eq!(result_of(b"done"), None);
        assert_eq!(result_of(b""), None);
        assert_eq!(result_of(&vec![b'1'; MAX_RESULT_BYTES + 1]), None);
    }

    #[test]
    fn errors_keep_the_tail_of_stderr() {
        assert_eq!(error_of(Some(2), b"bad\n"), "exit status 2: bad");
        assert_eq!(error_of(None, b""), "killed by a signal");
        let long = [b"x".repeat(10_000), b"END".to_vec()].concat();
        let err = error_of(Some(1), &long);
        assert!(err.ends_with("END") && err.len() < ERROR_TAIL_BYTES + 32);
    }
}
