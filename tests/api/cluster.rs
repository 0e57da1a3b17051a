//! Several replicas on one PostgreSQL, as real processes of the binary started and killed by the
//! test: sources spread evenly with exactly one connection each, commands and changes sent to any
//! replica reach the holder, a SIGKILLed replica's sources are connected elsewhere within 15 s
//! with no duplicate run, and a SIGTERMed replica hands its sources over before it exits.
use std::collections::HashMap;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait as _, Database, DatabaseConnection, Statement};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_KEY, PgDatabase, Resp, create_pg_database, read};
use crate::ingest::source_body;
use crate::peer::{ConnectionScript, Peer, Step};
use crate::process::{Served, free_port, switchboard};

const KEYS: &str = "k1:MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI=";

/// One replica process.
pub(crate) struct Replica {
    pub(crate) served: Served,
    pub(crate) port: u16,
    _dir: tempfile::TempDir,
}

impl Replica {
    pub(crate) fn start(url: &str) -> Replica {
        Replica::start_with(url, &[])
    }

    pub(crate) fn start_with(url: &str, extra: &[(&str, String)]) -> Replica {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut command = switchboard(dir.path());
        command
            .arg("serve")
            .env("SWITCHBOARD_BIND", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", url)
            .env("SWITCHBOARD_CLUSTER", "true")
            .env("SWITCHBOARD_SECRET_KEYS", KEYS)
            .env("SWITCHBOARD_BOOTSTRAP_API_KEY", ADMIN_KEY)
            .env("SWITCHBOARD_ALLOW_PRIVATE_NETWORKS", "true")
            .env("SWITCHBOARD_LOG_LEVEL", "warn,switchboard::cluster=info");
        for (name, value) in extra {
            command.env(name, value);
        }
        Replica {
            served: Served::start(command),
            port,
            _dir: dir,
        }
    }

    pub(crate) async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .finish();
        let method = awc::http::Method::from_bytes(method.as_bytes()).unwrap();
        let req = client
            .request(method, format!("http://127.0.0.1:{}{path}", self.port))
            .insert_header(("Authorization", format!("Bearer {ADMIN_KEY}")));
        let res = match body {
            Some(body) => req.send_json(&body).await,
            None => req.send().await,
        };
        read(res.unwrap()).await
    }

    pub(crate) async fn ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let client = awc::Client::default();
            if let Ok(res) = client
                .get(format!("http://127.0.0.1:{}/readyz", self.port))
                .send()
                .await
                && res.status().is_success()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    pub(crate) async fn cluster(&self) -> Value {
        let resp = self.call("GET", "/v1/cluster", None).await;
        assert_eq!(resp.status, 200, "{}", resp.text);
        resp.body
    }
}

/// `n` replicas on `url` with the extra environment `env`, started one after the other (the first
/// creates the schema and the admin key), each ready.
pub(crate) async fn start_replicas(url: &str, n: usize, env: &[(&str, String)]) -> Vec<Replica> {
    let mut replicas = Vec::new();
    for _ in 0..n {
        let replica = Replica::start_with(url, env);
        assert!(
            replica.ready(Duration::from_secs(60)).await,
            "a replica never got ready"
        );
        replicas.push(replica);
    }
    replicas
}

/// Three replicas on a fresh database.
async fn three_replicas() -> (Vec<Replica>, DatabaseConnection, PgDatabase) {
    let (url, guard) = create_pg_database().await;
    let replicas = start_replicas(&url, 3, &[]).await;
    let db = Database::connect(&url).await.unwrap();
    (replicas, db, guard)
}

