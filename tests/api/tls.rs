//! `wss://` for real: generic sources against the scriptable peer behind a TLS front on loopback,
//! with certificates made at test time (`pki.rs`). Trust comes from `SWITCHBOARD_TLS_CA_FILE` or
//! a source's `config.tls.ca_pem`; certificate problems are terminal with their own detail, broken
//! handshakes transient; a feed that wants a client certificate gets the configured one.
use std::time::Duration;

use sea_orm::EntityTrait;
use serde_json::{Value, json};
use switchboard::config::Settings;

use crate::helpers::{
    ADMIN_KEY, Backend, TestApp, assert_problem, eventually, spawn_with, test_settings,
};
use crate::ingest::{WAIT, create_source, event_count, status, wait_state};
use crate::peer::{ConnectionScript, Peer, Step};
use crate::pki::{self, Identity, TestPki};
use crate::tls_front::{FrontMode, TlsFront};

macro_rules! tls_tests {
    ($($tests:tt)*) => { crate::backend_tests!(crate::slack::engine; $($tests)*); };
}

/// The app with loopback allowed; with `ca_file`, `SWITCHBOARD_TLS_CA_FILE` names a file holding
/// the test CA.
pub async fn app_trusting(
    backend: Backend,
    pki: &TestPki,
    ca_file: bool,
    tweak: impl FnOnce(&mut Settings),
) -> TestApp {
    let (mut settings, dir, pg) = test_settings(backend).await;
    settings.allow_private_networks = true;
    if ca_file {
        let path = dir.path().join("company-ca.pem");
        std::fs::write(&path, &pki.ca_pem).unwrap();
        settings.tls_ca_file = Some(path);
    }
    tweak(&mut settings);
    spawn_with(backend, settings, dir, pg).await
}

/// A plain peer that sends one order message per connection, behind a TLS front serving
/// `identity` (requiring a client certificate issued by `client_ca` when given).
fn feed(identity: &Identity, client_ca: Option<&str>) -> (Peer, TlsFront) {
    let order = json!({"type": "order.created", "id": "o1"}).to_string();
    let peer = Peer::start(vec![ConnectionScript::accept(vec![Step::Send(order)])]);
    let front = TlsFront::start(identity, client_ca, peer.port());
    (peer, front)
}

fn wss_source(slug: &str, front: &TlsFront, tls: Option<Value>) -> Value {
    let mut config = json!({"url": format!("wss://localhost:{}/ws", front.port())});
    if let Some(tls) = tls {
        config["tls"] = tls;
    }
    json!({"name": slug, "source": slug, "kind": "generic",
           "event_key_expr": "type", "dedup_key_expr": "id", "config": config})
}

async fn ingests(app: &TestApp, slug: &str) {
    assert!(
        eventually(WAIT, || async { event_count(app, slug).await == 1 }).await,
        "no event from {slug}"
    );
}

