//! The order of a writer's batches on PostgreSQL, where two are written at once: each commits
//! only after the one before it has committed (so runs become visible in arrival order), and
//! runs its statements alongside the one before unless the two share a key (a redelivered
//! message): then it begins only once the earlier one has committed, so neither ever waits for
//! a row the other inserted (the earlier one may split or retry its batch).

use std::collections::HashSet;

use futures_util::FutureExt as _;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::db::inbox::{BatchSignal, Place};

/// A row's unique key among events: org, source, and its dedup key (or, with a leading `#`, its
/// replay key).
pub(super) type RowKey = (Uuid, String, String);

/// The key of a row with a dedup key or a replay key of its own.
pub(super) fn keys_of(
    org_id: Uuid,
    source: &str,
    dedup_key: Option<&str>,
    replay_key: Option<&str>,
) -> impl Iterator<Item = RowKey> {
    let dedup = dedup_key.map(|key| (org_id, source.to_owned(), key.to_owned()));
    let replay = replay_key.map(|key| (org_id, source.to_owned(), format!("#{key}")));
    dedup.into_iter().chain(replay)
}

/// The last batch started: when it has committed, and its keys.
struct Last {
    committed: BatchSignal,
    keys: HashSet<RowKey>,
}

/// Hands each batch its [`Place`] behind the one before.
pub(super) struct BatchOrder {
    /// PostgreSQL: batches overlap. SQLite: one write at a time, nothing to order.
    ordered: bool,
    last: Option<Last>,
}

impl BatchOrder {
    /// The order of a new writer; `ordered` on PostgreSQL.
    pub(super) fn new(ordered: bool) -> BatchOrder {
        BatchOrder {
            ordered,
            last: None,
        }
    }

    /// The place of the next batch, whose rows have `keys`, and what tells the batch after it
    /// that this one has committed (dropped once it has, or was given up).
    pub(super) fn next(&mut self, keys: HashSet<RowKey>) -> (Place, Option<oneshot::Sender<()>>) {
        if !self.ordered {
            return (Place::default(), None);
        }
        let (committed, committed_rx) = oneshot::channel();
        let next = Last {
            committed: committed_rx.shared(),
            keys,
        };
        let place = match self.last.replace(next) {
            None => Place::default(),
            Some(before) => {
                let shared = self
                    .last
                    .as_ref()
                    .is_some_and(|now| !now.keys.is_disjoint(&before.keys));
                Place {
                    before_started: shared.then(|| before.committed.clone()),
                    before_committed: Some(before.committed),
                }
            }
        };
        (place, Some(committed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> HashSet<RowKey> {
        let org = Uuid::nil();
        names
            .iter()
            .flat_map(|k| keys_of(org, "s", Some(k), None))
            .collect()
    }

    #[test]
    fn a_batch_waits_for_the_statements_before_it_only_when_they_share_a_key() {
        let mut order = BatchOrder::new(true);
        let (first, _) = order.next(keys(&["a", "b"]));
        assert!(first.before_started.is_none() && first.before_committed.is_none());
        let (apart, _) = order.next(keys(&["c"]));
        assert!(
            apart.before_started.is_none(),
            "no shared key: statements at once"
        );
        assert!(apart.before_committed.is_some(), "commits still in order");
        let (shared, _) = order.next(keys(&["c", "d"]));
        assert!(
            shared.before_started.is_some(),
            "a redelivered key waits for the commit before"
        );
        assert!(shared.before_committed.is_some());
    }

    #[test]
    fn sqlite_orders_nothing() {
        let mut order = BatchOrder::new(false);
        order.next(keys(&["a"]));
        let (place, committed) = order.next(keys(&["a"]));
        assert!(place.before_started.is_none() && place.before_committed.is_none());
        assert!(committed.is_none());
    }
}
