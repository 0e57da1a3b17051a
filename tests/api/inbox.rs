//! The inbox's storage statements on both engines (PostgreSQL takes whole batches as `UNNEST`ed
//! arrays, SQLite multi-row `VALUES`): every column round-trips exactly, `NULL`s included, and
//! duplicates are skipped within a batch and against what is stored.
use entity::{automation_run, event};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::json;
use switchboard::db::inbox::{self, DispatchRecord};
use uuid::Uuid;

use crate::both_backends;
use crate::helpers::TestApp;

pub fn row(org_id: Uuid, dedup_key: &str, n: usize) -> event::Model {
    let id = switchboard::db::new_id();
    let now = switchboard::db::now();
    let (even, keyless) = (n.is_multiple_of(2), n.is_multiple_of(3));
    // Every nullable column both set and unset across the rows, with text that needs escaping.
    event::Model {
        id,
        org_id,
        origin: "websocket".to_owned(),
        source: "orders".to_owned(),
        source_id: even.then(Uuid::now_v7),
        dedup_key: dedup_key.to_owned(),
        event_key: (!keyless).then(|| format!("order.\"créé\" {n}\\")),
        raw: json!({"n": n, "text": "a \"quoted\"\n 'line' ü", "nested": [1, {"x": null}]}),
        payload: (!even).then(|| json!({"n": n})),
        meta: json!({"envelope_type": "events_api", "retry_attempt": n}),
        status: if keyless { "no_key" } else { "received" }.to_owned(),
        error: keyless.then(|| "event_key_expr gave \"null\"".to_owned()),
        outcome: None,
        received_at: now,
        dispatched_at: keyless.then_some(now),
        replay_key: None,
    }
}

fn decisions(org: Uuid, rows: &[event::Model], automations: &[Uuid]) -> Vec<DispatchRecord> {
    rows.iter()
        .map(|e| DispatchRecord {
            event_id: e.id,
            outcome: json!([{"automation_id": automations[0], "result": "matched", "note": "it's \"ok\""}]),
            runs: automations
                .iter()
                .map(|a| inbox::pending_run(inbox::run_id(*a, e.id, 1), org, *a, (e.id, &e.source)))
                .collect(),
        })
        .collect()
}

async fn runs_in(app: &TestApp, org: Uuid) -> usize {
    runs_of(app, org).await.len()
}

/// The org's stored events, oldest first.
async fn events_of(app: &TestApp, org: Uuid) -> Vec<event::Model> {
    event::Entity::find()
        .filter(event::Column::OrgId.eq(org))
        .order_by_asc(event::Column::Id)
        .all(&app.db)
        .await
        .unwrap()
}

/// The org's stored runs, in id order.
async fn runs_of(app: &TestApp, org: Uuid) -> Vec<automation_run::Model> {
    automation_run::Entity::find()
        .filter(automation_run::Column::OrgId.eq(org))
        .order_by_asc(automation_run::Column::Id)
        .all(&app.db)
        .await
        .unwrap()
}

