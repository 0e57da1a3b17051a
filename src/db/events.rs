//! Repository functions for `events`, the durable inbox.

use super::statuses::EventStatus;
use super::window::id_bound;
use entity::event;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, QuerySelect, Select,
};
use uuid::Uuid;

/// Filters of the event list.
#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    /// Only this source slug.
    pub source: Option<String>,
    /// Only this status.
    pub status: Option<EventStatus>,
    /// Only this event key.
    pub event_key: Option<String>,
    /// Only ids in this time window.
    pub window: super::window::IdWindow,
}

/// The predicate of the partial index `ix_events_org_unmatched` (`no_key` events have no key,
/// `error` events an error; dispatch updates neither column, so the index keeps dispatch's update
/// of `status` a HOT update on PostgreSQL). Written exactly as in the index so both planners see
/// that the query implies it.
pub const UNMATCHED_PREDICATE: &str = "(event_key IS NULL OR error IS NOT NULL)";

/// The payload runs carry: the stored payload, or the raw message when none is stored (no payload
/// expression). Events with status `error` have none.
pub fn payload_of(m: &event::Model) -> Option<serde_json::Value> {
    match payload_source(m)? {
        PayloadSource::Stored => m.payload.clone(),
        PayloadSource::Raw => Some(m.raw.clone()),
    }
}

/// [`payload_of`] for an event row no longer needed: the payload is moved out, not copied.
pub fn into_payload(m: event::Model) -> Option<serde_json::Value> {
    match payload_source(&m)? {
        PayloadSource::Stored => m.payload,
        PayloadSource::Raw => Some(m.raw),
    }
}

/// Where an event's payload is: its own column, or its raw message.
enum PayloadSource {
    Stored,
    Raw,
}

fn payload_source(m: &event::Model) -> Option<PayloadSource> {
    match (&m.payload, EventStatus::parse(&m.status)) {
        (Some(_), _) => Some(PayloadSource::Stored),
        (None, Some(EventStatus::Error)) => None,
        (None, _) => Some(PayloadSource::Raw),
    }
}

/// What a run carries: `event_id`, `source`, `event_key`, `received_at` and `payload`.
pub fn run_payload(m: &event::Model) -> serde_json::Value {
    serde_json::json!({
        "event_id": m.id,
        "source": m.source,
        "event_key": m.event_key,
        "received_at": m.received_at,
        "payload": payload_of(m),
    })
}

/// The events with these ids (any org: callers pass ids of rows they already scoped).
pub async fn find_events_by_ids(
    db: &impl ConnectionTrait,
    ids: Vec<Uuid>,
) -> Result<Vec<event::Model>, DbErr> {
    super::event_rows::all_models(
        db,
        event::Entity::find().filter(event::Column::Id.is_in(ids)),
    )
    .await
}

/// The ids of the org's events of `source` with these dedup keys, by dedup key.
pub async fn find_event_ids_by_dedup_keys(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    source: &str,
    dedup_keys: Vec<String>,
) -> Result<std::collections::HashMap<String, Uuid>, DbErr> {
    let rows: Vec<(Uuid, String)> = event::Entity::find()
        .select_only()
        .column(event::Column::Id)
        .column(event::Column::DedupKey)
        .filter(event::Column::OrgId.eq(org_id))
        .filter(event::Column::Source.eq(source))
        .filter(event::Column::DedupKey.is_in(dedup_keys))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|(id, key)| (key, id)).collect())
}

/// The id of the org's event of `source` with this replay key (webhook replay guard).
pub async fn find_event_id_by_replay_key(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    source: &str,
    replay_key: &str,
) -> Result<Option<Uuid>, DbErr> {
    event::Entity::find()
        .select_only()
        .column(event::Column::Id)
        .filter(event::Column::OrgId.eq(org_id))
        .filter(event::Column::Source.eq(source))
        .filter(event::Column::ReplayKey.eq(replay_key))
        .into_tuple()
        .one(db)
        .await
}

/// Inserts one event row as given.
pub async fn insert_event(db: &impl ConnectionTrait, row: event::Model) -> Result<(), DbErr> {
    event::Entity::insert(row.into_active_model())
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Finds one event of an org.
pub async fn find_event(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    id: Uuid,
) -> Result<Option<event::Model>, DbErr> {
    let select = event::Entity::find_by_id(id).filter(event::Column::OrgId.eq(org_id));
    super::event_rows::one_model(db, select).await
}

/// Up to `fetch` events of an org, newest first, strictly older than `before` when given.
/// Planned with its values on PostgreSQL ([`super::planned`]).
pub async fn list_events(
    db: &sea_orm::DatabaseConnection,
    org_id: Uuid,
    filter: &EventFilter,
    before: Option<Uuid>,
    fetch: u64,
) -> Result<Vec<event::Model>, DbErr> {
    let page = events_page(db.get_database_backend(), org_id, filter, before, fetch);
    let txn = super::planned::planned_read(db).await?;
    let rows = super::event_rows::all_models(&txn, page).await?;
    txn.commit().await?;
    Ok(rows)
}

/// The query of one page of [`list_events`] (public so plan tests can `EXPLAIN` it).
pub fn events_page(
    backend: DbBackend,
    org_id: Uuid,
    filter: &EventFilter,
    before: Option<Uuid>,
    fetch: u64,
) -> Select<event::Entity> {
    let received = filter.status == Some(EventStatus::Received);
    let org = if received && backend == DbBackend::Sqlite {
        // SQLite, without statistics, would walk every event of the org (or of the source) and
        // check the status row by row; a unary `+` keeps the org test off the indexes, so it reads
        // the partial index of undispatched events, a handful of rows.
        Expr::cust_with_values("+\"events\".\"org_id\" = ?", [org_id])
    } else {
        event::Column::OrgId.eq(org_id)
    };
    let mut query = event::Entity::find().filter(org);
    if let Some(source) = &filter.source {
        query = query.filter(event::Column::Source.eq(source.as_str()));
    }
    if let Some(status) = filter.status {
        query = query.filter(event::Column::Status.eq(status.as_str()));
        // Conditions the status implies, so the planner can use the partial index that holds it.
        match status {
            EventStatus::NoKey | EventStatus::Error => {
                query = query.filter(Expr::cust(UNMATCHED_PREDICATE))
            }
            EventStatus::Received => query = query.filter(event::Column::DispatchedAt.is_null()),
            EventStatus::Dispatched => {}
        }
    }
    if let Some(key) = &filter.event_key {
        query = query.filter(event::Column::EventKey.eq(key.as_str()));
    }
    if let Some(before) = before {
        query = query.filter(id_bound(backend, event::Column::Id.lt(before)));
    }
    if let Some(from) = filter.window.from {
        query = query.filter(id_bound(backend, event::Column::Id.gte(from)));
    }
    if let Some(below) = filter.window.below {
        query = query.filter(id_bound(backend, event::Column::Id.lt(below)));
    }
    query.order_by_desc(event::Column::Id).limit(fetch)
}
