//! Repository functions for `automation_runs`.

use super::statuses::RunStatus;
use super::window::id_bound;
use entity::automation_run;
use sea_orm::sea_query::{Alias, Asterisk, Expr, ExprTrait as _, Func, Order, Query, UnionType};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, QueryTrait as _, Select, Statement,
};
use uuid::Uuid;

/// Filters of the run list.
#[derive(Debug, Default, Clone)]
pub struct RunFilter {
    /// Only runs of this automation.
    pub automation_id: Option<Uuid>,
    /// Only runs of this event.
    pub event_id: Option<Uuid>,
    /// Only this status.
    pub status: Option<RunStatus>,
    /// Only runs of events of this source slug.
    pub source: Option<String>,
    /// Only ids in this time window (a run's id carries its event's time).
    pub window: super::window::IdWindow,
}

/// Inserts one run row as given.
pub async fn insert_run(
    db: &impl ConnectionTrait,
    row: automation_run::Model,
) -> Result<(), DbErr> {
    automation_run::Entity::insert(row.into_active_model())
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Finds one run of an org.
pub async fn find_run(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    id: Uuid,
) -> Result<Option<automation_run::Model>, DbErr> {
    automation_run::Entity::find_by_id(id)
        .filter(automation_run::Column::OrgId.eq(org_id))
        .one(db)
        .await
}

/// The runs of an org with these ids (those that exist).
///
/// Read by primary key alone, the org checked here: with `org_id = …` in the query, PostgreSQL
/// planned it as a bitmap AND of the primary key and an index of the org's every run (174,000
/// entries read for 100 runs during a drain, 15 ms instead of 0.2 ms, as its statistics lag a
/// fast-growing table).
pub async fn find_runs(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    ids: Vec<Uuid>,
) -> Result<Vec<automation_run::Model>, DbErr> {
    let mut runs = automation_run::Entity::find()
        .filter(automation_run::Column::Id.is_in(ids))
        .all(db)
        .await?;
    runs.retain(|run| run.org_id == org_id);
    Ok(runs)
}

/// Up to `fetch` runs of an org, newest first, strictly older than `before` when given.
/// Planned with its values on PostgreSQL ([`super::planned`]).
pub async fn list_runs(
    db: &DatabaseConnection,
    org_id: Uuid,
    filter: &RunFilter,
    before: Option<Uuid>,
    fetch: u64,
) -> Result<Vec<automation_run::Model>, DbErr> {
    let page = runs_page(db.get_database_backend(), org_id, filter, before, fetch);
    let txn = super::planned::planned_read(db).await?;
    let rows = automation_run::Entity::find()
        .from_raw_sql(page)
        .all(&txn)
        .await?;
    txn.commit().await?;
    Ok(rows)
}

/// The query of one page of [`list_runs`] (public so plan tests can `EXPLAIN` it).
///
/// Every filter reads an index in cursor order (id descending). The org's runs and an
/// automation's runs without a status filter have no index of their own (each would cost every
/// run insert one more index entry): they are the newest `fetch` of a merge of one ordered read
/// per status, of `ix_runs_org_status (org_id, status, id)` and `ix_runs_automation_status
/// (automation_id, status, id)`, so a page reads at most five times `fetch` index entries
/// whatever the history's size. An automation's runs of one source take the same merge (nearly
/// all of an automation's runs come from its source), checking the source per row.
pub fn runs_page(
    backend: DbBackend,
    org_id: Uuid,
    filter: &RunFilter,
    before: Option<Uuid>,
    fetch: u64,
) -> Statement {
    let merge = filter.status.is_none()
        && filter.event_id.is_none()
        && (filter.source.is_none() || filter.automation_id.is_some());
    if !merge {
        return runs_filtered(backend, org_id, filter, before)
            .order_by_desc(automation_run::Column::Id)
            .limit(fetch)
            .build(backend);
    }
    let branch = |i: usize, status: RunStatus| {
        Query::select()
            .column(Asterisk)
            .from_subquery(
                status_read(backend, org_id, filter, status, before, fetch).into_query(),
                Alias::new(format!("s{i}")),
            )
            .to_owned()
    };
    let [first, rest @ ..] = RunStatus::ALL;
    let mut union = branch(0, first);
    for (i, status) in rest.into_iter().enumerate() {
        union.union(UnionType::All, branch(i + 1, status));
    }
    let page = Query::select()
        .column(Asterisk)
        .from_subquery(union, Alias::new("runs"))
        .order_by(automation_run::Column::Id, Order::Desc)
        .limit(fetch)
        .to_owned();
    backend.build(&page)
}

/// One branch of the merge: the newest `fetch` runs of one status, in the order of the status
/// indexes. On PostgreSQL the status is a range of one value and the order is `(status, id)`,
/// which the primary key cannot give: so the planner never walks the primary key and checks the
/// status per row, which would read the whole history for an org or automation with no run of a
/// status common elsewhere. On SQLite the status is an equality: after a range on `status`,
/// SQLite cannot seek on `id`, so a window or a cursor deep in the history was checked row by row
/// (839 ms for a window in the middle of 20,000,000 runs, 0.1 ms with the equality); its planner
/// keeps to the status index for the `id` bounds, which are written as likely to keep most rows
/// ([`super::window`]).
fn status_read(
    backend: DbBackend,
    org_id: Uuid,
    filter: &RunFilter,
    status: RunStatus,
    before: Option<Uuid>,
    fetch: u64,
) -> Select<automation_run::Entity> {
    let unsourced = RunFilter {
        source: None,
        ..filter.clone()
    };
    let mut read = runs_filtered(backend, org_id, &unsourced, before);
    if let Some(source) = &filter.source {
        // Checked per row of the automation's runs (nearly all from its source), written so that
        // no index on `source` can serve it: a read of the source's runs would not be in order.
        read = read.filter(
            Expr::expr(Func::coalesce([
                Expr::col((automation_run::Entity, automation_run::Column::Source)),
                Expr::val(""),
            ]))
            .eq(source.as_str()),
        );
    }
    let status_test = match backend {
        DbBackend::Postgres => {
            automation_run::Column::Status.between(status.as_str(), status.as_str())
        }
        _ => automation_run::Column::Status.eq(status.as_str()),
    };
    read.filter(status_test)
        .order_by_desc(automation_run::Column::Status)
        .order_by_desc(automation_run::Column::Id)
        .limit(fetch)
}

/// The runs of an org matching every filter of `filter` and older than `before`, unordered.
fn runs_filtered(
    backend: DbBackend,
    org_id: Uuid,
    filter: &RunFilter,
    before: Option<Uuid>,
) -> Select<automation_run::Entity> {
    let mut query = automation_run::Entity::find().filter(automation_run::Column::OrgId.eq(org_id));
    if let Some(id) = filter.automation_id {
        query = query.filter(automation_run::Column::AutomationId.eq(id));
    }
    if let Some(id) = filter.event_id {
        query = query.filter(automation_run::Column::EventId.eq(id));
    }
    if let Some(status) = filter.status {
        query = query.filter(automation_run::Column::Status.eq(status.as_str()));
    }
    if let Some(source) = &filter.source {
        query = query.filter(automation_run::Column::Source.eq(source.as_str()));
    }
    if let Some(before) = before {
        query = query.filter(id_bound(backend, automation_run::Column::Id.lt(before)));
    }
    if let Some(from) = filter.window.from {
        query = query.filter(id_bound(backend, automation_run::Column::Id.gte(from)));
    }
    if let Some(below) = filter.window.below {
        query = query.filter(id_bound(backend, automation_run::Column::Id.lt(below)));
    }
    query
}

/// Cancels a run if it is still PENDING or RUNNING; returns whether it was. The lease token stays,
/// so the worker of a RUNNING run is told `cancelled` at its next heartbeat.
pub async fn cancel_run(
    db: &sea_orm::DatabaseConnection,
    org_id: Uuid,
    id: Uuid,
) -> Result<bool, DbErr> {
    let cancel = automation_run::Entity::update_many()
        .col_expr(
            automation_run::Column::Status,
            Expr::value(RunStatus::Cancelled.as_str()),
        )
        .col_expr(
            automation_run::Column::CompletedAt,
            Expr::value(super::now()),
        )
        .col_expr(
            automation_run::Column::LeaseExpiresAt,
            Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
        )
        .filter(automation_run::Column::Id.eq(id))
        .filter(automation_run::Column::OrgId.eq(org_id))
        .filter(automation_run::Column::Status.is_in(RunStatus::CANCELLABLE.map(RunStatus::as_str)))
        .exec(db);
    let result = super::gated(db, cancel).await?;
    Ok(result.rows_affected > 0)
}
