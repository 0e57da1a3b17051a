//! Outbound destinations under the network policy (hostile-input items 9, 11 and 14): credentials
//! in a URL's user info are sealed, redacted everywhere and still used; the Slack
//! `apps.connections.open` call is checked after DNS, pinned and never redirected; `ws://` with
//! private networks allowed goes to private or loopback hosts only, as its message says.
use std::time::Duration;

use base64::Engine as _;
use sea_orm::EntityTrait;
use serde_json::json;

use crate::helpers::{
    ADMIN_KEY, Backend, TestApp, assert_problem, eventually, logs, spawn_with, test_settings,
};
use crate::ingest::{WAIT, create_source, event_count, status, wait_state};
use crate::peer::{ConnectionScript, Peer, Step};
use crate::slack::{TOKEN, slack_body};
use crate::slack_peer::{OpenAnswer, SlackPeer};
use crate::tls_front::TlsFront;

macro_rules! outbound_tests {
    ($($tests:tt)*) => { crate::backend_tests!(crate::slack::engine; $($tests)*); };
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// This machine's host name: not `localhost`, yet it resolves to a non-public address here
/// (loopback through `/etc/hosts`, or the container's private address).
fn own_host_name() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("host name")
        .trim()
        .to_owned();
    let addrs: Vec<std::net::SocketAddr> =
        std::net::ToSocketAddrs::to_socket_addrs(&(name.as_str(), 1))
            .map(Iterator::collect)
            .unwrap_or_default();
    assert!(
        !addrs.is_empty()
            && addrs
                .iter()
                .all(|a| switchboard::netpolicy::is_forbidden_ip(a.ip())),
        "the test needs the host name {name} to resolve to non-public addresses: {addrs:?}"
    );
    name
}

async fn app(backend: Backend, allow_private: bool, slack_api_base: Option<String>) -> TestApp {
    let (mut settings, dir, pg) = test_settings(backend).await;
    settings.allow_private_networks = allow_private;
    if let Some(base) = slack_api_base {
        settings.slack_api_base = base;
    }
    spawn_with(backend, settings, dir, pg).await
}

