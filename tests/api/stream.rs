//! The live stream over real sockets: authentication before the upgrade (API keys and single-use
//! stream tokens), the subscription protocol and its error frames, snapshots, every topic after
//! real ingest, org isolation, a client that stops reading, and the ping timeout.
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use sea_orm::EntityTrait;
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::helpers::{
    ADMIN_KEY, Backend, TestApp, assert_problem, eventually, spawn_app, spawn_with, test_settings,
};
use crate::ingest::{
    WAIT, create_automation, create_source, event_count, source_body, undispatched, wait_state,
};
use crate::peer::{ConnectionScript, Peer, Step, firehose};
use crate::{both_backends, both_backends_private};

/// How a test client authenticates.
enum Auth<'a> {
    None,
    Key(&'a str),
    Token(&'a str),
}

/// A live-stream client.
struct Client {
    ws: WebSocketStream<TcpStream>,
}

/// What an upgrade that was refused answered.
#[derive(Debug)]
struct Refused {
    status: u16,
    content_type: String,
    body: Value,
}

fn port(app: &TestApp) -> u16 {
    app.address.rsplit(':').next().unwrap().parse().unwrap()
}

async fn open(app: &TestApp, auth: Auth<'_>, small_buffer: bool) -> Result<Client, Refused> {
    let query = match auth {
        Auth::Token(token) => format!("?token={token}"),
        _ => String::new(),
    };
    let mut request = format!("ws://127.0.0.1:{}/v1/stream{query}", port(app))
        .into_client_request()
        .unwrap();
    if let Auth::Key(key) = auth {
        request
            .headers_mut()
            .insert("Authorization", format!("Bearer {key}").parse().unwrap());
    }
    let socket = TcpSocket::new_v4().unwrap();
    if small_buffer {
        // A client that does not read fills a small window quickly.
        socket.set_recv_buffer_size(4096).unwrap();
    }
    let stream = socket
        .connect(format!("127.0.0.1:{}", port(app)).parse().unwrap())
        .await
        .unwrap();
    match tokio_tungstenite::client_async(request, stream).await {
        Ok((ws, response)) => {
            assert_eq!(response.status().as_u16(), 101);
            Ok(Client { ws })
        }
        Err(WsError::Http(response)) => Err(Refused {
            status: response.status().as_u16(),
            content_type: response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
            body: response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null),
        }),
        Err(other) => panic!("upgrade failed: {other}"),
    }
}

async fn connect(app: &TestApp, key: &str) -> Client {
    open(app, Auth::Key(key), false).await.expect("upgraded")
}

fn assert_refused(result: Result<Client, Refused>, status: u16) {
    let refused = result.err().expect("no upgrade");
    assert_eq!(refused.status, status, "{refused:?}");
    assert!(
        refused.content_type.starts_with("application/problem+json"),
        "{refused:?}"
    );
    assert_eq!(refused.body["status"], status);
}

impl Client {
    async fn send(&mut self, message: Value) {
        self.send_text(message.to_string()).await;
    }

