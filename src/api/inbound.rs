//! `POST /v1/events/{org_id}/{source}`: inbound webhooks. No API key: the signature authenticates.
//! In order: unknown or disabled → 404; too large → 413 (not read further); signature checked on
//! the raw bytes → 401; rate limit → 429; body parsed → 415/400; provider handshakes answered;
//! then the same ingest pipeline as WebSocket sources, and 200 only after the commit (503 with
//! `Retry-After` while storage is down).

use std::sync::Arc;
use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, post, web};
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use uuid::Uuid;

use super::Path;
use super::webhooks::row::open_secrets;
use crate::actors::publisher::Published;
use crate::api::state::AppState;
use crate::db;
use crate::db::inbox::RowOutcome;
use crate::error::ApiError;
use crate::pipeline::expr::{Limits, to_value};
use crate::pipeline::ingest::{Prepared, PreparedEvent, SourceExprs, prepare};
use crate::pipeline::json;
use crate::webhooks::inbound::{self, BodyError, TokenBucket};
use crate::webhooks::replay;
use crate::webhooks::verifier::Verifier;
use crate::webhooks::verify::{SignedRequest, VerifiedWith, VerifyError, verify};

/// Receives one delivery.
#[utoipa::path(context_path = "/v1", tag = "webhooks", params(("org_id" = Uuid, Path), ("source" = String, Path)),
    request_body(content = Object, description = "The provider's payload (JSON or form-encoded), signed"),
    responses((status = 200, description = "Stored (or a duplicate of a stored delivery)", example = json!({"event_id": "0193…", "duplicate": false})),
        (status = 401, body = crate::error::Problem), (status = 404, body = crate::error::Problem), (status = 413, body = crate::error::Problem),
        (status = 415, body = crate::error::Problem), (status = 429, body = crate::error::Problem), (status = 503, body = crate::error::Problem)))]
#[post("/events/{org_id}/{source}")]
pub async fn receive(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (org, slug) = path.into_inner();
    let org_id: Uuid = org.parse().map_err(|_| ApiError::NotFound("webhook"))?;
    let hook = db::webhooks::find_webhook_by_slug(&state.db, org_id, &slug)
        .await?
        .filter(|w| w.enabled)
        .ok_or(ApiError::NotFound("webhook"))?;
    let result = handle(&state, &req, &hook, payload).await;
    state
        .webhook_counters
        .record(hook.id, outcome_name(&result));
    result.map(|(response, _)| response)
}