/// Three replicas calling `peer` for Slack on a fresh database, with one two-connection Slack
/// source (an automation on everything it receives) whose connections are both ready. Answers
/// the database URL and the replicas' environment too, for replacements.
pub(crate) async fn slack_cluster(
    peer: &crate::slack_peer::SlackPeer,
) -> (
    String,
    [(&'static str, String); 1],
    Vec<Replica>,
    DatabaseConnection,
    PgDatabase,
) {
    use crate::slack::slack_body;
    let (url, guard) = create_pg_database().await;
    let env = [("SWITCHBOARD_SLACK_API_BASE", peer.api_base())];
    let replicas = start_replicas(&url, 3, &env).await;
    let db = Database::connect(&url).await.unwrap();
    let body = slack_body("slack", json!({"connections": 2}));
    let resp = replicas[0]
        .call("POST", "/v1/websocket-sources", Some(body))
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    let trigger = json!({"type": "event", "source": "slack", "on": ["*"]});
    let automation = json!({"name": "all", "trigger": trigger});
    let resp = replicas[0]
        .call("POST", "/v1/automations", Some(automation))
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    assert!(
        peer.wait_until(Duration::from_secs(20), |p| p.ready_sockets() == 2)
            .await
    );
    (url, env, replicas, db, guard)
}

/// Which replica (by id) holds each source.
pub(crate) async fn holders(db: &DatabaseConnection) -> HashMap<String, String> {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT source_id::text AS s, replica_id::text AS r FROM source_leases \
             WHERE expires_at >= now()",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|row| {
            (
                row.try_get::<String>("", "s").unwrap(),
                row.try_get::<String>("", "r").unwrap(),
            )
        })
        .collect()
}

/// The replica ids, in the order the replicas were started.
pub(crate) async fn replica_ids(replicas: &[Replica]) -> Vec<String> {
    let mut ids = Vec::new();
    for replica in replicas {
        let cluster = replica.cluster().await;
        let me = cluster["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["this_replica"] == json!(true))
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        ids.push(me);
    }
    ids
}

pub(crate) async fn eventually(timeout: Duration, mut cond: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cond().await
}

pub(crate) fn all_connected_once(peers: &[Peer]) -> bool {
    peers.iter().all(|p| p.open_connections() == 1)
}

/// Waits (20 s at most) until each of the replicas `ids` holds `each` of the sources and every
/// peer has exactly one connection; fails naming the holders otherwise.
pub(crate) async fn assert_spread(
    db: &DatabaseConnection,
    ids: &[String],
    each: usize,
    peers: &[Peer],
) {
    let spread = eventually(Duration::from_secs(20), async || {
        let held = holders(db).await;
        held.len() == ids.len() * each
            && ids
                .iter()
                .all(|id| held.values().filter(|r| *r == id).count() == each)
            && all_connected_once(peers)
    })
    .await;
    assert!(
        spread,
        "not spread {each} per replica with one connection per feed: {:?}",
        holders(db).await
    );
}

/// One generic feed per peer, created through `replica` (slugs `feed-0`, `feed-1`, …); answers
/// their ids.
pub(crate) async fn create_feeds(replica: &Replica, peers: &[Peer]) -> Vec<String> {
    let mut ids = Vec::new();
    for (i, peer) in peers.iter().enumerate() {
        let body = source_body(&format!("feed-{i}"), peer, json!({}));
        let resp = replica
            .call("POST", "/v1/websocket-sources", Some(body))
            .await;
        assert_eq!(resp.status, 201, "{}", resp.text);
        ids.push(resp.body["id"].as_str().unwrap().to_owned());
    }
    ids
}

/// Nine sources, each on its own peer, with one automation each; answers their ids.
async fn nine_sources(a: &Replica, peers: &[Peer]) -> Vec<String> {
    let mut ids = Vec::new();
    for (i, peer) in peers.iter().enumerate() {
        let slug = format!("feed-{i}");
        let resp = a
            .call(
                "POST",
                "/v1/websocket-sources",
                Some(source_body(&slug, peer, json!({}))),
            )
            .await;
        assert_eq!(resp.status, 201, "{}", resp.text);
        ids.push(resp.body["id"].as_str().unwrap().to_owned());
        let trigger = json!({"type": "event", "source": slug, "on": ["*"]});
        let resp = a
            .call(
                "POST",
                "/v1/automations",
                Some(json!({"name": slug, "trigger": trigger})),
            )
            .await;
        assert_eq!(resp.status, 201, "{}", resp.text);
    }
    ids
}

pub(crate) async fn runs(db: &DatabaseConnection) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM automation_runs",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "n").unwrap()
}

pub(crate) fn peers(n: usize) -> Vec<Peer> {
    (0..n)
        .map(|_| Peer::start(vec![ConnectionScript::accept(vec![Step::Echo])]))
        .collect()
}