    async fn send_text(&mut self, text: String) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// The next JSON message within `timeout` (answering pings meanwhile), or `None`.
    async fn next_within(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??;
            match frame {
                Ok(Message::Text(text)) => return Some(serde_json::from_str(&text).unwrap()),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    async fn next(&mut self) -> Value {
        self.next_within(WAIT).await.expect("a message")
    }

    /// Reads until a message satisfies `pred`, returning it and everything read before it.
    async fn until(&mut self, pred: impl Fn(&Value) -> bool) -> (Value, Vec<Value>) {
        let mut before = Vec::new();
        loop {
            let Some(message) = self.next_within(WAIT).await else {
                panic!("no matching message; read {before:?}")
            };
            if pred(&message) {
                return (message, before);
            }
            before.push(message);
        }
    }

    async fn subscribe(&mut self, request: Value) {
        let id = request["id"].clone();
        let mut request = request;
        request["type"] = json!("subscribe");
        self.send(request).await;
        let ack = self.next().await;
        assert_eq!(ack, json!({"type": "subscribed", "id": id}));
    }

    /// Everything that arrives before the answer to a ping (nothing else is in flight).
    async fn drain(&mut self) -> Vec<Value> {
        self.send(json!({"type": "ping"})).await;
        self.until(|m| m["type"] == "pong").await.1
    }
}

async fn token(app: &TestApp, key: &str, body: Option<Value>) -> String {
    let resp = app
        .request("POST", "/v1/stream/tokens", Some(key), body)
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    resp.body["token"].as_str().unwrap().to_owned()
}

both_backends! {
    async fn the_upgrade_needs_a_key_or_a_fresh_token(app: TestApp) {
        assert_refused(open(&app, Auth::None, false).await, 401);
        assert_refused(open(&app, Auth::Key("sbk_not_a_real_key_0000000000000000"), false).await, 401);
        assert_refused(open(&app, Auth::Token("sbs_not_a_real_token00000000000000000000"), false).await, 401);
        assert_refused(open(&app, Auth::Token(ADMIN_KEY), false).await, 401);
        connect(&app, ADMIN_KEY).await.drain().await;

        // Tokens: stored hashed, one use each, short-lived, void once their key is revoked.
        let once = token(&app, ADMIN_KEY, None).await;
        assert!(once.starts_with("sbs_"));
        let stored = entity::stream_token::Entity::find().all(&app.db).await.unwrap();
        assert_eq!(stored.len(), 1);
        // A HEAD asking for the upgrade opens nothing and leaves the token unused.
        let head = app.client.request(awc::http::Method::HEAD, format!("{}/v1/stream?token={once}", app.address))
            .insert_header(("Connection", "Upgrade"))
            .insert_header(("Upgrade", "websocket"))
            .insert_header(("Sec-WebSocket-Version", "13"))
            .insert_header(("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="))
            .send()
            .await
            .unwrap();
        assert_ne!(head.status().as_u16(), 101, "a HEAD opened the stream");
        assert_eq!(entity::stream_token::Entity::find().all(&app.db).await.unwrap().len(), 1, "the HEAD used the token");
        assert_eq!(stored[0].token_hash, switchboard::auth::hash_key(&once));
        let mut client = open(&app, Auth::Token(&once), false).await.expect("a token opens the stream");
        assert!(client.drain().await.is_empty());
        assert_refused(open(&app, Auth::Token(&once), false).await, 401);
        assert!(entity::stream_token::Entity::find().all(&app.db).await.unwrap().is_empty(), "consumed");

        let short = token(&app, ADMIN_KEY, Some(json!({"ttl_s": 1}))).await;
        tokio::time::sleep(Duration::from_millis(1300)).await;
        assert_refused(open(&app, Auth::Token(&short), false).await, 401);

        let member = app.post("/v1/api-keys", ADMIN_KEY, json!({"name": "m", "role": "member"})).await;
        let member_key = member.body["key"].as_str().unwrap().to_owned();
        let revoked = token(&app, &member_key, None).await;
        app.delete(&format!("/v1/api-keys/{}", member.body["id"].as_str().unwrap()), ADMIN_KEY).await;
        assert_refused(open(&app, Auth::Token(&revoked), false).await, 401);

        // A plain GET is no upgrade, and does not burn a token.
        let plain = app.get("/v1/stream", ADMIN_KEY).await;
        assert_problem(&plain, 400, None);
        let kept = token(&app, ADMIN_KEY, None).await;
        let plain = app.request("GET", &format!("/v1/stream?token={kept}"), None, None).await;
        assert_problem(&plain, 400, None);
        open(&app, Auth::Token(&kept), false).await.expect("still unused");

        assert_problem(&app.request("POST", "/v1/stream/tokens", None, None).await, 401, None);
        for bad in [json!({"ttl_s": 0}), json!({"ttl_s": 3601})] {
            assert_problem(&app.post("/v1/stream/tokens", ADMIN_KEY, bad).await, 422, Some("ttl_s"));
        }
        assert_problem(&app.post("/v1/stream/tokens", ADMIN_KEY, json!({"ttl": 5})).await, 422, None);
        let text = String::from_utf8_lossy(&crate::helpers::logs().lock().unwrap()).into_owned();
        for secret in [&once, &short, &revoked, &kept] {
            assert!(!text.contains(secret.as_str()), "a stream token was logged");
        }
    }
}

#[actix_web::test]
async fn bad_messages_get_error_frames_and_the_connection_stays_open() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut client = connect(&app, ADMIN_KEY).await;
    let mut refused = Vec::new();
    for text in [
        "{not json".to_owned(),
        json!({"type": "shout"}).to_string(),
        json!({"type": "subscribe", "id": "t", "topics": ["event.recieved"]}).to_string(),
        json!({"type": "subscribe", "id": "f", "topics": ["run.created"], "filter": "a ||"})
            .to_string(),
        json!({"type": "subscribe", "id": "s", "topics": ["run.created"], "extra": true})
            .to_string(),
        json!({"type": "unsubscribe", "id": "nobody"}).to_string(),
        json!({"type": "ping", "pad": "x".repeat(70 * 1024)}).to_string(),
    ] {
        client.send_text(text).await;
        refused.push(client.next().await);
    }
    client
        .ws
        .send(Message::binary(vec![1, 2, 3]))
        .await
        .unwrap();
    refused.push(client.next().await);
    for message in &refused {
        assert_eq!(message["type"], "error", "{message}");
    }
    assert!(
        refused[0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON")
    );
    assert!(
        refused[1]["detail"]
            .as_str()
            .unwrap()
            .contains("unknown type")
    );
    assert_eq!(refused[2]["id"], "t");
    assert!(
        refused[2]["detail"]
            .as_str()
            .unwrap()
            .contains("unknown topic `event.recieved`")
    );
    assert_eq!(refused[3]["id"], "f");
    assert!(
        refused[3]["detail"]
            .as_str()
            .unwrap()
            .starts_with("filter: syntax")
    );
    assert!(
        refused[4]["detail"]
            .as_str()
            .unwrap()
            .contains("unknown field `extra`")
    );
    assert_eq!(refused[5]["id"], "nobody");
    assert!(
        refused[6]["detail"]
            .as_str()
            .unwrap()
            .contains("larger than 65536")
    );
    assert!(refused[7]["detail"].as_str().unwrap().contains("binary"));

    // Subscriptions: acknowledged, unique ids, at most 50, removable.
    client
        .subscribe(json!({"id": "a", "topics": ["run.created"]}))
        .await;
    client
        .send(json!({"type": "subscribe", "id": "a", "topics": ["run.created"]}))
        .await;
    let dup = client.next().await;
    assert_eq!(
        (dup["type"].as_str(), dup["id"].as_str()),
        (Some("error"), Some("a"))
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 1..50 {
        if i % 15 == 0 {
            tokio::time::sleep(Duration::from_secs(1)).await; // under the rate limit
        }
        client
            .subscribe(json!({"id": format!("s{i}"), "topics": ["event.received"]}))
            .await;
    }
    client
        .send(json!({"type": "subscribe", "id": "s50", "topics": ["run.created"]}))
        .await;
    let full = client.next().await;
    assert!(
        full["detail"]
            .as_str()
            .unwrap()
            .contains("too many subscriptions"),
        "{full}"
    );
    client.send(json!({"type": "unsubscribe", "id": "a"})).await;
    assert_eq!(
        client.next().await,
        json!({"type": "unsubscribed", "id": "a"})
    );
    client
        .subscribe(json!({"id": "s50", "topics": ["run.created"]}))
        .await;
    client.send(json!({"type": "ping"})).await;
    assert_eq!(client.next().await, json!({"type": "pong"}));
}

#[actix_web::test]
async fn a_flood_is_refused_once_then_served_again() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut client = connect(&app, ADMIN_KEY).await;
    for _ in 0..60 {
        client.send(json!({"type": "ping"})).await;
    }
    let mut pongs = 0;
    let mut limited = 0;
    while let Some(message) = client.next_within(Duration::from_millis(500)).await {
        match message["type"].as_str() {
            Some("pong") => pongs += 1,
            _ => {
                assert!(
                    message["detail"].as_str().unwrap().contains("rate limit"),
                    "{message}"
                );
                limited += 1;
            }
        }
    }
    assert!((40..60).contains(&pongs), "pongs: {pongs}");
    // One error per run of refused messages, not one per message (tokens refill meanwhile).
    assert!((1..=3).contains(&limited), "errors: {limited}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(client.drain().await.is_empty());
}

fn order(i: usize, amount: u64) -> String {
    json!({"type": "order.created", "id": format!("o{i}"), "data": {"amount": amount}}).to_string()
}

both_backends_private! {
    async fn ingest_reaches_subscribers_of_the_org_only(app: TestApp) {
        let other_key = app.new_org("other").await;
        let mut outsider = connect(&app, &other_key).await;
        outsider.subscribe(json!({"id": "all", "topics": ["source.status", "event.received", "event.dispatched", "run.created"]})).await;
        let mut client = connect(&app, ADMIN_KEY).await;
        client.subscribe(json!({"id": "all", "topics": ["event.received", "event.dispatched", "run.created"]})).await;
        client.subscribe(json!({"id": "big", "topics": ["run.created"], "filter": "event_payload.payload.data.amount > `100`"})).await;
        client.subscribe(json!({"id": "elsewhere", "topics": ["event.received"], "source": "elsewhere"})).await;
        client.subscribe(json!({"id": "gone", "topics": ["event.received"]})).await;
        client.send(json!({"type": "unsubscribe", "id": "gone"})).await;
        assert_eq!(client.next().await["type"], "unsubscribed");

        let automation = create_automation(&app, "feed", json!("order.*"), None).await;
        let steps = vec![
            Step::Send(order(1, 50)), Step::Send(order(2, 150)), Step::Send(order(3, 250)),
            Step::Send(order(2, 150)), // a duplicate
        ];
        let peer = Peer::start(vec![ConnectionScript::accept(steps)]);
        create_source(&app, source_body("feed", &peer, json!({}))).await;

        let mut seen: Vec<Value> = Vec::new();
        let complete = |seen: &[Value]| {
            let count = |t: &str, s: &str| seen.iter().filter(|m| m["type"] == t && m["subscription"] == s).count();
            count("event.received", "all") == 4 && count("event.dispatched", "all") == 3
                && count("run.created", "all") == 3 && count("run.created", "big") == 2
        };
        while !complete(&seen) {
            let Some(message) = client.next_within(WAIT).await else { panic!("incomplete: {seen:#?}") };
            seen.push(message);
        }
        for message in &seen {
            assert!(["all", "big"].contains(&message["subscription"].as_str().unwrap()), "{message}");
            assert!(chrono::DateTime::parse_from_rfc3339(message["at"].as_str().unwrap()).is_ok());
        }
        let received: Vec<&Value> = seen.iter().filter(|m| m["type"] == "event.received").map(|m| &m["data"]).collect();
        assert_eq!(received.iter().filter(|d| d["dedup"] == "stored").count(), 3);
        let duplicate = received.iter().find(|d| d["dedup"] == "duplicate").unwrap();
        assert_eq!(duplicate["event_key"], "order.created");
        // It names the event it repeats: the one stored for order 2.
        let repeated = duplicate["event_id"].as_str().expect("a duplicate names the stored event");
        let original = app.get(&format!("/v1/events/{repeated}"), ADMIN_KEY).await;
        assert_eq!(original.body["raw"]["id"], json!("o2"), "{}", original.text);
        let stored = received.iter().find(|d| d["dedup"] == "stored").unwrap();
        assert_eq!((stored["source"].as_str(), stored["origin"].as_str(), stored["status"].as_str()),
            (Some("feed"), Some("websocket"), Some("received")));
        let event_id = stored["event_id"].as_str().unwrap();
        assert_eq!(app.get(&format!("/v1/events/{event_id}"), ADMIN_KEY).await.status, 200);
        let dispatched = seen.iter().find(|m| m["type"] == "event.dispatched").unwrap();
        assert_eq!(dispatched["data"]["outcome"][0]["automation_id"], automation);
        assert_eq!(dispatched["data"]["outcome"][0]["result"], "matched");
        let runs: Vec<&Value> = seen.iter().filter(|m| m["type"] == "run.created" && m["subscription"] == "big").collect();
        for run in runs {
            assert!(run["data"]["event_payload"]["payload"]["data"]["amount"].as_u64().unwrap() > 100);
            let id = run["data"]["run_id"].as_str().unwrap();
            assert_eq!(app.get(&format!("/v1/runs/{id}"), ADMIN_KEY).await.body["automation_id"], automation);
        }
        assert!(client.drain().await.is_empty());

        // The other org saw none of it (only its own, empty, snapshot).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let leaked = outsider.drain().await;
        assert!(leaked.is_empty(), "another org's messages: {leaked:?}");
    }

    async fn source_status_starts_with_a_snapshot_then_follows_changes(app: TestApp) {
        let peer = Peer::start(vec![ConnectionScript::accept(vec![])]);
        let id = create_source(&app, source_body("feed", &peer, json!({}))).await;
        let shown = wait_state(&app, &id, "connected").await;
        let quiet = Peer::start(vec![ConnectionScript::accept(vec![])]);
        let mut off = source_body("quiet", &quiet, json!({}));
        off["enabled"] = json!(false);
        create_source(&app, off).await;

        let mut client = connect(&app, ADMIN_KEY).await;
        client.subscribe(json!({"id": "st", "topics": ["source.status"]})).await;
        let mut snapshot = [client.next().await, client.next().await];
        snapshot.sort_by_key(|m| m["data"]["source"].as_str().unwrap().to_owned());
        assert_eq!(snapshot[0]["type"], "source.status");
        assert_eq!(snapshot[0]["subscription"], "st");
        assert_eq!(snapshot[0]["data"]["source"], "feed");
        assert_eq!(snapshot[0]["data"]["source_id"], id);
        let status = &snapshot[0]["data"]["status"];
        assert_eq!(status["state"], "connected");
        let keys = |v: &Value| { let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect(); k.sort(); k };
        assert_eq!(keys(status), keys(&shown), "the REST status shape");
        assert_eq!(snapshot[1]["data"]["status"]["state"], "disabled");

        let mut narrow = connect(&app, ADMIN_KEY).await;
        narrow.subscribe(json!({"id": "paused", "topics": ["source.status"], "source": "feed",
            "filter": "status.state == 'paused'"})).await;
        assert!(narrow.drain().await.is_empty(), "no snapshot: feed is not paused");

        let paused = app.request("POST", &format!("/v1/websocket-sources/{id}/pause"), Some(ADMIN_KEY), None).await;
        assert!(paused.status < 300, "{}", paused.text);
        let (change, _) = client.until(|m| m["data"]["status"]["state"] == "paused").await;
        assert_eq!(change["data"]["source"], "feed");
        assert_eq!(change["data"]["status"]["detail"], "paused by an operator");
        let only = narrow.next().await;
        assert_eq!((only["subscription"].as_str(), only["data"]["status"]["state"].as_str()), (Some("paused"), Some("paused")));
        app.request("POST", &format!("/v1/websocket-sources/{id}/resume"), Some(ADMIN_KEY), None).await;
        client.until(|m| m["data"]["status"]["state"] == "connected").await;
        assert!(narrow.drain().await.is_empty(), "the filter holds back other states");
    }
}

both_backends! {
    async fn webhook_deliveries_are_published(app: TestApp) {
        let resp = app.post("/v1/webhooks", ADMIN_KEY, json!({"name": "GitHub", "source": "gh", "verifier": {"preset": "github"}})).await;
        assert_eq!(resp.status, 201, "{}", resp.text);
        let url = resp.body["webhook_url"].as_str().unwrap().replace("https://hooks.example.com", "");
        let secret = resp.body["secret"].as_str().unwrap().to_owned();
        let mut client = connect(&app, ADMIN_KEY).await;
        client.subscribe(json!({"id": "hooks", "topics": ["event.received"], "source": "gh"})).await;
        let body = br#"{"action":"opened"}"#;
        let headers = vec![
            ("content-type", "application/json".to_owned()),
            ("x-github-event", "pull_request".to_owned()),
            ("x-github-delivery", "d-1".to_owned()),
            ("x-hub-signature-256", switchboard::webhooks::sign::sign_github(&secret, body)),
        ];
        let first = app.deliver(&url, &headers, body).await;
        assert_eq!(first.status, 200, "{}", first.text);
        app.deliver(&url, &headers, body).await;
        let stored = client.next().await;
        assert_eq!(stored["data"]["origin"], "webhook");
        assert_eq!(stored["data"]["dedup"], "stored");
        assert_eq!(stored["data"]["event_id"], first.body["event_id"]);
        assert_eq!(stored["data"]["event_key"], "pull_request.opened");
        let again = client.next().await;
        assert_eq!(again["data"]["dedup"], "duplicate");
        assert_eq!(again["data"]["event_id"], first.body["event_id"], "the earlier event");
    }
}

both_backends! {
    async fn the_run_lifecycle_is_published(app: TestApp) {
        use crate::workers::{claim, enqueue, queue_setup, worker_key};
        let key = worker_key(&app).await;
        let (url, automation) = queue_setup(&app, json!({"lease_s": 1})).await;
        let mut client = connect(&app, ADMIN_KEY).await;
        let topics = json!(["run.claimed", "run.completed", "run.failed", "run.retrying", "run.expired"]);
        client.subscribe(json!({"id": "runs", "topics": topics, "source": "jobs"})).await;
        enqueue(&app, &url, &automation, 0, 4).await;
        let held = claim(&app, &key, json!({"limit": 3, "lease_s": 60})).await;
        assert_eq!(held.len(), 3);
        // The fourth is left to expire (the automation's 1 s lease).
        let dropped = claim(&app, &key, json!({})).await;
        assert_eq!(dropped.len(), 1);
        let outcome = |run: &Value, op: &str, body: Value| {
            let path = format!("/v1/runs/{}/{op}", run["id"].as_str().unwrap());
            let mut body = body;
            body["lease_token"] = run["lease_token"].clone();
            (path, body)
        };
        let asks = [
            outcome(&held[0], "complete", json!({"result": {"ok": true}})),
            outcome(&held[1], "fail", json!({"error": "boom"})),
            outcome(&held[2], "fail", json!({"error": "fatal", "retry": false})),
        ];
        for (path, body) in asks {
            let resp = app.post(&path, &key, body).await;
            assert_eq!(resp.status, 200, "{}", resp.text);
        }
        let (expired, before) = client.until(|m| m["type"] == "run.expired").await;
        let one = |topic: &str| -> Vec<Value> {
            before.iter().chain([&expired]).filter(|m| m["type"] == topic).map(|m| m["data"].clone()).collect()
        };
        let claimed = one("run.claimed");
        assert_eq!(claimed.len(), 4, "{before:?}");
        assert!(claimed.iter().all(|d| d["status"] == "RUNNING" && d["attempt"] == 1 && d["source"] == "jobs"), "{claimed:?}");
        let check = |topic: &str, run: &Value, status: &str, error: Value| {
            let data = one(topic);
            assert_eq!(data.len(), 1, "{topic}: {data:?}");
            assert_eq!(data[0]["run_id"], run["id"], "{topic}");
            assert_eq!(data[0]["automation_id"], automation.as_str(), "{topic}");
            assert_eq!(data[0]["attempt"], 1, "{topic}");
            assert_eq!(data[0]["status"], status, "{topic}");
            assert_eq!(data[0]["error"], error, "{topic}");
        };
        check("run.completed", &held[0], "SUCCEEDED", Value::Null);
        check("run.retrying", &held[1], "PENDING", json!("boom"));
        check("run.failed", &held[2], "FAILED", json!("fatal"));
        check("run.expired", &dropped[0], "PENDING", json!("lease expired"));
        assert_eq!(expired["subscription"], "runs");
    }

    async fn cancelling_and_retrying_by_hand_are_published(app: TestApp) {
        use crate::workers::{enqueue, queue_setup};
        let (url, automation) = queue_setup(&app, json!({})).await;
        let mut client = connect(&app, ADMIN_KEY).await;
        client.subscribe(json!({"id": "hand", "topics": ["run.cancelled", "run.retried"]})).await;
        enqueue(&app, &url, &automation, 0, 1).await;
        let run = app.get("/v1/runs?limit=1", ADMIN_KEY).await.body["items"][0].clone();
        let id = run["id"].as_str().unwrap();
        for op in ["cancel", "retry"] {
            let resp = app.post(&format!("/v1/runs/{id}/{op}"), ADMIN_KEY, json!({})).await;
            assert_eq!(resp.status, 200, "{op}: {}", resp.text);
        }
        let (retried, before) = client.until(|m| m["type"] == "run.retried").await;
        let cancelled: Vec<&Value> = before.iter().filter(|m| m["type"] == "run.cancelled").collect();
        assert_eq!(cancelled.len(), 1, "{before:?}");
        for (message, status) in [(cancelled[0], "CANCELLED"), (&retried, "PENDING")] {
            let data = &message["data"];
            assert_eq!(data["run_id"], id, "{message}");
            assert_eq!(data["automation_id"], automation.as_str(), "{message}");
            assert_eq!((data["status"].as_str(), data["source"].as_str()), (Some(status), Some("jobs")), "{message}");
            assert_eq!(message["subscription"], "hand");
        }
    }
}

fn big_order(i: usize) -> String {
    json!({"type": "order.created", "id": format!("big{i}"), "pad": "x".repeat(8 * 1024)})
        .to_string()
}

/// Ingests `n` events through a new firehose source; returns how long until all were stored.
async fn ingest(app: &TestApp, slug: &str, n: usize) -> (Duration, Peer) {
    let peer = Peer::start(vec![ConnectionScript::accept(vec![firehose(n, big_order)])]);
    let started = Instant::now();
    create_source(app, source_body(slug, &peer, json!({}))).await;
    let done = eventually(Duration::from_secs(120), || async {
        event_count(app, slug).await == n as u64
    })
    .await;
    assert!(
        done,
        "{slug}: {} of {n} stored",
        event_count(app, slug).await
    );
    (started.elapsed(), peer)
}

#[actix_web::test]
async fn a_client_that_stops_reading_slows_nobody_and_learns_what_it_missed() {
    let (mut settings, dir, pg) = test_settings(Backend::Sqlite).await;
    settings.allow_private_networks = true;
    let app = spawn_with(Backend::Sqlite, settings, dir, pg).await;
    const N: usize = 300;
    const COPIES: usize = 8;
    for slug in ["alone", "stalled"] {
        create_automation(&app, slug, json!("*"), None).await;
    }

    let (alone, _p1) = ingest(&app, "alone", N).await;
    assert!(eventually(WAIT, || async { undispatched(&app).await == 0 }).await);

    let mut stalled = open(&app, Auth::Key(ADMIN_KEY), true)
        .await
        .expect("upgraded");
    // Several subscriptions each get their own copy: far more than any socket buffer holds.
    for i in 0..COPIES {
        let topics = json!(["event.received", "event.dispatched", "run.created"]);
        stalled
            .subscribe(json!({"id": format!("all{i}"), "topics": topics, "source": "stalled"}))
            .await;
    }
    let mut reader = connect(&app, ADMIN_KEY).await;
    reader
        .subscribe(json!({"id": "r", "topics": ["event.received"], "source": "stalled"}))
        .await;
    let reading = actix_web::rt::spawn(async move {
        let mut stored = 0;
        while stored < N {
            let Some(message) = reader.next_within(Duration::from_secs(120)).await else {
                break;
            };
            if message["data"]["dedup"] == "stored" {
                stored += 1;
            }
        }
        stored
    });
    let (beside, _p2) = ingest(&app, "stalled", N).await;
    println!(
        "ingest of {N} events: {alone:?} alone, {beside:?} beside a client that does not read"
    );
    assert!(
        beside < alone * 10 + Duration::from_secs(10),
        "{beside:?} vs {alone:?}"
    );
    assert_eq!(
        reading.await.unwrap(),
        N,
        "a reading client gets everything"
    );

    // The stalled client, reading at last, is told how much it missed (once per gap: dispatch
    // may still be publishing while it catches up) and is still connected.
    let (mut got, mut missed, mut notices) = (0, 0, 0);
    while let Some(message) = stalled.next_within(Duration::from_secs(3)).await {
        if message["type"] == "lagged" {
            notices += 1;
            missed += message["missed"].as_u64().unwrap();
        } else {
            got += 1;
        }
    }
    println!("the stalled client got {got} messages and {notices} notices of {missed} missed");
    assert!(notices > 0 && missed > 0, "a lagged message");
    assert!(
        got + missed as usize <= 3 * N * COPIES,
        "nothing counted twice"
    );
    assert!(got < 3 * N * COPIES, "it cannot have had everything");
    // Still connected: it answers a ping (anything dispatch published meanwhile comes first).
    stalled.drain().await;
}

#[actix_web::test]
async fn a_client_that_never_answers_pings_is_disconnected() {
    let (mut settings, dir, pg) = test_settings(Backend::Sqlite).await;
    settings.stream_ping_interval_s = 1;
    let app = spawn_with(Backend::Sqlite, settings, dir, pg).await;
    let mut silent = connect(&app, ADMIN_KEY).await;
    let mut alive = connect(&app, ADMIN_KEY).await;
    // `alive` reads (answering pings) for three intervals; `silent` reads nothing.
    assert!(
        alive
            .next_within(Duration::from_millis(3500))
            .await
            .is_none()
    );
    alive.send(json!({"type": "ping"})).await;
    assert_eq!(alive.next().await, json!({"type": "pong"}));

    let mut close = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(Some(frame)) = tokio::time::timeout_at(deadline, silent.ws.next()).await {
        match frame {
            Ok(Message::Close(reason)) => {
                close = reason;
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let close = close.expect("a close frame");
    assert_eq!(close.reason.as_str(), "ping timeout");
    assert!(
        silent
            .ws
            .next()
            .await
            .is_none_or(|f| f.is_err() || matches!(f, Ok(Message::Close(_))))
    );
}

/// Reads until the server closes the connection (or `timeout` passes): the close reason, if any.
async fn closed_within(client: &mut Client, timeout: Duration) -> Option<Option<String>> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, client.ws.next()).await {
            Err(_) => return None,
            Ok(None) | Ok(Some(Err(_))) => return Some(None),
            Ok(Some(Ok(Message::Close(reason)))) => {
                return Some(reason.map(|r| r.reason.as_str().to_owned()));
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

#[actix_web::test]
async fn a_client_that_sends_but_never_reads_is_disconnected() {
    let (mut settings, dir, pg) = test_settings(Backend::Sqlite).await;
    settings.stream_ping_interval_s = 1;
    let app = spawn_with(Backend::Sqlite, settings, dir, pg).await;
    let mut chatty = open(&app, Auth::Key(ADMIN_KEY), true)
        .await
        .expect("upgraded");
    // Pings and messages for four ping intervals, never reading a byte: every frame it sends used
    // to count as "alive", and every ping got a pong queued for a client that never takes it.
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(4) {
        let ping = chatty.ws.send(Message::Ping(vec![1, 2, 3].into())).await;
        let text = chatty
            .ws
            .send(Message::text(json!({"type": "ping"}).to_string()))
            .await;
        if ping.is_err() || text.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(sent > 10, "the client could not even start sending");
    let closed = closed_within(&mut chatty, Duration::from_secs(5)).await;
    assert!(
        closed.is_some(),
        "the server kept a client that never reads"
    );
    assert_eq!(app.get("/v1/me", ADMIN_KEY).await.status, 200);
}

#[actix_web::test]
async fn sessions_are_capped_per_key_and_in_total() {
    let (mut settings, dir, pg) = test_settings(Backend::Sqlite).await;
    settings.stream_max_sessions = 3;
    settings.stream_max_sessions_per_key = 2;
    let app = spawn_with(Backend::Sqlite, settings, dir, pg).await;
    let member = app
        .post(
            "/v1/api-keys",
            ADMIN_KEY,
            json!({"name": "m", "role": "member"}),
        )
        .await;
    let member_key = member.body["key"].as_str().unwrap().to_owned();
    let first = connect(&app, ADMIN_KEY).await;
    let second = connect(&app, ADMIN_KEY).await;
    let refused = open(&app, Auth::Key(ADMIN_KEY), false)
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.status, 429, "{refused:?}");
    // A token turned away at the cap is not used up: it opens a session once there is room.
    let spare = token(&app, ADMIN_KEY, None).await;
    let refused_token = open(&app, Auth::Token(&spare), false)
        .await
        .err()
        .expect("refused");
    assert_eq!(refused_token.status, 429, "{refused_token:?}");
    drop(second);
    let mut second = None;
    for _ in 0..50 {
        match open(&app, Auth::Token(&spare), false).await {
            Ok(session) => {
                second = Some(session);
                break;
            }
            Err(refused) => assert_eq!(refused.status, 429, "the token was burnt: {refused:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _second = second.expect("the refused token opened a session once there was room");
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .contains("at most 2"),
        "{refused:?}"
    );
    let _third = connect(&app, &member_key).await;
    let refused = open(&app, Auth::Key(&member_key), false)
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.status, 429);
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .contains("at most 3"),
        "{refused:?}"
    );
    drop(first);
    assert!(
        eventually(Duration::from_secs(5), || async {
            open(&app, Auth::Key(ADMIN_KEY), false).await.is_ok()
        })
        .await,
        "a closed session frees its place"
    );
}

#[actix_web::test]
async fn the_sessions_of_a_revoked_key_are_closed() {
    let app = spawn_app(Backend::Sqlite).await;
    let created = app
        .post(
            "/v1/api-keys",
            ADMIN_KEY,
            json!({"name": "m", "role": "member"}),
        )
        .await;
    let (key, id) = (
        created.body["key"].as_str().unwrap().to_owned(),
        created.body["id"].as_str().unwrap().to_owned(),
    );
    let mut revoked = connect(&app, &key).await;
    let mut other = connect(&app, ADMIN_KEY).await;
    revoked
        .subscribe(json!({"id": "s", "topics": ["source.status"]}))
        .await;
    assert_eq!(
        app.delete(&format!("/v1/api-keys/{id}"), ADMIN_KEY)
            .await
            .status,
        204
    );
    let closed = closed_within(&mut revoked, Duration::from_secs(5)).await;
    assert_eq!(closed, Some(Some("API key revoked".to_owned())));
    other.send(json!({"type": "ping"})).await;
    assert_eq!(other.next().await, json!({"type": "pong"}));
}

both_backends! {
    async fn a_filter_that_exceeds_its_limits_ends_its_subscription(app: TestApp) {
        let hook = app.post("/v1/webhooks", ADMIN_KEY, json!({"name": "o", "source": "open",
            "verifier": {"preset": "stripe"}, "insecure": true})).await;
        let url = hook.body["webhook_url"].as_str().unwrap().replace("https://hooks.example.com", "");
        let mut client = connect(&app, ADMIN_KEY).await;
        let costly = format!("length(to_string({}@)) > `0`", "[@,@]|".repeat(16));
        client.subscribe(json!({"id": "costly", "topics": ["event.received"], "filter": costly})).await;
        client.subscribe(json!({"id": "plain", "topics": ["event.received"]})).await;
        let headers = [("content-type", "application/json".to_owned())];
        assert_eq!(app.deliver(&url, &headers, br#"{"id": "1", "type": "a"}"#).await.status, 200);
        let (ended, _) = client.until(|m| m["type"] == "error").await;
        assert_eq!(ended["id"], "costly", "{ended}");
        assert!(ended["detail"].as_str().unwrap().contains("limit-exceeded"), "{ended}");
        assert_eq!(app.deliver(&url, &headers, br#"{"id": "2", "type": "b"}"#).await.status, 200);
        let (_, before) = client.until(|m| m["data"]["event_key"] == "b").await;
        assert!(before.iter().all(|m| m["subscription"] == "plain"), "{before:?}");
        let rest = client.drain().await;
        assert!(rest.iter().all(|m| m["subscription"] == "plain"), "{rest:?}");
        // Hopeless filters are refused when subscribing.
        client.send(json!({"type": "subscribe", "id": "hopeless", "topics": ["event.received"],
            "filter": format!("{}@", "[@,@]|".repeat(40))})).await;
        let refusal = client.next().await;
        assert_eq!(refusal["type"], "error");
        assert!(refusal["detail"].as_str().unwrap().contains("limit-exceeded"), "{refusal}");
    }
}