/// The counter a delivery's outcome adds to.
fn outcome_name(result: &Result<(HttpResponse, &'static str), ApiError>) -> &'static str {
    match result {
        Ok((_, outcome)) => outcome,
        Err(ApiError::SignatureRejected { stale: true, .. }) => "stale",
        Err(ApiError::SignatureRejected { stale: false, .. }) => "bad_signature",
        Err(ApiError::PayloadTooLarge(_)) => "too_large",
        Err(ApiError::RateLimited(_)) => "rate_limited",
        Err(
            ApiError::UnsupportedMediaType(_)
            | ApiError::MalformedJson(_)
            | ApiError::BadRequest(_),
        ) => "bad_body",
        Err(ApiError::Unavailable) => "unavailable",
        Err(_) => "failed",
    }
}

async fn handle(
    state: &AppState,
    req: &HttpRequest,
    hook: &entity::webhook::Model,
    payload: web::Payload,
) -> Result<(HttpResponse, &'static str), ApiError> {
    let body = read_body(
        req,
        payload,
        usize::try_from(hook.max_body_bytes).unwrap_or(usize::MAX),
    )
    .await?;
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter_map(|(n, v)| {
            v.to_str()
                .ok()
                .map(|v| (n.as_str().to_ascii_lowercase(), v.to_owned()))
        })
        .collect();
    let verifier: Verifier =
        serde_json::from_value(hook.verifier.clone()).map_err(|e| ApiError::Internal(e.into()))?;
    refuse_repeated_headers(&verifier, &headers)?;
    let verified_with = authenticate(state, hook, &verifier, &headers, &body)?;
    take_token(state, hook)?;
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok());
    let parsed = inbound::parse_body(content_type, &body).map_err(|e| match e {
        BodyError::Unsupported(_) => ApiError::UnsupportedMediaType(e.to_string()),
        BodyError::Malformed(m) => ApiError::MalformedJson(m),
    })?;
    json::check(&parsed)
        .map_err(|refusal| ApiError::BadRequest(format!("body refused: {refusal}")))?;
    if let Some(answer) = inbound::handshake_answer(&verifier, &parsed) {
        return Ok((HttpResponse::Ok().json(answer), "handshake"));
    }
    let parsed = inbound::without_provider_token(&verifier, parsed);
    let meta = inbound::meta(&verifier, &headers, verified_with);
    let limits = Limits::for_input(body.len());
    let replay_key = replay::replay_guard(
        hook.insecure,
        hook.dedup_key_expr.as_deref(),
        &verifier,
        &headers,
        &body,
    );
    ingest(
        state,
        hook,
        &verifier,
        (inbound::message(&headers, parsed), limits, body.len()),
        (meta, replay_key),
    )
    .await
}

/// A delivery repeating a header its verification or keys read is refused: one copy could be
/// verified while another is read for the dedup key.
fn refuse_repeated_headers(
    verifier: &Verifier,
    headers: &[(String, String)],
) -> Result<(), ApiError> {
    for name in verifier.relevant_headers() {
        if headers.iter().filter(|(n, _)| *n == name).count() > 1 {
            return Err(ApiError::BadRequest(format!(
                "header `{name}` appears more than once"
            )));
        }
    }
    Ok(())
}

async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    let declared = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::MalformedJson(e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn authenticate(
    state: &AppState,
    hook: &entity::webhook::Model,
    verifier: &Verifier,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Option<&'static str>, ApiError> {
    if hook.insecure {
        return Ok(None);
    }
    let secrets = open_secrets(state, hook)?.ok_or_else(|| ApiError::SignatureRejected {
        detail: "the webhook has no secret".into(),
        stale: false,
    })?;
    let request = SignedRequest {
        headers,
        body,
        now_unix: chrono::Utc::now().timestamp(),
    };
    match verify(verifier, &secrets, &request) {
        Ok(VerifiedWith::Current) => Ok(Some("current")),
        Ok(VerifiedWith::Previous) => Ok(Some("previous")),
        Err(err) => {
            tracing::info!(webhook_id = %hook.id, reason = %err, "webhook delivery refused");
            Err(ApiError::SignatureRejected {
                stale: matches!(err, VerifyError::Stale { .. }),
                detail: err.to_string(),
            })
        }
    }
}

fn take_token(state: &AppState, hook: &entity::webhook::Model) -> Result<(), ApiError> {
    let Some(limit) = hook.rate_limit.as_ref() else {
        return Ok(());
    };
    let per_second = limit
        .get("per_second")
        .and_then(Value::as_f64)
        .unwrap_or(f64::MAX);
    let burst = limit
        .get("burst")
        .and_then(Value::as_u64)
        .and_then(|b| u32::try_from(b).ok())
        .unwrap_or(u32::MAX);
    let now = Instant::now();
    let mut buckets = state
        .webhook_limits
        .lock()
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("rate-limit lock poisoned")))?;
    let bucket = buckets
        .entry(hook.id)
        .or_insert_with(|| TokenBucket::new(per_second, burst, now));
    if bucket.differs(per_second, burst) {
        *bucket = TokenBucket::new(per_second, burst, now);
    }
    bucket.try_take(now).map_err(ApiError::RateLimited)
}