both_backends! {
    async fn event_rows_round_trip_and_duplicates_are_skipped(app: TestApp) {
        let org = Uuid::now_v7();
        let mut rows: Vec<event::Model> = (0..250).map(|n| row(org, &format!("k{n}"), n)).collect();
        // A duplicate within the batch: the first one wins.
        rows.push(row(org, "k7", 7));
        let stored = inbox::insert_events(&app.db, &rows).await.unwrap();
        assert_eq!(stored.iter().filter(|s| **s).count(), 250);
        assert!(!stored[250], "the in-batch duplicate is not stored");

        let read = events_of(&app, org).await;
        assert_eq!(read, rows[..250].to_vec(), "every column round-trips");

        // Against what is stored: only the new key is inserted.
        let again = vec![row(org, "k3", 3), row(org, "new", 1)];
        let stored = inbox::insert_events(&app.db, &again).await.unwrap();
        assert_eq!(stored, vec![false, true]);
        assert_eq!(
            inbox::insert_events(&app.db, &[]).await.unwrap(),
            Vec::<bool>::new()
        );
    }

    async fn matched_batches_store_new_events_with_their_runs_only(app: TestApp) {
        let org = Uuid::now_v7();
        let automations = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
        let earlier = row(org, "m-stored", 1);
        inbox::insert_events(&app.db, std::slice::from_ref(&earlier)).await.unwrap();
        // 150 new rows, then a duplicate of one of them and one of the row stored before.
        let mut rows: Vec<event::Model> = (0..150).map(|n| row(org, &format!("m{n}"), n * 3 + 1)).collect();
        rows.push(row(org, "m10", 31));
        rows.push(row(org, "m-stored", 2));
        let runs: Vec<Vec<automation_run::Model>> = decisions(org, &rows, &automations)
            .into_iter()
            .map(|record| record.runs)
            .collect();
        // One run named twice (the same automation and event): stored and reported once.
        let mut with_twice = runs.clone();
        with_twice[5].push(runs[5][0].clone());
        let place = inbox::Place::default();
        let done = inbox::insert_matched(&app.db, &rows, &with_twice, &place).await.unwrap();

        use inbox::RowOutcome::{Duplicate, Stored};
        assert!(done.outcomes[..150].iter().all(|o| *o == Stored), "{:?}", done.outcomes);
        assert_eq!(&done.outcomes[150..], &[Duplicate, Duplicate]);
        let mut expected: Vec<automation_run::Model> = runs[..150].iter().flatten().cloned().collect();
        expected.sort_by_key(|r| r.id);
        let mut created = done.created.clone();
        created.sort();
        assert_eq!(created, expected.iter().map(|r| r.id).collect::<Vec<_>>(), "the runs of stored rows only");
        let stored_runs = runs_of(&app, org).await;
        assert_eq!(stored_runs, expected, "every run column round-trips; no run of a duplicate");
        let events = events_of(&app, org).await;
        let mut expected_events = vec![earlier];
        expected_events.extend(rows[..150].iter().cloned());
        assert_eq!(events, expected_events, "every event column round-trips");

        // Delivered again (new rows, the same dedup keys): nothing new, no run created.
        let redelivered: Vec<event::Model> = (0..3).map(|n| row(org, &format!("m{n}"), n * 3 + 1)).collect();
        let runs = decisions(org, &redelivered, &automations).into_iter().map(|r| r.runs).collect::<Vec<_>>();
        let again = inbox::insert_matched(&app.db, &redelivered, &runs, &place).await.unwrap();
        assert!(again.outcomes.iter().all(|o| *o == Duplicate));
        assert!(again.created.is_empty());
    }

    async fn dispatch_commits_runs_once_and_records_outcomes(app: TestApp) {
        let org = Uuid::now_v7();
        let rows: Vec<event::Model> = (0..120).map(|n| row(org, &format!("d{n}"), n * 3 + 1)).collect();
        inbox::insert_events(&app.db, &rows).await.unwrap();
        let automations = [Uuid::now_v7(), Uuid::now_v7()];
        let records = decisions(org, &rows, &automations);
        let created = inbox::commit_dispatch(&app.db, &records).await.unwrap();
        assert_eq!(created.len(), 240);
        // A second commit of the same decisions (a retry, a replay, another replica) adds nothing.
        assert!(inbox::commit_dispatch(&app.db, &records).await.unwrap().is_empty());

        let runs = runs_of(&app, org).await;
        let mut expected: Vec<automation_run::Model> =
            records.iter().flat_map(|r| r.runs.clone()).collect();
        expected.sort_by_key(|r| r.id);
        assert_eq!(runs, expected, "every run column round-trips");

        let events = event::Entity::find()
            .filter(event::Column::OrgId.eq(org))
            .all(&app.db)
            .await
            .unwrap();
        for e in events {
            assert_eq!(e.status, "dispatched");
            assert!(e.dispatched_at.is_some());
            assert_eq!(e.outcome.unwrap()[0]["note"], json!("it's \"ok\""));
        }
    }
}

/// Only PostgreSQL commits a source's batches concurrently (SQLite has one writer, and holding its
/// process-wide write gate for seconds here would stall every other SQLite test).
mod ordered_commits {
    use super::*;
    use crate::helpers::{Backend, spawn_app};

    /// `n` stored, undispatched events of a new org and the decisions for them (one automation).
    async fn stored_batch(app: &TestApp, n: usize) -> (Uuid, Vec<DispatchRecord>) {
        let org = Uuid::now_v7();
        let rows: Vec<event::Model> = (0..n)
            .map(|i| row(org, &format!("e{i}"), i * 3 + 1))
            .collect();
        inbox::insert_events(&app.db, &rows).await.unwrap();
        (org, decisions(org, &rows, &[Uuid::now_v7()]))
    }