outbound_tests! {
    async fn user_info_is_sealed_redacted_and_used(backend: Backend) {
        let app = app(backend, true, None).await;
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let (user, password, token) = (format!("u{tag}"), format!("p{tag}"), format!("sk_live_{tag}"));
        let peer = Peer::start(vec![ConnectionScript::accept(vec![Step::Send(
            json!({"type": "t", "id": "1"}).to_string(),
        )])]);
        let url = format!("ws://{user}:{password}@127.0.0.1:{}/ws", peer.port());
        let id = create_source(&app, json!({"name": "a", "source": "a", "kind": "generic",
            "event_key_expr": "type", "config": {"url": url}})).await;
        let token_only = app.post("/v1/websocket-sources", ADMIN_KEY, json!({"name": "b", "source": "b",
            "kind": "generic", "config": {"url": format!("wss://{token}@feed.example.com/ws")}})).await;
        assert_eq!(token_only.status, 201, "{}", token_only.text);
        assert_eq!(token_only.body["config"]["url"], "wss://***@feed.example.com/ws");

        wait_state(&app, &id, "connected").await;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        assert_eq!(peer.request_header(0, "authorization"), Some(format!("Basic {basic}")));
        assert_eq!(peer.request_uri(0).as_deref(), Some("/ws"));
        assert!(eventually(WAIT, || async { event_count(&app, "a").await == 1 }).await);

        let path = format!("/v1/websocket-sources/{id}");
        let shown = app.get(&path, ADMIN_KEY).await;
        let redacted = format!("ws://***:***@127.0.0.1:{}/ws", peer.port());
        assert_eq!(shown.body["config"]["url"], json!(redacted));
        // Saving the redacted URL back keeps the sealed one: the credentials are still sent.
        let patched = app.patch(&path, ADMIN_KEY, json!({"config": {"url": redacted}})).await;
        assert_eq!(patched.status, 200, "{}", patched.text);
        app.post(&format!("{path}/reconnect"), ADMIN_KEY, json!({})).await;
        assert!(peer.wait_until(WAIT, |p| p.attempts() >= 2).await);
        assert_eq!(peer.request_header(1, "authorization"), Some(format!("Basic {basic}")));

        let mut seen = vec![shown.text, patched.text, token_only.text];
        seen.push(app.get("/v1/websocket-sources", ADMIN_KEY).await.text);
        seen.push(status(&app, &id).await.to_string());
        seen.push(app.request("GET", "/metrics", None, None).await.text);
        let log = logs().lock().unwrap().clone();
        let mut stored = Vec::new();
        for row in entity::websocket_source::Entity::find().all(&app.db).await.unwrap() {
            stored.extend(row.config.to_string().into_bytes());
            stored.extend(row.secrets.unwrap_or_default());
        }
        for secret in [&user, &password, &token] {
            for text in &seen {
                assert!(!text.contains(secret.as_str()), "a response leaks {secret}: {text}");
            }
            assert!(!contains(&log, secret), "a log line leaks {secret}");
            assert!(!contains(&stored, secret), "the database holds {secret} in plaintext");
        }
    }

    async fn the_slack_open_call_is_checked_after_dns(backend: Backend) {
        let pki = crate::pki::generate();
        let peer = SlackPeer::with_token(TOKEN);
        let front = TlsFront::start(&pki.localhost, None, peer.api_port());
        let host = own_host_name();
        // Private networks are not allowed: the name resolves to a refused address.
        let app = app(backend, false, Some(format!("https://{host}:{}/api", front.port()))).await;
        let id = create_source(&app, slack_body("slack", json!({"connections": 1}))).await;
        let failed = wait_state(&app, &id, "failed").await;
        let detail = failed["detail"].as_str().unwrap_or_default();
        assert!(detail.starts_with("destination refused: destination "), "{failed}");
        assert!(detail.contains("SWITCHBOARD_ALLOW_PRIVATE_NETWORKS"), "{failed}");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(front.accepted(), 0, "no connection to a refused address");
        assert_eq!(peer.open_call_count(), 0);
    }

    async fn the_slack_open_call_follows_no_redirect(backend: Backend) {
        let peer = SlackPeer::with_token(TOKEN);
        let elsewhere = format!("http://127.0.0.1:{}/elsewhere/apps.connections.open", peer.api_port());
        peer.push_open_answer(OpenAnswer::Raw {
            status: 302,
            headers: vec![("Location".to_owned(), elsewhere)],
            body: String::new(),
        });
        let app = app(backend, true, Some(peer.api_base())).await;
        let id = create_source(&app, slack_body("slack", json!({"connections": 1}))).await;
        // The redirect is a transient failure; the next call gets a URL.
        wait_state(&app, &id, "connected").await;
        let paths: Vec<String> = peer.open_calls().into_iter().map(|c| c.path).collect();
        assert!(paths.iter().all(|p| p == "/api/apps.connections.open"), "{paths:?}");
        assert!(paths.len() >= 2, "{paths:?}");
        let log = logs().lock().unwrap().clone();
        assert!(contains(&log, "answered HTTP 302 (a redirect; redirects are not followed)"));
    }

    async fn unencrypted_ws_goes_to_private_hosts_only(backend: Backend) {
        let app = app(backend, true, None).await;
        let body = |url: &str| json!({"name": "w", "source": "w", "kind": "generic", "config": {"url": url}});
        // A name that cannot be shown to be private is refused (it was accepted before).
        let unknown = app.post("/v1/websocket-sources", ADMIN_KEY, body("ws://feed.example.com/ws")).await;
        assert_problem(&unknown, 422, Some("config.url"));
        assert!(unknown.text.contains("cannot resolve feed.example.com"), "{}", unknown.text);
        assert!(unknown.text.contains("private or loopback"), "{}", unknown.text);
        let public = app.post("/v1/websocket-sources", ADMIN_KEY, body("ws://8.8.8.8/ws")).await;
        assert_problem(&public, 422, Some("config.url"));
        // A name that resolves to loopback is fine, and connects.
        let peer = Peer::start(vec![]);
        let local = format!("ws://{}:{}/ws", own_host_name(), peer.port());
        let id = create_source(&app, body(&local)).await;
        wait_state(&app, &id, "connected").await;
        let path = format!("/v1/websocket-sources/{id}");
        let moved = app.patch(&path, ADMIN_KEY, json!({"config": {"url": "ws://feed.example.com/ws"}})).await;
        assert_problem(&moved, 422, Some("config.url"));
        let renamed = app.patch(&path, ADMIN_KEY, json!({"name": "still local"})).await;
        assert_eq!(renamed.status, 200, "{}", renamed.text);
    }
}
