//! The I/O half of `apps.connections.open`: wait for the source's shared budget, make the call
//! over awc, and turn the answer into the URL to connect to or a classified failure. What the
//! call looks like and what its answers mean is the sans-IO adapter's business
//! (`crate::sources::slack`).

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::connect;
use super::messages::DownReason;
use super::policy::FailureClass;
use super::runtime::SourceRuntime;
use crate::sources::generic::ConnectRequest;
use crate::sources::slack::{OpenBudget, SlackAdapter, parse_open_response};

/// Largest `apps.connections.open` answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Waits for a call slot of `budget` (honouring any rate-limit hold, also one that comes in while
/// waiting), calls `apps.connections.open`, and answers the single-use WebSocket URL as a connect
/// request. A 429 holds every connection of the source through `budget`.
pub async fn open_url(
    rt: &SourceRuntime,
    adapter: &SlackAdapter,
    budget: &Mutex<OpenBudget>,
) -> Result<ConnectRequest, DownReason> {
    loop {
        let wait = lock(budget).reserve(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        if lock(budget).held_for(Instant::now()).is_zero() {
            break;
        }
    }
    let call = adapter.open_request();
    let mut request = connect::client(rt)
        .request(awc::http::Method::POST, call.url.as_str())
        .timeout(Duration::from_secs(10));
    for (name, value) in &call.headers {
        request = request.insert_header((name.as_str(), value.as_str()));
    }
    let mut answer = request
        .send_body(call.body)
        .await
        .map_err(|err| DownReason::Transient(format!("apps.connections.open failed: {err}")))?;
    let status = answer.status().as_u16();
    let retry_after = answer
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = answer.body().limit(MAX_ANSWER_BYTES).await.map_err(|err| {
        DownReason::Transient(format!(
            "apps.connections.open answered HTTP {status} with an unreadable body: {err}"
        ))
    })?;
    match parse_open_response(status, retry_after.as_deref(), &body) {
        Ok(opened) => Ok(ConnectRequest {
            url: adapter.connect_url(&opened),
            headers: Vec::new(),
            subprotocols: Vec::new(),
        }),
        Err(failure) => {
            if let FailureClass::RateLimited { retry_after } = failure.class {
                lock(budget).on_rate_limited(Instant::now(), retry_after);
            }
            tracing::warn!(detail = %failure.detail, "apps.connections.open gave no URL");
            Err(DownReason::from_class(failure.class, failure.detail))
        }
    }
}

fn lock(budget: &Mutex<OpenBudget>) -> std::sync::MutexGuard<'_, OpenBudget> {
    budget.lock().unwrap_or_else(PoisonError::into_inner)
}