    #[actix_web::test]
    async fn a_dispatch_commit_waits_for_the_batch_before_it() {
        let app = spawn_app(Backend::Postgres).await;
        let (org, records) = stored_batch(&app, 10).await;
        let (earlier_committed, signal) = tokio::sync::oneshot::channel::<()>();
        let db = app.db.clone();
        let later = actix_web::rt::spawn(async move {
            let previous = async move {
                let _ = signal.await;
            };
            inbox::commit_dispatch_after(&db, &records, previous).await
        });
        // Written but held back: nothing is visible until the earlier batch has committed.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert_eq!(runs_in(&app, org).await, 0);
        earlier_committed.send(()).unwrap();
        assert_eq!(later.await.unwrap().unwrap().len(), 10);
        assert_eq!(runs_in(&app, org).await, 10);
    }

    #[actix_web::test]
    async fn a_dispatch_commit_gives_up_waiting_and_rolls_back() {
        let app = spawn_app(Backend::Postgres).await;
        let (org, records) = stored_batch(&app, 5).await;
        let started = std::time::Instant::now();
        let result =
            inbox::commit_dispatch_after(&app.db, &records, std::future::pending::<()>()).await;
        assert!(
            result.is_err(),
            "an earlier batch that never commits is not waited for forever"
        );
        assert!(started.elapsed() >= inbox::PREVIOUS_COMMIT_WAIT);
        assert_eq!(runs_in(&app, org).await, 0, "rolled back, to be retried");
        let undispatched = event::Entity::find()
            .filter(event::Column::OrgId.eq(org))
            .filter(event::Column::DispatchedAt.is_null())
            .all(&app.db)
            .await
            .unwrap();
        assert_eq!(undispatched.len(), 5);
        // The retry (the earlier batch now done) commits everything.
        assert_eq!(
            inbox::commit_dispatch(&app.db, &records)
                .await
                .unwrap()
                .len(),
            5
        );
    }
}

both_backends! {
    async fn a_dispatcher_takes_an_event_it_already_holds_only_once(app: TestApp) {
        use std::sync::Arc;
        use switchboard::actors::dispatch::{DispatchPool, PendingEvent};
        let org = Uuid::now_v7();
        let event = row(org, "held", 1);
        inbox::insert_events(&app.db, std::slice::from_ref(&event)).await.unwrap();
        let registry = switchboard::actors::registry::AutomationRegistry::load(app.db.clone())
            .await
            .unwrap();
        let metrics = Arc::new(switchboard::metrics::Metrics::new());
        let pool = DispatchPool::start(
            1,
            100,
            app.db.clone(),
            registry,
            switchboard::actors::publisher::Publisher::new(),
            metrics.clone(),
            switchboard::queue::notifier::RunNotifier::new(),
        );
        // The same event twice while the first is queued or being committed (as the periodic
        // sweep or start-up recovery can hand it over): it is dispatched once. A write held on
        // the event's row keeps the first commit waiting until both have been handed over, so
        // the second cannot come after it however the threads are scheduled.
        use sea_orm::ConnectionTrait as _;
        let hold = switchboard::db::WriteTxn::begin(&app.db).await.unwrap();
        hold.execute_raw(sea_orm::Statement::from_sql_and_values(
            hold.get_database_backend(),
            match hold.get_database_backend() {
                sea_orm::DbBackend::Postgres => "UPDATE events SET outcome = NULL WHERE id = $1",
                _ => "UPDATE events SET outcome = NULL WHERE id = ?",
            },
            [event.id.into()],
        ))
        .await
        .unwrap();
        let pending = PendingEvent::from(event.clone());
        pool.dispatch(pending.route, vec![pending.clone()]);
        pool.dispatch(pending.route, vec![pending.clone()]);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        hold.commit().await.unwrap();
        let dispatched = crate::helpers::eventually(std::time::Duration::from_secs(10), || async {
            event::Entity::find_by_id(event.id)
                .one(&app.db)
                .await
                .unwrap()
                .is_some_and(|e| e.dispatched_at.is_some())
        })
        .await;
        assert!(dispatched);
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let text = metrics.render(Vec::new(), Default::default()).unwrap();
        let sum = text
            .lines()
            .find_map(|l| l.strip_prefix("switchboard_dispatch_batch_events_sum "))
            .unwrap_or_else(|| panic!("no batch sum in {text}"));
        assert_eq!(sum.trim().parse::<f64>().unwrap(), 1.0, "{text}");
        // Once committed it may be handed over again (a replay, a later sweep): taken again.
        pool.dispatch(pending.route, vec![pending]);
        let twice = crate::helpers::eventually(std::time::Duration::from_secs(10), || async {
            metrics
                .render(Vec::new(), Default::default())
                .unwrap()
                .contains("switchboard_dispatch_batch_events_sum 2")
        })
        .await;
        assert!(twice);
    }
}
