//! Repository functions for `events`, the durable inbox.

use entity::event;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

/// Filters of the event list.
#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    /// Only this source slug.
    pub source: Option<String>,
    /// Only this status.
    pub status: Option<String>,
    /// Only this event key.
    pub event_key: Option<String>,
}

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
    match (&m.payload, m.status.as_str()) {
        (Some(_), _) => Some(PayloadSource::Stored),
        (None, "error") => None,
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
pub async fn list_events(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    filter: &EventFilter,
    before: Option<Uuid>,
    fetch: u64,
) -> Result<Vec<event::Model>, DbErr> {
    let mut query = event::Entity::find().filter(event::Column::OrgId.eq(org_id));
    if let Some(source) = &filter.source {
        query = query.filter(event::Column::Source.eq(source.as_str()));
    }
    if let Some(status) = &filter.status {
        query = query.filter(event::Column::Status.eq(status.as_str()));
    }
    if let Some(key) = &filter.event_key {
        query = query.filter(event::Column::EventKey.eq(key.as_str()));
    }
    if let Some(before) = before {
        query = query.filter(event::Column::Id.lt(before));
    }
    let query = query.order_by_desc(event::Column::Id).limit(fetch);
    super::event_rows::all_models(db, query).await
}