async fn ingest(
    state: &AppState,
    hook: &entity::webhook::Model,
    verifier: &Verifier,
    (raw, limits, size): (Value, Limits, usize),
    (meta, replay_key): (Value, Option<String>),
) -> Result<(HttpResponse, &'static str), ApiError> {
    let exprs = compiled_exprs(state, hook, verifier)?;
    let value = to_value(&raw);
    let event = match prepare(&exprs, raw, &value, limits) {
        Prepared::Filtered => {
            let body = json!({"event_id": null, "duplicate": false, "filtered": true});
            return Ok((HttpResponse::Ok().json(body), "filtered"));
        }
        Prepared::Event(event) => *event,
    };
    let mut row = event_row(hook, event, meta);
    row.replay_key = replay_key;
    // What a duplicate's answer and notice need, kept before the row goes to the writer.
    let notice = Notice::of(&row);
    // Committed with whatever other deliveries arrived meanwhile (group commit); the writer
    // publishes and dispatches a stored event itself, so its runs follow its notice.
    let outcome = state
        .deliveries
        .store(row, size)
        .await
        .map_err(|_| ApiError::Unavailable)?;
    match outcome {
        RowOutcome::Stored => {
            let body = json!({"event_id": notice.id, "duplicate": false});
            return Ok((HttpResponse::Ok().json(body), "accepted"));
        }
        RowOutcome::Refused(reason) => {
            tracing::warn!(webhook_id = %hook.id, reason = %reason, "delivery rejected by storage");
            return Err(ApiError::BadRequest(format!("delivery refused: {reason}")));
        }
        RowOutcome::Duplicate => {}
    }
    let existing = match db::events::find_event_ids_by_dedup_keys(
        &state.db,
        hook.org_id,
        &hook.source,
        vec![notice.dedup_key.clone()],
    )
    .await?
    .remove(&notice.dedup_key)
    {
        Some(id) => Some(id),
        // Not the dedup key: the replay guard (the same signed body under a fresh delivery id).
        None => match &notice.replay_key {
            Some(key) => {
                db::events::find_event_id_by_replay_key(&state.db, hook.org_id, &hook.source, key)
                    .await?
            }
            None => None,
        },
    };
    if state.publisher.has_subscribers() {
        state.publisher.publish(notice.duplicate_of(existing));
    }
    let body = json!({"event_id": existing, "duplicate": true});
    Ok((HttpResponse::Ok().json(body), "duplicate"))
}

/// The parts of a delivery's row its answer and a duplicate's live notice need (not its payload).
struct Notice {
    id: Uuid,
    org_id: Uuid,
    source: String,
    event_key: Option<String>,
    status: String,
    dedup_key: String,
    replay_key: Option<String>,
    received_at: chrono::DateTime<chrono::Utc>,
}

impl Notice {
    fn of(row: &entity::event::Model) -> Notice {
        Notice {
            id: row.id,
            org_id: row.org_id,
            source: row.source.clone(),
            event_key: row.event_key.clone(),
            status: row.status.clone(),
            dedup_key: row.dedup_key.clone(),
            replay_key: row.replay_key.clone(),
            received_at: row.received_at,
        }
    }

    /// The live notice of a duplicate of the stored event `event_id`.
    fn duplicate_of(self, event_id: Option<Uuid>) -> Published {
        Published::EventReceived {
            org_id: self.org_id,
            event_id,
            origin: "webhook",
            source: self.source,
            event_key: self.event_key,
            status: self.status,
            duplicate: true,
            received_at: self.received_at,
        }
    }
}

/// The webhook's expressions (its own or its preset's), compiled once per webhook revision and
/// kept, not once per delivery.
fn compiled_exprs(
    state: &AppState,
    hook: &entity::webhook::Model,
    verifier: &Verifier,
) -> Result<Arc<SourceExprs>, ApiError> {
    let poisoned = || ApiError::Internal(anyhow::anyhow!("webhook expression cache lock poisoned"));
    if let Some((at, exprs)) = state
        .webhook_exprs
        .lock()
        .map_err(|_| poisoned())?
        .get(&hook.id)
        && *at == hook.updated_at
    {
        return Ok(exprs.clone());
    }
    let (key, payload, dedup) = inbound::default_exprs(verifier);
    let exprs = SourceExprs::compile(
        hook.event_key_expr.as_deref().or(key),
        hook.payload_expr.as_deref().or(payload),
        hook.filter_expr.as_deref(),
        hook.dedup_key_expr.as_deref().or(dedup),
    )
    .map_err(|(field, e)| {
        ApiError::Internal(anyhow::anyhow!("stored {field} does not compile: {e}"))
    })?;
    let exprs = Arc::new(exprs);
    state
        .webhook_exprs
        .lock()
        .map_err(|_| poisoned())?
        .insert(hook.id, (hook.updated_at, exprs.clone()));
    Ok(exprs)
}

fn event_row(
    hook: &entity::webhook::Model,
    event: PreparedEvent,
    meta: Value,
) -> entity::event::Model {
    let from = crate::pipeline::event_row::EventOrigin {
        org_id: hook.org_id,
        origin: "webhook",
        source: &hook.source,
        source_id: hook.id,
    };
    crate::pipeline::event_row::event_row(from, event, meta, db::now())
}
