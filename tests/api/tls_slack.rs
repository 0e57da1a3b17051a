//! The Slack adapter over TLS: `apps.connections.open` over HTTPS and the socket over `wss://`,
//! both behind TLS fronts with certificates from the test CA, trusted through
//! `SWITCHBOARD_TLS_CA_FILE`; without it the source fails with "unknown issuer".
use std::time::Duration;

use serde_json::json;

use crate::helpers::{Backend, eventually};
use crate::ingest::{WAIT, create_source, event_count, wait_state};
use crate::slack::{TOKEN, messages, slack_body};
use crate::slack_peer::SlackPeer;
use crate::tls::app_trusting;
use crate::tls_front::TlsFront;

macro_rules! tls_slack_tests {
    ($($tests:tt)*) => { crate::backend_tests!(crate::slack::engine; $($tests)*); };
}

/// A Slack peer whose Web API and sockets are reached through TLS fronts for `localhost`.
fn tls_slack(pki: &crate::pki::TestPki) -> (SlackPeer, TlsFront, TlsFront) {
    let peer = SlackPeer::with_token(TOKEN);
    let api = TlsFront::start(&pki.localhost, None, peer.api_port());
    let sockets = TlsFront::start(&pki.localhost, None, peer.ws_port());
    peer.set_socket_base(&format!("wss://localhost:{}", sockets.port()));
    (peer, api, sockets)
}

tls_slack_tests! {
    async fn slack_works_over_https_and_wss_with_the_ca(backend: Backend) {
        let pki = crate::pki::generate();
        let (peer, api, sockets) = tls_slack(&pki);
        let base = format!("https://localhost:{}/api", api.port());
        let app = app_trusting(backend, &pki, true, |s| s.slack_api_base = base).await;
        let id = create_source(&app, slack_body("slack", json!({"connections": 2}))).await;
        wait_state(&app, &id, "connected").await;
        assert!(peer.wait_until(WAIT, |p| p.ready_sockets() == 2).await);
        peer.send_envelopes(messages(5, "tls"));
        assert!(peer.wait_until(WAIT, |p| p.unacked().is_empty() && p.acks().len() == 5).await,
            "ACKs: {}", peer.acks().len());
        assert!(eventually(WAIT, || async { event_count(&app, "slack").await == 5 }).await);
        let calls = peer.open_calls();
        assert!(calls.len() >= 2);
        assert!(calls.iter().all(|c| c.authorization.as_deref() == Some(format!("Bearer {TOKEN}").as_str())));
        assert!(api.completed() >= 2, "every apps.connections.open call went over TLS");
        assert_eq!(sockets.completed(), 2, "both sockets are wss://");
        assert!(sockets.handshakes().iter().all(|h| h.sni.as_deref() == Some("localhost")));
        assert!(peer.issued_urls().iter().all(|u| u.starts_with("wss://localhost:")));
    }

    async fn without_the_ca_the_slack_api_is_an_unknown_issuer(backend: Backend) {
        let pki = crate::pki::generate();
        let (peer, api, _sockets) = tls_slack(&pki);
        let base = format!("https://localhost:{}/api", api.port());
        let app = app_trusting(backend, &pki, false, |s| s.slack_api_base = base).await;
        let id = create_source(&app, slack_body("slack", json!({"connections": 1}))).await;
        let failed = wait_state(&app, &id, "failed").await;
        let detail = failed["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("TLS: unknown issuer") && detail.contains("localhost"), "{failed}");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(api.accepted(), 1, "no retry after a terminal failure");
        assert_eq!(peer.open_call_count(), 0, "the token never left over an untrusted connection");
    }
}