#[actix_web::test]
async fn replicas_share_sources_route_commands_and_take_over_a_killed_one() {
    let (mut replicas, db, _guard) = three_replicas().await;
    let peers = peers(9);
    let sources = nine_sources(&replicas[0], &peers).await;
    let ids = replica_ids(&replicas).await;

    // Spread evenly, one connection per source.
    assert_spread(&db, &ids, 3, &peers).await;
    let cluster = replicas[0].cluster().await;
    let shown: Vec<i64> = cluster["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["sources"].as_i64().unwrap())
        .collect();
    assert_eq!(shown, vec![3, 3, 3], "{cluster}");
    assert_eq!(
        cluster["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["leader"] == json!(true))
            .count(),
        1
    );

    // A reconnect sent to the first replica reaches the third, which holds the source.
    let held = holders(&db).await;
    let on_c = |i: usize| held.get(&sources[i]).is_some_and(|r| *r == ids[2]);
    let target = (0..9).find(|&i| on_c(i)).unwrap();
    // Any replica shows the source as its holder stored it, naming the holder.
    let shown = eventually(Duration::from_secs(5), async || {
        let resp = replicas[0]
            .call(
                "GET",
                &format!("/v1/websocket-sources/{}", sources[target]),
                None,
            )
            .await;
        resp.body["status"]["held_by"] == json!(ids[2])
            && resp.body["status"]["state"] == "connected"
    })
    .await;
    assert!(
        shown,
        "a replica that does not hold the source shows it wrongly"
    );
    let before = peers[target].attempts();
    let sent = Instant::now();
    let resp = replicas[0]
        .call(
            "POST",
            &format!("/v1/websocket-sources/{}/reconnect", sources[target]),
            None,
        )
        .await;
    assert_eq!(resp.status, 202, "{}", resp.text);
    assert!(
        peers[target]
            .wait_until(Duration::from_secs(1), |p| p.attempts() > before)
            .await,
        "the holder did not reconnect within 1 s of the command"
    );
    // A frame sent through the second replica goes out on the holder's connection.
    let resp = replicas[1]
        .call(
            "POST",
            &format!("/v1/websocket-sources/{}/send", sources[target]),
            Some(json!({"message": "hello from b"})),
        )
        .await;
    assert_eq!(resp.status, 202, "{}", resp.text);
    assert!(
        peers[target]
            .wait_until(Duration::from_secs(2), |p| p
                .texts()
                .iter()
                .any(|t| t == "hello from b"))
            .await
    );
    // A PATCH on the first replica changes the holder's connection within a second.
    let attempts = peers[target].attempts();
    let url = format!("ws://127.0.0.1:{}/patched", peers[target].port());
    let resp = replicas[0]
        .call(
            "PATCH",
            &format!("/v1/websocket-sources/{}", sources[target]),
            Some(json!({"config": {"url": url}})),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    let patched = peers[target]
        .wait_until(Duration::from_secs(1), |p| {
            p.attempts() > attempts
                && p.request_uri(p.attempts() - 1)
                    .is_some_and(|u| u.contains("patched"))
        })
        .await;
    assert!(patched, "the holder did not apply the change within 1 s");
    assert!(sent.elapsed() < Duration::from_secs(10));

    // Events before the kill: one run each.
    for (i, peer) in peers.iter().enumerate() {
        peer.broadcast(json!({"type": "t", "id": format!("before-{i}")}).to_string());
    }
    assert!(eventually(Duration::from_secs(10), async || runs(&db).await == 9).await);

    // SIGKILL the third replica: its sources are connected elsewhere within 15 s.
    replicas[2].served.signal("KILL");
    let killed = Instant::now();
    let taken = eventually(Duration::from_secs(15), async || {
        let held = holders(&db).await;
        held.len() == 9 && held.values().all(|r| *r != ids[2]) && all_connected_once(&peers)
    })
    .await;
    assert!(
        taken,
        "not taken over within 15 s: {:?}",
        holders(&db).await
    );
    eprintln!("taken over after {:?}", killed.elapsed());
    let cluster = replicas[0].cluster().await;
    let live = cluster["replicas"].as_array().unwrap();
    assert_eq!(live.len(), 2, "{cluster}");
    assert_eq!(
        live.iter()
            .map(|r| r["sources"].as_i64().unwrap())
            .sum::<i64>(),
        9
    );

    // Every event once, also those received after the take-over; the same event again (a
    // redelivery) adds nothing.
    for (i, peer) in peers.iter().enumerate() {
        peer.broadcast(json!({"type": "t", "id": format!("after-{i}")}).to_string());
        peer.broadcast(json!({"type": "t", "id": format!("before-{i}")}).to_string());
    }
    assert!(eventually(Duration::from_secs(10), async || runs(&db).await == 18).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(runs(&db).await, 18, "a duplicate run");
    assert!(all_connected_once(&peers));
    replicas.truncate(2);
}

#[actix_web::test]
async fn a_drained_replica_hands_its_sources_over_and_exits() {
    let (mut replicas, db, _guard) = three_replicas().await;
    let peers = peers(6);
    let mut sources = Vec::new();
    for (i, peer) in peers.iter().enumerate() {
        let slug = format!("feed-{i}");
        let mut body = source_body(&slug, peer, json!({}));
        if i % 2 == 1 {
            // Without a dedup key: handed over break-before-make.
            body.as_object_mut().unwrap().remove("dedup_key_expr");
        }
        let resp = replicas[1]
            .call("POST", "/v1/websocket-sources", Some(body))
            .await;
        assert_eq!(resp.status, 201, "{}", resp.text);
        sources.push(resp.body["id"].as_str().unwrap().to_owned());
    }
    let ids = replica_ids(&replicas).await;
    assert_spread(&db, &ids, 2, &peers).await;
    // Drained through the API (SIGTERM does the same: the rolling-restart test uses it).
    let resp = replicas[0].call("POST", "/v1/cluster/drain", None).await;
    assert_eq!(resp.status, 202, "{}", resp.text);
    let stopping = Instant::now();
    let (code, output) = tokio::task::spawn_blocking({
        let mut replica = replicas.remove(0);
        move || {
            let code = replica.served.wait_exit(Duration::from_secs(40));
            let output: Vec<String> = replica.served.lines.try_iter().collect();
            (code, output)
        }
    })
    .await
    .unwrap();
    assert_eq!(
        code,
        Some(0),
        "the stopped replica did not exit cleanly:\n{}",
        output.join("\n")
    );
    // Handed over, not timed out (the drain gives up after 30 s).
    assert!(
        stopping.elapsed() < Duration::from_secs(20),
        "the drain took {:?}",
        stopping.elapsed()
    );
    // Handed over before it exited: every source is held by the others and connected once.
    let held = holders(&db).await;
    assert_eq!(held.len(), 6, "{held:?}");
    assert!(held.values().all(|r| *r != ids[0]));
    assert!(
        eventually(Duration::from_secs(5), async || all_connected_once(&peers)).await,
        "{:?}",
        peers.iter().map(Peer::open_connections).collect::<Vec<_>>()
    );
    let cluster = replicas[0].cluster().await;
    assert_eq!(
        cluster["replicas"].as_array().unwrap().len(),
        2,
        "{cluster}"
    );
}

/// A live-stream client of one replica.
async fn stream_client(
    replica: &Replica,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    use futures_util::SinkExt as _;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut request = format!("ws://127.0.0.1:{}/v1/stream", replica.port)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Authorization",
        format!("Bearer {ADMIN_KEY}").parse().unwrap(),
    );
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", replica.port))
        .await
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    let subscribe =
        json!({"type": "subscribe", "id": "all", "topics": ["event.received", "run.created"]});
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        subscribe.to_string(),
    ))
    .await
    .unwrap();
    ws
}

async fn claim_all(replica: &Replica, key: &str) -> Vec<String> {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let mut claimed = Vec::new();
    loop {
        let mut res = client
            .post(format!("http://127.0.0.1:{}/v1/runs/claim", replica.port))
            .insert_header(("Authorization", format!("Bearer {key}")))
            .send_json(&json!({"limit": 3}))
            .await
            .unwrap();
        let body: Value = res.json().await.unwrap();
        let items = body["items"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            return claimed;
        }
        claimed.extend(items.iter().map(|r| r["id"].as_str().unwrap().to_owned()));
    }
}

#[actix_web::test]
async fn streams_claims_and_schedules_span_the_replicas() {
    use futures_util::StreamExt as _;
    let (replicas, db, _guard) = three_replicas().await;
    let peers = peers(3);
    let mut sources = Vec::new();
    for (i, peer) in peers.iter().enumerate() {
        let slug = format!("feed-{i}");
        let resp = replicas[0]
            .call(
                "POST",
                "/v1/websocket-sources",
                Some(source_body(&slug, peer, json!({}))),
            )
            .await;
        assert_eq!(resp.status, 201, "{}", resp.text);
        sources.push(resp.body["id"].as_str().unwrap().to_owned());
        let trigger = json!({"type": "event", "source": slug, "on": ["*"]});
        let resp = replicas[2]
            .call(
                "POST",
                "/v1/automations",
                Some(json!({"name": slug, "trigger": trigger})),
            )
            .await;
        assert_eq!(resp.status, 201, "{}", resp.text);
    }
    let ids = replica_ids(&replicas).await;
    assert_spread(&db, &ids, 1, &peers).await;

    // A stream client on the first replica sees what the other two receive, in order per source.
    let mut ws = stream_client(&replicas[0]).await;
    let first = ws.next().await.unwrap().unwrap();
    assert!(first.to_text().unwrap().contains("subscribed"), "{first:?}");
    // The others learn that the first replica has a client at their next turns.
    let streaming = eventually(Duration::from_secs(10), async || {
        let cluster = replicas[1].cluster().await;
        cluster["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["streams"].as_i64() > Some(0))
    })
    .await;
    assert!(streaming);
    tokio::time::sleep(Duration::from_secs(4)).await;
    for round in 0..5 {
        for (i, peer) in peers.iter().enumerate() {
            peer.broadcast(json!({"type": "t", "id": format!("{i}-{round}")}).to_string());
        }
    }
    let mut received: HashMap<String, Vec<String>> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while received.values().map(Vec::len).sum::<usize>() < 15 && Instant::now() < deadline {
        let Ok(Some(Ok(frame))) = tokio::time::timeout(Duration::from_secs(1), ws.next()).await
        else {
            continue;
        };
        let Ok(text) = frame.to_text() else { continue };
        let Ok(message) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        if message["type"] == "event.received" {
            let source = message["data"]["source"].as_str().unwrap().to_owned();
            let key = message["data"]["event_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            received.entry(source).or_default().push(key);
        }
    }
    assert_eq!(received.len(), 3, "{received:?}");
    for keys in received.values() {
        assert_eq!(keys.len(), 5, "{received:?}");
        // Event ids are time-ordered: in order per source.
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(&sorted, keys, "out of order: {received:?}");
    }

    // Workers on all three replicas at once never get one run twice.
    assert!(eventually(Duration::from_secs(10), async || runs(&db).await == 15).await);
    let resp = replicas[0]
        .call(
            "POST",
            "/v1/api-keys",
            Some(json!({"name": "w", "role": "worker"})),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    let key = resp.body["key"].as_str().unwrap().to_owned();
    let (a, b, c) = futures_util::join!(
        claim_all(&replicas[0], &key),
        claim_all(&replicas[1], &key),
        claim_all(&replicas[2], &key)
    );
    let mut all: Vec<String> = a.into_iter().chain(b).chain(c).collect();
    assert_eq!(all.len(), 15);
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 15, "a run was handed out twice");

    // A claim waiting on the second replica wakes for a run committed by the third.
    let held = holders(&db).await;
    let on_third = (0..3)
        .find(|&i| held.get(&sources[i]) == Some(&ids[2]))
        .unwrap();
    let waiting = {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .finish();
        let url = format!("http://127.0.0.1:{}/v1/runs/claim", replicas[1].port);
        let key = key.clone();
        async move {
            let mut res = client
                .post(url)
                .insert_header(("Authorization", format!("Bearer {key}")))
                .send_json(&json!({"limit": 1, "wait_s": 20}))
                .await
                .unwrap();
            (Instant::now(), res.json::<Value>().await.unwrap())
        }
    };
    let send = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        peers[on_third].broadcast(json!({"type": "t", "id": "wake-up"}).to_string());
        Instant::now()
    };
    let ((claimed_at, claimed), sent_at) = futures_util::join!(waiting, send);
    assert_eq!(claimed["items"].as_array().unwrap().len(), 1, "{claimed}");
    assert!(
        claimed_at.duration_since(sent_at) < Duration::from_secs(2),
        "the waiting claim woke {:?} after the event",
        claimed_at.duration_since(sent_at)
    );

    // A schedule whose tick was missed runs once, whichever replica's scheduler gets there.
    let automation = uuid::Uuid::now_v7();
    let org: String = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT org_id::text AS o FROM websocket_sources LIMIT 1",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "o")
        .unwrap();
    let trigger =
        json!({"type": "schedule", "cron": "* * * * *", "timezone": "UTC", "catch_up": "latest"});
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        "INSERT INTO automations (id, org_id, name, enabled, trigger, created_at, updated_at) \
         VALUES ($1, $2::uuid, 'every minute', true, $3, now() - interval '10 minutes', now() - interval '10 minutes')",
        [automation.into(), org.into(), trigger.into()],
    ))
    .await
    .unwrap();
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT pg_notify('switchboard_automations', $1)",
        [automation.to_string().into()],
    ))
    .await
    .unwrap();
    let schedule_runs = async || {
        let row = db
            .query_one_raw(Statement::from_sql_and_values(
                db.get_database_backend(),
                "SELECT COUNT(*) AS n FROM automation_runs WHERE automation_id = $1",
                [automation.into()],
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "n").unwrap()
    };
    assert!(eventually(Duration::from_secs(20), async || schedule_runs().await >= 1).await);
    let ticks = async || {
        let row = db
            .query_one_raw(Statement::from_sql_and_values(
                db.get_database_backend(),
                "SELECT COUNT(DISTINCT dedup_key) AS n FROM events \
                 WHERE source = 'schedule' AND dedup_key LIKE $1",
                [format!("{automation}%").into()],
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "n").unwrap()
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    // One run per tick: the caught-up one (and the next minute's, should it come meanwhile).
    let (runs_now, ticks_now) = (schedule_runs().await, ticks().await);
    assert!(ticks_now >= 1);
    assert_eq!(runs_now, ticks_now, "a tick ran more than once");
}

#[actix_web::test]
async fn a_rolling_restart_keeps_a_slack_app_connected_and_everything_acked() {
    use crate::slack::{TOKEN, messages};
    use crate::slack_peer::{SlackPeer, SlackPeerConfig};
    // As Slack does, an envelope not ACKed within a few seconds (one written to a socket just as
    // its replica closed it) is delivered again, on any connection.
    let peer = SlackPeer::start(SlackPeerConfig::new(TOKEN).ack_deadline(Duration::from_secs(3)));
    let (url, env, mut replicas, db, _guard) = slack_cluster(&peer).await;
    let connected = Instant::now();

    // Steady traffic for the whole restart: 20 envelopes a second.
    let total = 600;
    peer.send_envelopes_paced(messages(total, "roll"), 20.0);
    for _ in 0..3 {
        // Stop the replica that holds the source, then start its replacement.
        let held = holders(&db).await;
        let holder = held.values().next().cloned().unwrap();
        let ids = replica_ids(&replicas).await;
        let at = ids.iter().position(|id| *id == holder).unwrap();
        let mut stopping = replicas.remove(at);
        stopping.served.signal("TERM");
        let code =
            tokio::task::spawn_blocking(move || stopping.served.wait_exit(Duration::from_secs(40)))
                .await
                .unwrap();
        assert_eq!(code, Some(0));
        let replica = Replica::start_with(&url, &env);
        assert!(replica.ready(Duration::from_secs(60)).await);
        replicas.push(replica);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(
        eventually(Duration::from_secs(60), async || runs(&db).await
            == total as i64)
        .await,
        "runs: {}, events: {:?}, unacked: {:?}",
        runs(&db).await,
        db.query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n, COUNT(*) FILTER (WHERE dispatched_at IS NULL) AS u FROM events"
        ))
        .await
        .unwrap()
        .map(|r| (
            r.try_get::<i64>("", "n").unwrap(),
            r.try_get::<i64>("", "u").unwrap()
        )),
        peer.unacked()
    );
    assert!(
        peer.wait_until(Duration::from_secs(20), |p| p.unacked().is_empty())
            .await,
        "unacked: {:?}",
        peer.unacked()
    );
    assert!(
        peer.gaps_without_ready(connected).is_empty(),
        "moments without a ready connection: {:?}",
        peer.gaps_without_ready(connected)
    );
}
