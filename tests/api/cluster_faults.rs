//! Replicas under faults, as real processes: a replica SIGKILLed while a Slack app streams
//! envelopes (nothing lost: the peer redelivers what was not ACKed, and every envelope ends up as
//! one run), and a replica cut off from PostgreSQL (it stops its connections before another
//! replica may take them: no feed ever has two connections at once), and a killed replica's
//! committed but undispatched events (dispatched by the replica that takes its source, and by the
//! leader once it sees the replica gone).
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sea_orm::Database;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

use crate::cluster::{
    Replica, all_connected_once, assert_spread, create_feeds, eventually, holders, peers,
    replica_ids, runs, slack_cluster, start_replicas,
};
use crate::helpers::{create_pg_database, postgres_base};

#[actix_web::test]
async fn a_replica_killed_under_slack_traffic_loses_nothing() {
    use crate::slack::{TOKEN, messages};
    use crate::slack_peer::{SlackPeer, SlackPeerConfig};
    let peer = SlackPeer::start(
        SlackPeerConfig::new(TOKEN)
            .ack_deadline(Duration::from_secs(3))
            .max_redeliveries(5),
    );
    let (_url, _env, replicas, db, _guard) = slack_cluster(&peer).await;
    let total = 400;
    peer.send_envelopes_paced(messages(total, "kill"), 20.0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let holder = holders(&db).await.values().next().cloned().unwrap();
    let ids = replica_ids(&replicas).await;
    let at = ids.iter().position(|id| *id == holder).unwrap();
    replicas[at].served.signal("KILL");
    let killed = Instant::now();
    assert!(
        peer.wait_until(Duration::from_secs(15), |p| p.ready_sockets() >= 1
            && p.live_sockets() >= 1)
            .await,
        "no ready connection again within 15 s of the kill"
    );
    let back = killed.elapsed();
    assert!(back < Duration::from_secs(15), "back after {back:?}");
    // An envelope the killed replica committed and ACKed but had not dispatched yet is dispatched
    // by the replica that takes the source, as it takes it (the leader's sweep would take a
    // minute or two, never less than 59 s after the kill): every run is there within 45 s.
    assert!(
        eventually(Duration::from_secs(45), async || runs(&db).await
            == total as i64)
        .await,
        "runs: {} of {total}, unacked: {:?}",
        runs(&db).await,
        peer.unacked()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(runs(&db).await, total as i64, "a duplicate run");
}

/// A TCP proxy to PostgreSQL that can be cut: every connection through it is dropped and new
/// ones are refused.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
}

impl Proxy {
    async fn start(target: (String, u16)) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let flag = cut.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener.into_std().unwrap()).unwrap();
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        return;
                    };
                    if flag.load(Ordering::SeqCst) {
                        continue;
                    }
                    let (target, flag) = (target.clone(), flag.clone());
                    tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(target).await else {
                            return;
                        };
                        let (mut cr, mut cw) = client.into_split();
                        let (mut sr, mut sw) = server.into_split();
                        let up = tokio::io::copy(&mut cr, &mut sw);
                        let down = tokio::io::copy(&mut sr, &mut cw);
                        let cut = async {
                            while !flag.load(Ordering::SeqCst) {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        };
                        tokio::select! {
                            _ = up => {}
                            _ = down => {}
                            () = cut => {}
                        }
                    });
                }
            });
        });
        Proxy { port, cut }
    }
}