/// Waits for `failed` and checks that the detail says `what`, and that no further attempt
/// follows (the front saw exactly one connection, also a few seconds later).
async fn fails_once(app: &TestApp, id: &str, front: &TlsFront, what: &[&str]) -> String {
    let status = wait_state(app, id, "failed").await;
    let detail = status["detail"].as_str().unwrap_or_default().to_owned();
    for part in what {
        assert!(detail.contains(part), "detail lacks {part:?}: {detail}");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(front.accepted(), 1, "a terminal failure is not retried");
    assert_eq!(status_of(app, id).await["state"], "failed");
    detail
}

async fn status_of(app: &TestApp, id: &str) -> Value {
    status(app, id).await
}

tls_tests! {
    async fn the_global_ca_file_is_trusted(backend: Backend) {
        let pki = pki::generate();
        let (_peer, front) = feed(&pki.localhost, None);
        let app = app_trusting(backend, &pki, true, |_| {}).await;
        let id = create_source(&app, wss_source("feed", &front, None)).await;
        wait_state(&app, &id, "connected").await;
        ingests(&app, "feed").await;
        // The handshake of the connection that serves (on a loaded machine an earlier attempt
        // may have been cut off mid-handshake and retried).
        let handshakes = front.handshakes();
        let served = handshakes.iter().find(|h| h.outcome.is_ok()).expect("a completed handshake");
        assert_eq!(served.sni.as_deref(), Some("localhost"), "SNI is the URL's host");
        assert!(!served.client_cert);
    }

    async fn a_source_ca_is_trusted_by_that_source_only(backend: Backend) {
        let pki = pki::generate();
        let (_peer, front) = feed(&pki.localhost, None);
        let app = app_trusting(backend, &pki, false, |_| {}).await;
        let trusting = create_source(&app, wss_source("trusting", &front, Some(json!({"ca_pem": pki.ca_pem})))).await;
        wait_state(&app, &trusting, "connected").await;
        ingests(&app, "trusting").await;
        let (_peer2, front2) = feed(&pki.localhost, None);
        let plain = create_source(&app, wss_source("plain", &front2, None)).await;
        fails_once(&app, &plain, &front2, &["unknown issuer", "localhost"]).await;
        assert_eq!(event_count(&app, "plain").await, 0);
    }

    async fn without_the_ca_the_source_fails_with_unknown_issuer(backend: Backend) {
        let pki = pki::generate();
        let (peer, front) = feed(&pki.localhost, None);
        let app = app_trusting(backend, &pki, false, |_| {}).await;
        let id = create_source(&app, wss_source("feed", &front, None)).await;
        fails_once(&app, &id, &front, &["TLS: unknown issuer", "localhost", "config.tls.ca_pem"]).await;
        assert_eq!(peer.attempts(), 0, "nothing reached the feed");
    }

    async fn a_name_mismatch_is_refused_with_the_names(backend: Backend) {
        let pki = pki::generate();
        let (_peer, front) = feed(&pki.other_name, None);
        let app = app_trusting(backend, &pki, true, |_| {}).await;
        let id = create_source(&app, wss_source("feed", &front, None)).await;
        fails_once(&app, &id, &front, &["TLS: name mismatch", "for localhost", "is for other.test"]).await;
        // The same feed reached with the name its certificate has.
        let (_peer2, front2) = feed(&pki.other_name, None);
        let named = create_source(&app, wss_source("named", &front2, Some(json!({"server_name": "other.test"})))).await;
        wait_state(&app, &named, "connected").await;
        ingests(&app, "named").await;
        assert_eq!(front2.handshakes().iter().find(|h| h.outcome.is_ok()).expect("a completed handshake").sni.as_deref(), Some("other.test"));
    }

    async fn a_feed_reached_by_address_verifies_the_server_name(backend: Backend) {
        let pki = pki::generate();
        let (_peer, front) = feed(&pki.localhost, None);
        let app = app_trusting(backend, &pki, true, |_| {}).await;
        let mut by_address = wss_source("feed", &front, Some(json!({"server_name": "localhost"})));
        by_address["config"]["url"] = json!(format!("wss://127.0.0.1:{}/ws", front.port()));
        let id = create_source(&app, by_address).await;
        wait_state(&app, &id, "connected").await;
        ingests(&app, "feed").await;
        assert_eq!(front.handshakes().iter().find(|h| h.outcome.is_ok()).expect("a completed handshake").sni.as_deref(), Some("localhost"));
    }

    async fn an_expired_certificate_is_refused_with_its_dates(backend: Backend) {
        let pki = pki::generate();
        let (_peer, front) = feed(&pki.expired, None);
        let app = app_trusting(backend, &pki, true, |_| {}).await;
        let id = create_source(&app, wss_source("feed", &front, None)).await;
        fails_once(&app, &id, &front, &["TLS: certificate expired", "localhost", "2021-01-01"]).await;
    }

    async fn a_feed_requiring_a_client_certificate_gets_the_configured_one(backend: Backend) {
        let pki = pki::generate();
        let (_peer, front) = feed(&pki.localhost, Some(&pki.ca_pem));
        let app = app_trusting(backend, &pki, true, |_| {}).await;
        let tls = json!({"client_cert": pki.client.cert_pem, "client_key": pki.client.key_pem});
        let id = create_source(&app, wss_source("feed", &front, Some(tls))).await;
        wait_state(&app, &id, "connected").await;
        ingests(&app, "feed").await;
        assert!(front.handshakes().iter().find(|h| h.outcome.is_ok()).expect("a completed handshake").client_cert, "the client certificate was presented");

        let (peer2, front2) = feed(&pki.localhost, Some(&pki.ca_pem));
        let bare = create_source(&app, wss_source("bare", &front2, None)).await;
        fails_once(&app, &bare, &front2, &["TLS: localhost refused the handshake", "client certificate"]).await;
        assert_eq!(peer2.attempts(), 0, "nothing reached the feed");
        assert!(front2.handshakes()[0].outcome.is_err());

        let (_peer3, front3) = feed(&pki.localhost, Some(&pki.ca_pem));
        let stranger = json!({"client_cert": pki.stranger.cert_pem, "client_key": pki.stranger.key_pem});
        let refused = create_source(&app, wss_source("stranger", &front3, Some(stranger))).await;
        fails_once(&app, &refused, &front3, &["refused the handshake"]).await;
    }

    async fn a_reset_handshake_is_retried(backend: Backend) {
        let pki = pki::generate();
        let front = TlsFront::start_with(&pki.localhost, None, 9, FrontMode::Reset);
        let app = app_trusting(backend, &pki, true, |_| {}).await;
        let id = create_source(&app, wss_source("feed", &front, None)).await;
        assert!(front.wait_until(WAIT, |f| f.accepted() >= 2).await, "retried");
        let last = status_of(&app, &id).await;
        assert_ne!(last["state"], "failed", "{last}");
        let detail = last["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("TLS handshake with localhost failed"), "{last}");
    }

    async fn a_handshake_that_times_out_is_retried(backend: Backend) {
        let pki = pki::generate();
        let front = TlsFront::start_with(&pki.localhost, None, 9, FrontMode::Hang);
        let app = app_trusting(backend, &pki, true, |_| {}).await;
        let id = create_source(&app, wss_source("feed", &front, None)).await;
        let timed_out = eventually(Duration::from_secs(20), || async {
            let s = status_of(&app, &id).await;
            s["detail"].as_str().is_some_and(|d| d.contains("TLS handshake with localhost timed out"))
        })
        .await;
        assert!(timed_out, "{}", status_of(&app, &id).await);
        assert_ne!(status_of(&app, &id).await["state"], "failed");
    }

    async fn tls_settings_are_checked_when_saved(backend: Backend) {
        let pki = pki::generate();
        let app = app_trusting(backend, &pki, false, |_| {}).await;
        let front_port = 9;
        let with = |tls: Value| json!({"name": "t", "source": "t", "kind": "generic",
            "config": {"url": format!("wss://localhost:{front_port}/ws"), "tls": tls}});
        let cases = [
            (json!({"ca_pem": "not a certificate"}), "config.tls.ca_pem"),
            (json!({"ca_pem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}), "config.tls.ca_pem"),
            (json!({"client_cert": pki.client.cert_pem}), "config.tls.client_key"),
            (json!({"client_key": pki.client.key_pem}), "config.tls.client_key"),
            (json!({"client_cert": pki.client.cert_pem, "client_key": pki.stranger.key_pem}), "config.tls.client_key"),
            (json!({"client_cert": "garbage", "client_key": pki.client.key_pem}), "config.tls.client_cert"),
            (json!({"client_cert": pki.client.cert_pem, "client_key": "garbage"}), "config.tls.client_key"),
            (json!({"server_name": "not a name!"}), "config.tls.server_name"),
            (json!({"client_key": 5}), "config.tls.client_key"),
            (json!({"unknown": 1}), "config.tls.unknown"),
        ];
        for (tls, field) in cases {
            let resp = app.post("/v1/websocket-sources", ADMIN_KEY, with(tls.clone())).await;
            assert_problem(&resp, 422, Some(field));
            assert!(!resp.text.contains("PRIVATE KEY"), "{tls}: {}", resp.text);
        }
        let plain = json!({"name": "p", "source": "p", "kind": "generic",
            "config": {"url": "ws://127.0.0.1:9/ws", "tls": {"server_name": "localhost"}}});
        let resp = app.post("/v1/websocket-sources", ADMIN_KEY, plain).await;
        assert_problem(&resp, 422, Some("config.tls"));
    }

    async fn the_client_key_is_write_only_and_goes_with_its_certificate(backend: Backend) {
        let pki = pki::generate();
        let app = app_trusting(backend, &pki, false, |_| {}).await;
        let tls = json!({"ca_pem": pki.ca_pem, "client_cert": pki.client.cert_pem,
                         "client_key": pki.client.key_pem, "server_name": "feed.internal"});
        let created = app.post("/v1/websocket-sources", ADMIN_KEY, json!({"name": "t", "source": "t",
            "kind": "generic", "config": {"url": "wss://localhost:9/ws", "tls": tls}})).await;
        assert_eq!(created.status, 201, "{}", created.text);
        let shown = &created.body["config"]["tls"];
        assert_eq!(shown["has_client_key"], true);
        assert_eq!(shown["server_name"], "feed.internal");
        assert_eq!(shown["client_cert"], json!(pki.client.cert_pem));
        assert!(shown.get("client_key").is_none());
        assert!(!created.text.contains("PRIVATE KEY"));
        let id = created.body["id"].as_str().unwrap();
        let path = format!("/v1/websocket-sources/{id}");
        // A change elsewhere keeps the sealed key.
        let renamed = app.patch(&path, ADMIN_KEY, json!({"name": "renamed", "config": {"tls": {"server_name": "other.internal"}}})).await;
        assert_eq!(renamed.status, 200, "{}", renamed.text);
        assert_eq!(renamed.body["config"]["tls"]["has_client_key"], true);
        // A new certificate without its key does not match the stored key.
        let swapped = app.patch(&path, ADMIN_KEY, json!({"config": {"tls": {"client_cert": pki.stranger.cert_pem}}})).await;
        assert_problem(&swapped, 422, Some("config.tls.client_key"));
        // Without the certificate the key is gone too.
        let dropped = app.patch(&path, ADMIN_KEY, json!({"config": {"tls": {"client_cert": null}}})).await;
        assert_eq!(dropped.status, 200, "{}", dropped.text);
        assert_eq!(dropped.body["config"]["tls"]["has_client_key"], false);
        let row = entity::websocket_source::Entity::find_by_id(id.parse::<uuid::Uuid>().unwrap())
            .one(&app.db).await.unwrap().unwrap();
        assert!(!row.config.to_string().contains("PRIVATE KEY"));
        let secrets = switchboard::sealed::open_source_secrets(&keyring(&app), &row).unwrap();
        assert_eq!(secrets.client_key, None, "the key left with its certificate");
    }

    async fn an_unusable_ca_file_stops_start_up_naming_the_setting(backend: Backend) {
        let (mut settings, dir, _pg) = test_settings(backend).await;
        settings.tls_ca_file = Some(dir.path().join("missing.pem"));
        let err = switchboard::startup::Application::build(settings.clone()).await.err().expect("start-up fails");
        let text = format!("{err:#}");
        assert!(text.contains("SWITCHBOARD_TLS_CA_FILE"), "{text}");
        assert!(settings.validate().unwrap_err().to_string().contains("SWITCHBOARD_TLS_CA_FILE"));
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "no certificates here").unwrap();
        settings.tls_ca_file = Some(garbage);
        let err = switchboard::startup::Application::build(settings).await.err().expect("start-up fails");
        let text = format!("{err:#}");
        assert!(text.contains("SWITCHBOARD_TLS_CA_FILE") && text.contains("no PEM certificate"), "{text}");
    }

    async fn the_native_store_replaces_the_bundled_roots(backend: Backend) {
        let pki = pki::generate();
        let (_peer, front) = feed(&pki.localhost, None);
        let app = app_trusting(backend, &pki, true, |s| s.tls_roots = switchboard::config::TlsRoots::Native).await;
        let id = create_source(&app, wss_source("feed", &front, None)).await;
        wait_state(&app, &id, "connected").await;
        ingests(&app, "feed").await;
    }
}

/// The app's keyring, to open sealed secrets.
fn keyring(app: &TestApp) -> switchboard::crypto::Keyring {
    let keys = app.settings.secret_keys.as_ref().unwrap();
    switchboard::crypto::Keyring::parse(secrecy::ExposeSecret::expose_secret(keys)).unwrap()
}

#[actix_web::test]
async fn the_openapi_document_describes_config_tls() {
    let app = crate::helpers::spawn_app(Backend::Sqlite).await;
    let doc = app.request("GET", "/openapi.json", None, None).await;
    let tls = &doc.body["components"]["schemas"]["TlsSettings"];
    for field in ["ca_pem", "client_cert", "server_name"] {
        assert!(
            tls["properties"].get(field).is_some(),
            "{field} missing: {tls}"
        );
    }
    assert!(
        tls["description"]
            .as_str()
            .unwrap_or_default()
            .contains("client_key"),
        "{tls}"
    );
}
