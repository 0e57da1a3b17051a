//! Events and their runs committed together: the inbox writers match a batch before they store
//! it, so one transaction holds both the events (already marked dispatched, with their outcome)
//! and the runs of those that were new. A message's ACK and its runs then wait for one commit,
//! not two, and an event row is written once instead of inserted and then updated.

use entity::{automation_run, event};
use sea_orm::{DbBackend, DbErr};
use uuid::Uuid;

use super::{RowOutcome, after_previous, fresh};
use crate::db::WriteTxn;

/// Resolves once a batch has reached a point (its statements run, or its commit), or is
/// abandoned (the sender dropped).
pub type BatchSignal = futures_util::future::Shared<tokio::sync::oneshot::Receiver<()>>;

/// A batch's place behind the batch before it on the same writer (PostgreSQL, where two are
/// written at once): it commits only once the one before has committed, so runs become visible
/// in arrival order; and when the two share a row key (a redelivered message), it begins only
/// once the one before has committed, so neither ever waits for a row the other holds. The
/// default waits for nothing (SQLite's writers take turns anyway).
#[derive(Default)]
pub struct Place {
    /// What to wait for before beginning (the batch before's commit, when they share a key).
    pub before_started: Option<BatchSignal>,
    /// The batch before has committed.
    pub before_committed: Option<BatchSignal>,
}

async fn reached(signal: Option<BatchSignal>) -> Result<(), DbErr> {
    after_previous(async move {
        if let Some(signal) = signal {
            // An error means the batch before was abandoned: nothing left to wait for.
            let _ = signal.await;
        }
    })
    .await
}

/// What one committed batch made: per row, whether it was stored, and the ids of the runs created.
#[derive(Debug, Default)]
pub struct MatchedCommit {
    /// Per input row, in order.
    pub outcomes: Vec<RowOutcome>,
    /// Runs created (of stored rows only; a run that already existed is not among them).
    pub created: Vec<Uuid>,
}

/// Inserts `rows` (duplicates of a stored dedup key skipped) and, in the same transaction, the
/// runs in `runs[i]` of every row `i` that was stored, keeping its [`Place`]. The runs go in in
/// id order: a batch's run ids ascend with their events' times but not within one millisecond,
/// and in id order most index entries land after the one before instead of anywhere in the
/// last pages (the SQLite firehose writes its batch in 13 % less time). Flushed before it
/// returns: the caller acknowledges on it.
pub async fn insert_matched(
    db: &sea_orm::DatabaseConnection,
    rows: &[event::Model],
    runs: &[Vec<automation_run::Model>],
    place: &Place,
) -> Result<MatchedCommit, DbErr> {
    debug_assert_eq!(rows.len(), runs.len(), "one list of runs per row");
    if rows.is_empty() {
        return Ok(MatchedCommit::default());
    }
    // Before the transaction: waiting holds no pooled connection.
    reached(place.before_started.clone()).await?;
    if db.get_database_backend() == DbBackend::Postgres && has_committed(&place.before_committed) {
        return insert_in_one_statement(db, rows, runs).await;
    }
    let txn = WriteTxn::begin(db).await?;
    let stored: std::collections::HashSet<Uuid> =
        if db.get_database_backend() == DbBackend::Postgres {
            crate::db::unnest::insert_events(&txn, rows).await?
        } else {
            fresh::insert_events(&txn, rows).await?
        }
        .into_iter()
        .collect();
    let mut new_runs: Vec<automation_run::Model> = rows
        .iter()
        .zip(runs)
        .filter(|(row, _)| stored.contains(&row.id))
        .flat_map(|(_, runs)| runs.iter().cloned())
        .collect();
    new_runs.sort_unstable_by_key(|run| run.id);
    let created = if new_runs.is_empty() {
        Vec::new()
    } else if db.get_database_backend() == DbBackend::Postgres {
        crate::db::unnest::insert_runs(&txn, &new_runs).await?
    } else {
        // The runs of events this transaction stored: no run names an event before it is
        // stored. (A retry after an earlier attempt committed part of the rows finds those rows
        // and their runs stored under the same ids, and reports them stored and created.)
        fresh::insert_runs(&txn, &new_runs).await?
    };
    reached(place.before_committed.clone()).await?;
    txn.commit().await?;
    Ok(MatchedCommit {
        outcomes: outcomes_of(rows, &stored),
        created,
    })
}

/// Whether the batch before has committed (or there is none): nothing to hold the commit for.
fn has_committed(before: &Option<BatchSignal>) -> bool {
    use futures_util::FutureExt as _;
    before
        .as_ref()
        .is_none_or(|signal| signal.clone().now_or_never().is_some())
}

/// PostgreSQL, with no earlier batch to commit after: the events and the runs of those stored in
/// one statement in autocommit (one round trip instead of `BEGIN`, two statements and `COMMIT`).
async fn insert_in_one_statement(
    db: &sea_orm::DatabaseConnection,
    rows: &[event::Model],
    runs: &[Vec<automation_run::Model>],
) -> Result<MatchedCommit, DbErr> {
    let mut all_runs: Vec<&automation_run::Model> = runs.iter().flatten().collect();
    all_runs.sort_unstable_by_key(|run| run.id);
    let inserted = crate::db::unnest::insert_events_with_runs(db, rows, &all_runs).await?;
    let stored: std::collections::HashSet<Uuid> = inserted.events.into_iter().collect();
    Ok(MatchedCommit {
        outcomes: outcomes_of(rows, &stored),
        created: inserted.runs,
    })
}

/// Per row, stored or a duplicate.
fn outcomes_of(rows: &[event::Model], stored: &std::collections::HashSet<Uuid>) -> Vec<RowOutcome> {
    rows.iter()
        .map(|row| {
            if stored.contains(&row.id) {
                RowOutcome::Stored
            } else {
                RowOutcome::Duplicate
            }
        })
        .collect()
}

/// [`insert_matched`], isolating rows storage refuses: a batch that storage refuses for its data
/// ([`crate::db::is_row_refusal`]) is split in halves, recursively, until each refused row is
/// alone; every other row is stored with its runs. `Err` for any other error (storage down or
/// read-only, the batch before not committed in time, ...): retry the whole batch, acknowledge
/// nothing.
pub async fn insert_matched_isolating(
    db: &sea_orm::DatabaseConnection,
    rows: &[event::Model],
    runs: &[Vec<automation_run::Model>],
    place: &Place,
) -> Result<MatchedCommit, DbErr> {
    match insert_matched(db, rows, runs, place).await {
        Ok(done) => Ok(done),
        // Only a refusal of the data itself is isolated; any other error (storage down, read-only,
        // a schema mismatch) concerns every row alike: nothing is rejected or acknowledged.
        Err(err) if !crate::db::is_row_refusal(&err) => {
            crate::db::pool_check::note_error(&err);
            Err(err)
        }
        Err(err) if rows.len() <= 1 => Ok(MatchedCommit {
            outcomes: rows
                .iter()
                .map(|_| RowOutcome::Refused(crate::db::refusal_reason(&err)))
                .collect(),
            created: Vec::new(),
        }),
        Err(_) => {
            let half = rows.len() / 2;
            let (left, right) = (rows.split_at(half), runs.split_at(half));
            let mut done = Box::pin(insert_matched_isolating(db, left.0, right.0, place)).await?;
            let rest = Box::pin(insert_matched_isolating(db, left.1, right.1, place)).await?;
            done.outcomes.extend(rest.outcomes);
            done.created.extend(rest.created);
            Ok(done)
        }
    }
}
