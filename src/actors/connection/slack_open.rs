//! The I/O half of `apps.connections.open`: wait for the source's shared budget, make the call
//! (through [`super::dial`], like every outbound connection: the network policy is applied after
//! DNS, the socket is pinned to the checked address, redirects are not followed), and turn the
//! answer into the URL to connect to or a classified failure. What the
//! call looks like and what its answers mean is the sans-IO adapter's business
//! (`crate::sources::slack`).

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::dial::{self, TlsTarget};
use super::reports::DownReason;
use crate::actors::runtime::SourceRuntime;
use crate::db::cluster::slack_budget;
use crate::sources::failure::FailureClass;
use crate::sources::generic::ConnectRequest;
use crate::sources::slack::{OpenBudget, SlackAdapter, parse_open_response};

/// Largest `apps.connections.open` answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// How long the call may take once connected.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

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
    if rt.clustered {
        shared_turn(rt, adapter).await;
    }
    let answer = call(rt, adapter).await?;
    match parse_open_response(answer.status, answer.retry_after.as_deref(), &answer.body) {
        Ok(opened) => Ok(ConnectRequest {
            url: adapter.connect_url(&opened),
            headers: Vec::new(),
            subprotocols: Vec::new(),
        }),
        Err(failure) => {
            if let FailureClass::RateLimited { retry_after } = failure.class {
                lock(budget).on_rate_limited(Instant::now(), retry_after);
                if rt.clustered {
                    let held = slack_budget::hold(&rt.db, &adapter.app_key(), retry_after).await;
                    if let Err(err) = held {
                        tracing::warn!(error = %err, "sharing a Slack rate-limit hold failed");
                    }
                }
            }
            tracing::warn!(detail = %failure.detail, "apps.connections.open gave no URL");
            Err(DownReason::from_class(failure.class, failure.detail))
        }
    }
}

/// With replicas: waits for the app's turn in the budget all replicas share (when the database
/// cannot be asked, this source's own budget has paced the call already).
async fn shared_turn(rt: &SourceRuntime, adapter: &SlackAdapter) {
    match slack_budget::reserve(&rt.db, &adapter.app_key(), rt.slack_open_interval, 2).await {
        Ok(wait) if !wait.is_zero() => tokio::time::sleep(wait).await,
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "the shared Slack open budget could not be read"),
    }
}

/// What `apps.connections.open` answered.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: bytes::Bytes,
}

/// Makes the call over a socket [`dial::dial`] connected to a checked address.
async fn call(rt: &SourceRuntime, adapter: &SlackAdapter) -> Result<Answer, DownReason> {
    let call = adapter.open_request();
    let url = url::Url::parse(&call.url)
        .map_err(|err| DownReason::Terminal(format!("the Slack API base is not a URL: {err}")))?;
    let target = TlsTarget {
        config: rt.tls.shared(),
        server_name: None,
    };
    let dialed = dial::dial(&rt.policy, &url, Some(target)).await?;
    let (uri, host) = dial::awc_target(&url);
    let (name, slot) = (dialed.name.clone(), dialed.tls_errors.clone());
    let mut request = dial::awc_client(dialed.socket, CALL_TIMEOUT)
        .request(awc::http::Method::POST, uri.as_str())
        .insert_header(("Host", host));
    for (name, value) in &call.headers {
        request = request.insert_header((name.as_str(), value.as_str()));
    }
    let mut answer = request.send_body(call.body).await.map_err(|err| {
        dial::Dialed::tls_failure(slot.as_ref(), &name).unwrap_or_else(|| {
            DownReason::Transient(format!("apps.connections.open failed: {err}"))
        })
    })?;
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
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}

fn lock(budget: &Mutex<OpenBudget>) -> std::sync::MutexGuard<'_, OpenBudget> {
    budget.lock().unwrap_or_else(PoisonError::into_inner)
}
