//! A worker over HTTP as a busy real one runs: batched claims (long-polling when asked to) and
//! one batched completion per claim, until the queue is empty or it is told to stop.

use std::cell::Cell;
use std::rc::Rc;

use super::*;

/// When a worker stops.
#[derive(Clone)]
pub(super) enum Until {
    /// At the first claim that comes back empty.
    Empty,
    /// Once the flag is set (claims long-poll meanwhile).
    Stopped(Rc<Cell<bool>>),
}

/// `POST`s `body` with the worker key; panics unless 2xx.
pub(super) async fn post(client: &awc::Client, url: String, key: &str, body: Value) -> Value {
    let mut res = client
        .post(url)
        .insert_header(("Authorization", format!("Bearer {key}")))
        .send_json(&body)
        .await
        .unwrap();
    let value: Value = res.json().limit(64 << 20).await.unwrap();
    assert!(res.status().is_success(), "{value}");
    value
}

/// Worker `name`: claims up to `limit` runs at a time and completes each batch in one call;
/// answers how many completions were applied.
pub(super) async fn work(
    base: String,
    key: String,
    name: String,
    limit: u64,
    until: Until,
) -> usize {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    let wait_s = match until {
        Until::Empty => 0,
        Until::Stopped(_) => 1,
    };
    let mut done = 0usize;
    loop {
        if let Until::Stopped(stop) = &until
            && stop.get()
        {
            return done;
        }
        let claimed = post(
            &client,
            format!("{base}/v1/runs/claim"),
            &key,
            json!({"limit": limit, "wait_s": wait_s, "worker": name}),
        )
        .await;
        let items = claimed["items"].as_array().unwrap();
        if items.is_empty() {
            if matches!(until, Until::Empty) {
                return done;
            }
            continue;
        }
        let batch: Vec<Value> = items
            .iter()
            .map(
                |r| json!({"id": r["id"], "lease_token": r["lease_token"], "result": {"ok": true}}),
            )
            .collect();
        let answer = post(
            &client,
            format!("{base}/v1/runs/complete"),
            &key,
            json!({"items": batch}),
        )
        .await;
        let items = answer["items"].as_array().unwrap();
        done += items.iter().filter(|i| i["ok"] == true).count();
    }
}

/// Starts `count` workers on the actix system; their handles answer their completions.
pub(super) fn start(
    base: &str,
    key: &str,
    count: usize,
    limit: u64,
    until: &Until,
) -> Vec<actix_web::rt::task::JoinHandle<usize>> {
    (0..count)
        .map(|w| {
            let worker = work(
                base.to_owned(),
                key.to_owned(),
                format!("b{w}"),
                limit,
                until.clone(),
            );
            actix_web::rt::spawn(worker)
        })
        .collect()
}

/// The completions of every worker, once all have stopped.
pub(super) async fn completed(workers: Vec<actix_web::rt::task::JoinHandle<usize>>) -> usize {
    let mut total = 0;
    for w in workers {
        total += w.await.unwrap();
    }
    total
}
