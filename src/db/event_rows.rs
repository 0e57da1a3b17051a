//! Reading event rows so that one undecodable row never fails a page, a start-up or a sweep. The
//! JSON columns are selected as text and parsed here, row by row: a document that cannot be parsed
//! (a row stored before the ingest limits existed, nested deeper than serde_json reads) is shown
//! as an error marker, the row's `error` says why, and [`undecodable_rows`] counts it.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use entity::event;
use sea_orm::sea_query::{Expr, ExprTrait as _};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, QuerySelect, Select};
use serde_json::{Value, json};
use uuid::Uuid;

static UNDECODABLE: AtomicU64 = AtomicU64::new(0);

/// JSON documents read from storage that could not be decoded, since the process started.
pub fn undecodable_rows() -> u64 {
    UNDECODABLE.load(Ordering::Relaxed)
}

/// An event row with its JSON columns as text.
#[derive(Debug, FromQueryResult)]
struct EventText {
    id: Uuid,
    org_id: Uuid,
    origin: String,
    source: String,
    source_id: Option<Uuid>,
    dedup_key: String,
    event_key: Option<String>,
    raw: String,
    payload: Option<String>,
    meta: String,
    status: String,
    error: Option<String>,
    outcome: Option<String>,
    received_at: DateTime<Utc>,
    dispatched_at: Option<DateTime<Utc>>,
    replay_key: Option<String>,
}

/// One decoded row, and whether any of its documents had to be replaced by a marker.
pub struct Decoded {
    /// The row (undecodable documents replaced by `{"undecodable": "<why>"}`).
    pub model: event::Model,
    /// Whether a document could not be decoded.
    pub undecodable: bool,
}

impl EventText {
    fn decode(self) -> Decoded {
        let mut failure = None;
        let mut parse = |text: String| match serde_json::from_str::<Value>(&text) {
            Ok(value) => value,
            Err(err) => {
                UNDECODABLE.fetch_add(1, Ordering::Relaxed);
                let why = format!("stored JSON could not be decoded: {err}");
                let marker = json!({ "undecodable": why });
                failure.get_or_insert(why);
                marker
            }
        };
        let raw = parse(self.raw);
        let payload = self.payload.map(&mut parse);
        let meta = parse(self.meta);
        let outcome = self.outcome.map(&mut parse);
        let undecodable = failure.is_some();
        Decoded {
            model: event::Model {
                id: self.id,
                org_id: self.org_id,
                origin: self.origin,
                source: self.source,
                source_id: self.source_id,
                dedup_key: self.dedup_key,
                event_key: self.event_key,
                raw,
                payload,
                meta,
                status: self.status,
                error: failure.or(self.error),
                outcome,
                received_at: self.received_at,
                dispatched_at: self.dispatched_at,
                replay_key: self.replay_key,
            },
            undecodable,
        }
    }
}

/// `select` with every JSON column read as text.
fn as_text(select: Select<event::Entity>) -> sea_orm::Selector<sea_orm::SelectModel<EventText>> {
    use event::Column as C;
    let text = |column: C| Expr::col((event::Entity, column)).cast_as("text");
    select
        .select_only()
        .columns([
            C::Id,
            C::OrgId,
            C::Origin,
            C::Source,
            C::SourceId,
            C::DedupKey,
            C::EventKey,
            C::Status,
            C::Error,
            C::ReceivedAt,
            C::DispatchedAt,
            C::ReplayKey,
        ])
        .expr_as(text(C::Raw), "raw")
        .expr_as(text(C::Payload), "payload")
        .expr_as(text(C::Meta), "meta")
        .expr_as(text(C::Outcome), "outcome")
        .into_model::<EventText>()
}

/// The columns of an event joined as `alias` in a raw PostgreSQL statement, JSON read as text,
/// each named `<prefix><column>`: read back with [`decode_prefixed`].
pub fn text_columns(alias: &str, prefix: &str) -> String {
    const PLAIN: [&str; 12] = [
        "id",
        "org_id",
        "origin",
        "source",
        "source_id",
        "dedup_key",
        "event_key",
        "status",
        "error",
        "received_at",
        "dispatched_at",
        "replay_key",
    ];
    const JSON: [&str; 4] = ["raw", "payload", "meta", "outcome"];
    PLAIN
        .iter()
        .map(|c| format!("{alias}.{c} AS {prefix}{c}"))
        .chain(
            JSON.iter()
                .map(|c| format!("{alias}.{c}::text AS {prefix}{c}")),
        )
        .collect::<Vec<_>>()
        .join(", ")
}

/// The event a row holds in the columns [`text_columns`] named, decoded; `None` when they are
/// empty (an outer join found no event).
pub fn decode_prefixed(
    row: &sea_orm::QueryResult,
    prefix: &str,
) -> Result<Option<event::Model>, DbErr> {
    if row.try_get::<Option<Uuid>>(prefix, "id")?.is_none() {
        return Ok(None);
    }
    Ok(Some(
        EventText::from_query_result(row, prefix)?.decode().model,
    ))
}

/// Every row `select` finds, decoded.
pub async fn all(
    db: &impl ConnectionTrait,
    select: Select<event::Entity>,
) -> Result<Vec<Decoded>, DbErr> {
    let rows = as_text(select).all(db).await?;
    Ok(rows.into_iter().map(EventText::decode).collect())
}

/// Every row `select` finds, as models (undecodable documents shown as markers).
pub async fn all_models(
    db: &impl ConnectionTrait,
    select: Select<event::Entity>,
) -> Result<Vec<event::Model>, DbErr> {
    Ok(all(db, select)
        .await?
        .into_iter()
        .map(|d| d.model)
        .collect())
}

/// The first row `select` finds, as a model (undecodable documents shown as markers).
pub async fn one_model(
    db: &impl ConnectionTrait,
    select: Select<event::Entity>,
) -> Result<Option<event::Model>, DbErr> {
    Ok(as_text(select).one(db).await?.map(|row| row.decode().model))
}