#[actix_web::test]
async fn a_replica_cut_off_from_the_database_stops_its_sources_before_they_are_taken() {
    let (url, _guard) = create_pg_database().await;
    let base = url::Url::parse(&postgres_base()).unwrap();
    let target = (
        base.host_str().unwrap().to_owned(),
        base.port().unwrap_or(5432),
    );
    let proxy = Proxy::start(target).await;
    let mut proxied = url::Url::parse(&url).unwrap();
    proxied.set_port(Some(proxy.port)).unwrap();
    let a = Replica::start(&url);
    assert!(a.ready(Duration::from_secs(60)).await);
    let b = Replica::start(proxied.as_str());
    assert!(b.ready(Duration::from_secs(60)).await);
    let db = Database::connect(&url).await.unwrap();
    let peers = peers(4);
    create_feeds(&a, &peers).await;
    let replicas = [a, b];
    let ids = replica_ids(&replicas).await;
    assert_spread(&db, &ids, 2, &peers).await;
    // Cut the second replica off: it cannot renew, stops its two sources after half a lease,
    // and the first takes them once the lease has expired. No feed ever sees two connections.
    proxy.cut.store(true, Ordering::SeqCst);
    let cut = Instant::now();
    let mut most = 0;
    let mut back = None;
    while cut.elapsed() < Duration::from_secs(20) {
        most = most.max(peers.iter().map(|p| p.open_connections()).max().unwrap());
        let held = holders(&db).await;
        if held.len() == 4 && held.values().all(|r| *r == ids[0]) && all_connected_once(&peers) {
            back = Some(cut.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(most <= 1, "a feed had {most} connections at once");
    let back = back.expect("the first replica did not take the cut-off replica's sources");
    assert!(back < Duration::from_secs(15), "taken over after {back:?}");
}

#[actix_web::test]
async fn a_paused_source_stays_paused_when_another_replica_takes_it_over() {
    let (url, _guard) = create_pg_database().await;
    let replicas = start_replicas(&url, 2, &[]).await;
    let db = Database::connect(&url).await.unwrap();
    let peers = peers(2);
    let sources = create_feeds(&replicas[0], &peers).await;
    let ids = replica_ids(&replicas).await;
    assert_spread(&db, &ids, 1, &peers).await;
    // Pause, through the first replica, the source the second one holds; then kill the second.
    let held = holders(&db).await;
    let on_second = (0..2)
        .find(|&i| held.get(&sources[i]) == Some(&ids[1]))
        .unwrap();
    let path = format!("/v1/websocket-sources/{}", sources[on_second]);
    let resp = replicas[0]
        .call("POST", &format!("{path}/pause"), None)
        .await;
    assert_eq!(resp.status, 202, "{}", resp.text);
    assert!(
        peers[on_second]
            .wait_until(Duration::from_secs(5), |p| p.open_connections() == 0)
            .await
    );
    assert!(
        eventually(Duration::from_secs(5), async || {
            replicas[0].call("GET", &path, None).await.body["status"]["state"] == "paused"
        })
        .await
    );
    let attempts = peers[on_second].attempts();
    replicas[1].served.signal("KILL");
    assert!(
        eventually(Duration::from_secs(15), async || {
            holders(&db).await.values().all(|r| *r == ids[0]) && holders(&db).await.len() == 2
        })
        .await
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        peers[on_second].attempts(),
        attempts,
        "the paused source connected again"
    );
    let shown = replicas[0].call("GET", &path, None).await;
    assert_eq!(shown.body["status"]["state"], "paused", "{}", shown.text);
    // Resumed on its new holder, it connects.
    let resp = replicas[0]
        .call("POST", &format!("{path}/resume"), None)
        .await;
    assert_eq!(resp.status, 202, "{}", resp.text);
    assert!(
        peers[on_second]
            .wait_until(Duration::from_secs(5), |p| p.open_connections() == 1)
            .await
    );
}

#[actix_web::test]
async fn what_a_killed_replica_committed_but_did_not_dispatch_is_dispatched_once_it_is_gone() {
    let (url, _guard) = create_pg_database().await;
    let replicas = start_replicas(&url, 2, &[]).await;
    let db = Database::connect(&url).await.unwrap();
    let peers = peers(1);
    let source = create_feeds(&replicas[0], &peers).await.remove(0);
    let trigger = json!({"type": "event", "source": "feed-0", "on": ["*"]});
    let resp = replicas[0]
        .call(
            "POST",
            "/v1/automations",
            Some(json!({"name": "all", "trigger": trigger})),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    let ids = replica_ids(&replicas).await;
    assert!(
        eventually(Duration::from_secs(20), async || holders(&db).await.len()
            == 1
            && all_connected_once(&peers))
        .await,
        "the source was never held and connected"
    );
    let holder = holders(&db).await[&source].clone();
    let at = ids.iter().position(|id| *id == holder).unwrap();
    // The holder dies right after committing a message of its source and a webhook delivery
    // (no source id) that it had not dispatched yet, written here as it would have written them
    // (`dispatched_at` empty).
    replicas[at].served.signal("KILL");
    let killed = Instant::now();
    for (dedup, origin, with_source) in [
        ("left-behind", "websocket", true),
        ("orphan", "webhook", false),
    ] {
        sea_orm::ConnectionTrait::execute_raw(
            &db,
            sea_orm::Statement::from_sql_and_values(
                sea_orm::DbBackend::Postgres,
                "INSERT INTO events (id, org_id, origin, source, source_id, dedup_key, event_key, raw, \
                   meta, status, received_at) \
                 SELECT $1, org_id, $2, 'feed-0', CASE WHEN $3 THEN id END, $4, 'tick', \
                   '{\"type\": \"tick\"}'::jsonb, '{}'::jsonb, 'received', now() \
                 FROM websocket_sources WHERE id = $5",
                vec![
                    uuid::Uuid::now_v7().into(),
                    origin.into(),
                    with_source.into(),
                    dedup.into(),
                    uuid::Uuid::parse_str(&source).unwrap().into(),
                ],
            ),
        )
        .await
        .unwrap();
    }
    // The survivor takes the source when the lease expires (about 10 s) and dispatches its event
    // then; as the leader, it sees the replica gone as well and dispatches the delivery. The
    // minute's sweep only takes events over a minute old.
    let dispatched = eventually(Duration::from_secs(30), async || runs(&db).await == 2).await;
    let survivor: Vec<String> = replicas[1 - at].served.lines.try_iter().collect();
    let events = sea_orm::ConnectionTrait::query_all_raw(
        &db,
        sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT dedup_key || ' ' || status || ' ' || COALESCE(outcome::text, '-') AS e FROM events",
        ),
    )
    .await
    .unwrap()
    .iter()
    .map(|row| row.try_get::<String>("", "e").unwrap())
    .collect::<Vec<_>>();
    assert!(
        dispatched,
        "{} of 2 runs {:?} after the kill (holders: {:?}; events: {events:?}); the survivor logged:\n{}",
        runs(&db).await,
        killed.elapsed(),
        holders(&db).await,
        survivor.join("\n")
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(runs(&db).await, 2, "a duplicate run");
}
