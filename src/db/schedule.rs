//! Schedule ticks in storage: one synthetic event (source `schedule`, the tick as its dedup key)
//! and its PENDING run, in one transaction. The events table's unique (org, source, dedup key)
//! makes a tick create its run exactly once, across restarts and replicas.

use chrono::{DateTime, Utc};
use entity::event;
use sea_orm::sea_query::OnConflict;
use sea_orm::{DatabaseConnection, DbErr, EntityTrait, IntoActiveModel};
use serde_json::{Value, json};
use uuid::Uuid;

use super::statuses::EventStatus;

/// The source slug of schedule events.
pub const SCHEDULE_SOURCE: &str = "schedule";
/// The event key of schedule events.
pub const TICK_EVENT_KEY: &str = "schedule.tick";

/// The dedup key of an automation's tick: one event (hence one run) per tick, whichever process
/// or restart sees it first.
pub fn tick_dedup_key(automation_id: Uuid, tick: DateTime<Utc>) -> String {
    format!("{automation_id}@{}", tick.to_rfc3339())
}

/// Stores `automation_id`'s tick at `tick`; returns the run created, or `None` when the tick was
/// already stored (by this process earlier, before a restart, or by another replica).
pub async fn insert_tick(
    db: &DatabaseConnection,
    org_id: Uuid,
    automation_id: Uuid,
    tick: DateTime<Utc>,
    payload: Value,
) -> Result<Option<Uuid>, DbErr> {
    let now = super::now();
    let event_id = super::new_id();
    let millis = u64::try_from(now.timestamp_millis()).unwrap_or(0);
    let run_id = super::inbox::run_id(automation_id, event_id, millis);
    let row = event::Model {
        id: event_id,
        org_id,
        origin: SCHEDULE_SOURCE.to_owned(),
        source: SCHEDULE_SOURCE.to_owned(),
        source_id: None,
        dedup_key: tick_dedup_key(automation_id, tick),
        event_key: Some(TICK_EVENT_KEY.to_owned()),
        raw: payload.clone(),
        payload: Some(payload),
        meta: json!({"tick": tick}),
        status: EventStatus::Dispatched.as_str().to_owned(),
        error: None,
        outcome: Some(
            json!([{"automation_id": automation_id, "result": "matched", "run_id": run_id}]),
        ),
        received_at: now,
        dispatched_at: Some(now),
        replay_key: None,
    };
    let txn = super::WriteTxn::begin(db).await?;
    let conflict = OnConflict::columns([
        event::Column::OrgId,
        event::Column::Source,
        event::Column::DedupKey,
    ])
    .do_nothing()
    .to_owned();
    let inserted = event::Entity::insert(row.into_active_model())
        .on_conflict(conflict)
        .exec_without_returning(&txn)
        .await?;
    if inserted == 0 {
        txn.rollback().await?;
        return Ok(None);
    }
    let run = super::inbox::pending_run(run_id, org_id, automation_id, (event_id, SCHEDULE_SOURCE));
    super::runs::insert_run(&txn, run).await?;
    txn.commit().await?;
    Ok(Some(run_id))
}
