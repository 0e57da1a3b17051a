//! The incremental index against a full rebuild, over random sequences of changes.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::pipeline::expr::to_value;

const PATTERNS: &[&str] = &["order.*", "order.created", "*", "user.?", "[ou]*d", "x"];
const FILTERS: &[Option<&str>] = &[None, Some("amount > `100`"), Some("length(amount)")];
const KEYS: &[&str] = &["order.created", "order.paid", "user.a", "x", "ud", "none"];
const SOURCES: &[&str] = &["a", "b", "c"];

/// One change through the API: create or PATCH (a whole new state), or delete.
#[derive(Debug, Clone)]
enum Change {
    Put {
        id: usize,
        org: usize,
        source: usize,
        on: Vec<usize>,
        filter: usize,
        enabled: bool,
    },
    Delete {
        id: usize,
    },
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        3 => (0..8usize, 0..2usize, 0..SOURCES.len(), prop::collection::vec(0..PATTERNS.len(), 0..3),
              0..FILTERS.len(), prop::bool::weighted(0.8))
            .prop_map(|(id, org, source, on, filter, enabled)| Change::Put { id, org, source, on, filter, enabled }),
        1 => (0..8usize).prop_map(|id| Change::Delete { id }),
    ]
}

/// Stable ids and orgs, in id order.
fn ids() -> (Vec<Uuid>, Vec<Uuid>) {
    let mut ids: Vec<Uuid> = (0..8).map(|_| Uuid::now_v7()).collect();
    ids.sort();
    (ids, vec![Uuid::now_v7(), Uuid::now_v7()])
}

/// What storage holds of one automation: (org, trigger, enabled).
type Stored = (Uuid, serde_json::Value, bool);

fn indexed(id: Uuid, stored: Option<&Stored>) -> Option<IndexedRow> {
    stored
        .filter(|(_, _, enabled)| *enabled)
        .map(|(org_id, trigger, _)| IndexedRow {
            id,
            org_id: *org_id,
            trigger: trigger.clone(),
        })
}

fn assert_same(incremental: &IndexWriter, rebuilt: &IndexWriter, orgs: &[Uuid]) {
    assert_eq!(incremental.index().len(), rebuilt.index().len());
    for payload in [json!({"amount": 50}), json!({"amount": 500}), json!({})] {
        let payload = to_value(&payload);
        for org in orgs {
            for source in SOURCES {
                for key in KEYS {
                    assert_eq!(
                        incremental
                            .index()
                            .evaluate(*org, source, Some(key), &payload),
                        rebuilt.index().evaluate(*org, source, Some(key), &payload),
                        "{source} {key}"
                    );
                }
            }
        }
    }
    assert_eq!(incremental.globs().len(), rebuilt.globs().len());
    for pattern in PATTERNS {
        assert_eq!(
            incremental.globs().users(pattern),
            rebuilt.globs().users(pattern),
            "{pattern}"
        );
    }
}

proptest! {
    #[test]
    fn incremental_changes_match_a_full_rebuild(changes in prop::collection::vec(change(), 1..40)) {
        let (ids, orgs) = ids();
        let mut stored: BTreeMap<Uuid, Stored> = BTreeMap::new();
        let mut writer = IndexWriter::default();
        for change in changes {
            let id = match change {
                Change::Put { id, org, source, on, filter, enabled } => {
                    let on: Vec<&str> = on.iter().map(|p| PATTERNS[*p]).collect();
                    let trigger = json!({"type": "event", "source": SOURCES[source], "on": on, "filter": FILTERS[filter]});
                    stored.insert(ids[id], (orgs[org], trigger, enabled));
                    ids[id]
                }
                Change::Delete { id } => {
                    stored.remove(&ids[id]);
                    ids[id]
                }
            };
            let _ = writer.apply(id, indexed(id, stored.get(&id)));
            let (rebuilt, _) = IndexWriter::build(stored.iter().filter_map(|(id, s)| indexed(*id, Some(s))));
            assert_same(&writer, &rebuilt, &orgs);
        }
    }
}

#[test]
fn two_automations_share_a_glob_and_the_survivor_still_matches() {
    let (ids, orgs) = ids();
    let row = |id: Uuid, source: &str| IndexedRow {
        id,
        org_id: orgs[0],
        trigger: json!({"type": "event", "source": source, "on": "order.*"}),
    };
    let mut writer = IndexWriter::default();
    writer.apply(ids[0], Some(row(ids[0], "a"))).unwrap();
    writer.apply(ids[1], Some(row(ids[1], "a"))).unwrap();
    writer.apply(ids[2], Some(row(ids[2], "b"))).unwrap();
    assert_eq!(
        (writer.globs().len(), writer.globs().users("order.*")),
        (1, 3)
    );
    let before = writer.snapshot();
    writer.apply(ids[0], None).unwrap();
    let payload = to_value(&json!({}));
    let matched: Vec<Uuid> = writer
        .index()
        .evaluate(orgs[0], "a", Some("order.paid"), &payload)
        .iter()
        .map(|o| o.automation_id)
        .collect();
    assert_eq!(matched, vec![ids[1]]);
    assert_eq!(writer.globs().users("order.*"), 2);
    // A snapshot taken before the change still reads as it was.
    assert_eq!(before.automations_of(orgs[0], "a").len(), 2);
    writer.apply(ids[1], None).unwrap();
    writer.apply(ids[2], None).unwrap();
    assert!(writer.globs().is_empty() && writer.index().is_empty());
    assert!(writer.index().automations_of(orgs[0], "a").is_empty());
}

#[test]
fn a_change_copies_only_its_own_source_list() {
    let org = Uuid::now_v7();
    let mut writer = IndexWriter::default();
    let mut lists = HashMap::new();
    for source in SOURCES {
        let id = Uuid::now_v7();
        let trigger = json!({"type": "event", "source": source, "on": "x"});
        writer
            .apply(
                id,
                Some(IndexedRow {
                    id,
                    org_id: org,
                    trigger,
                }),
            )
            .unwrap();
    }
    for source in SOURCES {
        lists.insert(*source, writer.index().automations_of(org, source).as_ptr());
    }
    let id = Uuid::now_v7();
    let trigger = json!({"type": "event", "source": "a", "on": "y"});
    writer
        .apply(
            id,
            Some(IndexedRow {
                id,
                org_id: org,
                trigger,
            }),
        )
        .unwrap();
    assert_ne!(writer.index().automations_of(org, "a").as_ptr(), lists["a"]);
    assert_eq!(writer.index().automations_of(org, "b").as_ptr(), lists["b"]);
    assert_eq!(writer.index().automations_of(org, "c").as_ptr(), lists["c"]);
}
