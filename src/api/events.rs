//! `/v1/events`: the inbox, newest first, with cursor pagination.

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use entity::event;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::pagination;
use super::{CursorOut, Path, Query};
use crate::api::caller::Caller;
use crate::api::state::AppState;
use crate::db::statuses::EventStatus;
use crate::db::{self, events::EventFilter, window::IdWindow};
use crate::error::ApiError;

/// Query of the event list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only this source slug. A value that is not a slug is refused (422).
    #[serde(default, deserialize_with = "crate::validation::optional_slug")]
    #[param(pattern = "^[a-z0-9]([a-z0-9-]{0,48}[a-z0-9])?$")]
    pub source: Option<String>,
    /// Only this status (`received`, `dispatched`, `no_key`, `error`).
    #[param(pattern = "^(received|dispatched|no_key|error)$")]
    pub status: Option<String>,
    /// Only this event key.
    pub event_key: Option<String>,
    /// Only events received at or after this time (RFC 3339; millisecond precision: the bound is
    /// the time in the event's id).
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<String>,
    /// Only events received at or before this time (RFC 3339, not before `since`).
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<String>,
    /// Page size, 1..=200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[A-Za-z0-9_-]{21}[AQgw]$")]
    pub cursor: Option<String>,
}

/// One event.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventOut {
    /// Id.
    pub id: Uuid,
    /// `websocket` or `webhook`.
    pub origin: String,
    /// Source slug.
    pub source: String,
    /// Source (or webhook) id.
    pub source_id: Option<Uuid>,
    /// Event key, when the key expression gave one.
    pub event_key: Option<String>,
    /// Dedup key.
    pub dedup_key: String,
    /// `received`, `dispatched`, `no_key` or `error`.
    pub status: String,
    /// Why the status is `error`.
    pub error: Option<String>,
    /// The message as received.
    pub raw: Value,
    /// The payload runs carry.
    pub payload: Option<Value>,
    /// Origin details (e.g. Slack envelope type, retry attempt).
    #[schema(value_type = Object)]
    pub meta: Value,
    /// Per automation: matched, `on` mismatch, filter false, filter error + message, run id.
    pub outcome: Option<Value>,
    /// Received.
    pub received_at: DateTime<Utc>,
    /// Dispatched to automations.
    pub dispatched_at: Option<DateTime<Utc>>,
}

impl From<event::Model> for EventOut {
    fn from(m: event::Model) -> Self {
        let payload = crate::db::events::payload_of(&m);
        Self {
            id: m.id,
            origin: m.origin,
            source: m.source,
            source_id: m.source_id,
            event_key: m.event_key,
            dedup_key: m.dedup_key,
            status: m.status,
            error: m.error,
            payload,
            raw: m.raw,
            meta: m.meta,
            outcome: m.outcome,
            received_at: m.received_at,
            dispatched_at: m.dispatched_at,
        }
    }
}

/// Lists events, newest first.
#[utoipa::path(context_path = "/v1", tag = "events", security(("bearer" = [])), params(EventQuery),
    responses((status = 200, body = CursorOut<EventOut>), (status = 422, body = crate::error::Problem)))]
#[get("/events")]
pub async fn list_events(
    state: web::Data<AppState>,
    caller: Caller,
    query: Query<EventQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let limit = pagination::check_limit(q.limit)?;
    let before = q
        .cursor
        .as_deref()
        .map(|c| pagination::decode_cursor(pagination::Listing::Events, c))
        .transpose()?;
    let status = q
        .status
        .as_deref()
        .map(|s| {
            EventStatus::parse(s).ok_or_else(|| {
                ApiError::field("status", "must be received, dispatched, no_key or error")
            })
        })
        .transpose()?;
    let filter = EventFilter {
        source: q.source,
        status,
        event_key: q.event_key,
        window: IdWindow::parse(q.since.as_deref(), q.until.as_deref())?,
    };
    let rows =
        db::events::list_events(&state.db, caller.org_id, &filter, before, limit + 1).await?;
    let (rows, next_cursor) =
        pagination::split_page(pagination::Listing::Events, rows, limit, |m| m.id);
    Ok(HttpResponse::Ok().json(CursorOut::<EventOut>::new(rows, next_cursor)))
}

/// Shows one event with its outcome per automation.
#[utoipa::path(context_path = "/v1", tag = "events", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = EventOut), (status = 404, body = crate::error::Problem)))]
#[get("/events/{id}")]
pub async fn get_event(
    state: web::Data<AppState>,
    caller: Caller,
    id: Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let row = db::events::find_event(&state.db, caller.org_id, *id)
        .await?
        .ok_or(ApiError::NotFound("event"))?;
    Ok(HttpResponse::Ok().json(EventOut::from(row)))
}
