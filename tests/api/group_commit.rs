//! The shared inbox writers (issue 15): messages of many sources share one transaction, and
//! still no ACK goes out before the commit that holds its message, a message storage refuses
//! fails alone, and each source's messages keep their order.
use std::time::Duration;

use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, TransactionTrait,
};
use serde_json::json;

use crate::both_backends_private;
use crate::helpers::{Backend, TestApp, eventually};
use crate::ingest::{WAIT, create_source, source_body, status, wait_state};
use crate::peer::{ConnectionScript, Peer, Step};

/// How long each peer waits after its connect before it sends: time for the test to take the
/// storage lock first.
const QUIET: Duration = Duration::from_secs(4);
/// Messages per source.
const PER_SOURCE: usize = 20;

/// A trigger that makes storage refuse any event whose `id` is `poison` (a constraint error,
/// not an outage), the way real storage refuses a value it cannot hold.
async fn install_poison_trigger(app: &TestApp) {
    let statements: &[&str] = match app.backend {
        Backend::Postgres => &[
            "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.raw->>'id' = 'poison' THEN RAISE EXCEPTION 'poison message'; END IF; \
             RETURN NEW; END $$",
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON events FOR EACH ROW \
             EXECUTE FUNCTION refuse_poison()",
        ],
        Backend::Sqlite => &["CREATE TRIGGER refuse_poison BEFORE INSERT ON events \
             WHEN json_extract(NEW.raw, '$.id') = 'poison' \
             BEGIN SELECT RAISE(ABORT, 'poison message'); END"],
    };
    for sql in statements {
        app.db.execute_unprepared(sql).await.unwrap();
    }
}

/// The ids source `name` sends, in order (`b` has a poison message in the middle).
fn ids_of(name: &str) -> Vec<String> {
    let mut ids: Vec<String> = (0..PER_SOURCE).map(|i| format!("{name}-{i:02}")).collect();
    if name == "b" {
        ids.insert(PER_SOURCE / 2, "poison".to_owned());
    }
    ids
}

fn peer_of(name: &str) -> Peer {
    let mut steps = vec![Step::Sleep(QUIET)];
    steps.extend(
        ids_of(name)
            .into_iter()
            .map(|id| Step::Send(json!({"type": "t", "id": id}).to_string())),
    );
    Peer::start(vec![ConnectionScript::accept(steps)])
}

/// Stored ids of source `name`, in the order they were stored (event ids are UUID v7).
async fn stored_ids(app: &TestApp, name: &str) -> Vec<String> {
    entity::event::Entity::find()
        .filter(entity::event::Column::Source.eq(name))
        .order_by_asc(entity::event::Column::Id)
        .all(&app.db)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.dedup_key)
        .collect()
}

both_backends_private! {
    async fn shared_commits_ack_after_commit_isolate_poison_and_keep_order(app: TestApp) {
        install_poison_trigger(&app).await;
        let names = ["a", "b", "c"];
        let peers: Vec<Peer> = names.iter().map(|n| peer_of(n)).collect();
        let mut ids = Vec::new();
        for (name, peer) in names.iter().zip(&peers) {
            let body = source_body(name, peer, json!({"ack_expr": "{ack: id}"}));
            ids.push(create_source(&app, body).await);
        }
        for id in &ids {
            wait_state(&app, id, "connected").await;
        }
        // Hold the events table (PostgreSQL) or the whole database (SQLite) before the peers
        // send: every message of the three sources waits in the shared writer.
        let holder = sea_orm::Database::connect(app.settings.database_url()).await.unwrap();
        let lock = holder.begin().await.unwrap();
        match app.backend {
            Backend::Postgres => lock.execute_unprepared("LOCK TABLE events IN EXCLUSIVE MODE").await,
            Backend::Sqlite => lock.execute_unprepared("CREATE TABLE hold_the_write_lock (x INTEGER)").await,
        }
        .unwrap();
        tokio::time::sleep(QUIET + Duration::from_secs(1)).await;
        if app.backend == Backend::Postgres {
            // Fail the group commit itself: the writer's blocked connection is cut, its insert
            // fails as storage unavailable, and it retries (and blocks again).
            let cut = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                       WHERE datname = current_database() AND wait_event_type = 'Lock' \
                       AND pid <> pg_backend_pid()";
            holder.execute_unprepared(cut).await.unwrap();
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        for peer in &peers {
            assert_eq!(peer.texts(), Vec::<String>::new(), "an ACK before its commit");
        }
        lock.rollback().await.unwrap();

        // Everything is stored but the poison message, in each source's order, and ACKed in
        // that order (the poison message too: it can never be stored).
        for (name, peer) in names.iter().zip(&peers) {
            let expected: Vec<String> = ids_of(name).iter().map(|id| json!({"ack": id}).to_string()).collect();
            assert!(peer.wait_until(WAIT, |p| p.texts().len() >= expected.len()).await, "{name}: {:?}", peer.texts());
            assert_eq!(peer.texts(), expected, "{name}: ACKs in order");
            let stored: Vec<String> = ids_of(name).into_iter().filter(|id| id != "poison").collect();
            assert!(eventually(WAIT, || async { stored_ids(&app, name).await.len() == stored.len() }).await);
            assert_eq!(stored_ids(&app, name).await, stored, "{name}: stored in order");
        }
        let b = status(&app, &ids[1]).await;
        assert_eq!(b["counters"]["rejected"], 1, "{b}");
        assert!(b["counters"]["last_rejection"].as_str().unwrap().contains("storage refused"), "{b}");
        for id in [&ids[0], &ids[2]] {
            assert_eq!(status(&app, id).await["counters"]["rejected"], 0);
        }
    }
}

both_backends_private! {
    async fn an_error_that_concerns_every_row_is_retried_not_rejected(app: TestApp) {
        // Not "storage unavailable" and not a refusal of one row's data: the events table is
        // gone (as in a schema mismatch; PostgreSQL 42P01, SQLite's generic error). Every
        // message waits, unacknowledged and not rejected, until storage takes writes again.
        let peer = peer_of("a");
        let id = create_source(&app, source_body("a", &peer, json!({"ack_expr": "{ack: id}"}))).await;
        wait_state(&app, &id, "connected").await;
        app.db.execute_unprepared("ALTER TABLE events RENAME TO events_away").await.unwrap();
        tokio::time::sleep(QUIET + Duration::from_millis(1500)).await;
        assert_eq!(peer.texts(), Vec::<String>::new(), "an ACK for a message that was not stored");
        let during = status(&app, &id).await;
        assert_eq!(during["counters"]["rejected"], 0, "{during}");
        assert!(during["counters"]["storage_errors"].as_u64().unwrap_or(0) > 0, "{during}");
        app.db.execute_unprepared("ALTER TABLE events_away RENAME TO events").await.unwrap();

        let expected: Vec<String> = ids_of("a").iter().map(|id| json!({"ack": id}).to_string()).collect();
        assert!(peer.wait_until(WAIT, |p| p.texts().len() >= expected.len()).await, "{:?}", peer.texts());
        assert_eq!(peer.texts(), expected);
        assert!(eventually(WAIT, || async { stored_ids(&app, "a").await.len() == PER_SOURCE }).await);
        assert_eq!(stored_ids(&app, "a").await, ids_of("a"));
        assert_eq!(status(&app, &id).await["counters"]["rejected"], 0);
    }
}
