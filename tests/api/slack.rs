//! Slack Socket Mode sources against the scriptable Slack peer (`slack_peer.rs`): real
//! `apps.connections.open` calls and real sockets on loopback, on SQLite and PostgreSQL.
use std::collections::HashSet;
use std::time::{Duration, Instant};

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use switchboard::config::Settings;

use crate::helpers::{ADMIN_KEY, Backend, TestApp, eventually, logs, spawn_with, test_settings};
use crate::ingest::{
    WAIT, create_automation, create_source, event_count, runs_of, status, undispatched, wait_state,
};
use crate::pgtemp::TempPostgres;
use crate::slack_peer::{
    OpenAnswer, SlackPeer, SlackPeerConfig, SlackScript, SlackStep, events_api_envelope,
    hello_json, interactive_envelope, new_envelope_id, padded_envelope, slash_command_envelope,
};

/// The app token the peer expects.
pub const TOKEN: &str = "xapp-1-A1-1234567890-s3cr3tt0k3nvalue";

/// `backend_tests!` hands each test its engine; the test starts its peer, then the app.
pub async fn engine(backend: Backend) -> Backend {
    backend
}

macro_rules! slack_tests {
    ($($tests:tt)*) => { crate::backend_tests!(crate::slack::engine; $($tests)*); };
}

/// The app, calling `peer` for `apps.connections.open`, with loopback destinations allowed.
pub async fn app_for(backend: Backend, peer: &SlackPeer) -> TestApp {
    app_with(backend, peer, |_| {}).await
}

/// [`app_for`] with more settings changed.
pub async fn app_with(
    backend: Backend,
    peer: &SlackPeer,
    tweak: impl FnOnce(&mut Settings),
) -> TestApp {
    let (mut settings, dir, pg) = test_settings(backend).await;
    settings.allow_private_networks = true;
    settings.slack_api_base = peer.api_base();
    tweak(&mut settings);
    spawn_with(backend, settings, dir, pg).await
}

/// A Slack source body with the test token and `config` merged in.
pub fn slack_body(slug: &str, config: Value) -> Value {
    let mut merged = json!({"app_token": TOKEN});
    if let (Some(target), Some(extra)) = (merged.as_object_mut(), config.as_object()) {
        for (k, v) in extra {
            target.insert(k.clone(), v.clone());
        }
    }
    json!({"name": slug, "source": slug, "kind": "slack", "config": merged})
}

/// `n` distinct `message` events.
pub fn messages(n: usize, tag: &str) -> Vec<Value> {
    (0..n)
        .map(|i| {
            events_api_envelope(
                &new_envelope_id(),
                &format!("Ev{tag}{i}"),
                0,
                json!({"text": format!("m{i}")}),
            )
        })
        .collect()
}

fn fast_liveness() -> Value {
    json!({"ping_interval_s": 1, "pong_timeout_s": 1, "idle_timeout_s": 30, "close_timeout_ms": 500})
}

async fn wait_ready_sockets(peer: &SlackPeer, n: usize) {
    assert!(
        peer.wait_until(WAIT, |p| p.ready_sockets() >= n).await,
        "ready sockets: {}",
        peer.ready_sockets()
    );
}

async fn settled(peer: &SlackPeer, within: Duration) {
    assert!(
        peer.wait_until(within, |p| p.unacked().is_empty()).await,
        "{} envelopes never ACKed",
        peer.unacked().len()
    );
}

async fn dispatched(app: &TestApp) {
    assert!(
        eventually(Duration::from_secs(120), || async {
            undispatched(app).await == 0
        })
        .await,
        "events left undispatched"
    );
}

fn counter(status: &Value, name: &str) -> u64 {
    status["counters"][name].as_u64().unwrap_or(0)
}

async fn events_of(app: &TestApp, source: &str) -> Vec<entity::event::Model> {
    entity::event::Entity::find()
        .filter(entity::event::Column::Source.eq(source))
        .all(&app.db)
        .await
        .unwrap()
}

slack_tests! {
    async fn a_burst_of_20000_envelopes_is_acked_and_stored_once(backend: Backend) {
        // Like Slack, the peer redelivers what stays unACKed (here after a minute: only a lost
        // connection would leave an envelope unACKed that long).
        let peer = SlackPeer::start(SlackPeerConfig::new(TOKEN).ack_deadline(Duration::from_secs(60)));
        let app = app_for(backend, &peer).await;
        let all = create_automation(&app, "slack", json!("message"), None).await;
        let half = create_automation(&app, "slack", json!("message"), Some("ends_with(text, '0') || ends_with(text, '2') || ends_with(text, '4') || ends_with(text, '6') || ends_with(text, '8')")).await;
        let none = create_automation(&app, "slack", json!("app_mention"), None).await;
        let id = create_source(&app, slack_body("slack", json!({}))).await;
        wait_state(&app, &id, "connected").await;
        wait_ready_sockets(&peer, 2).await;

        let ids = peer.send_envelopes(messages(20_000, "b"));
        settled(&peer, Duration::from_secs(300)).await;
        dispatched(&app).await;

        assert_eq!(event_count(&app, "slack").await, 20_000);
        assert_eq!(runs_of(&app, &all).await, 20_000);
        assert_eq!(runs_of(&app, &half).await, 10_000);
        assert_eq!(runs_of(&app, &none).await, 0);
        assert!(ids.iter().all(|id| peer.is_settled(id)), "every envelope ACKed");
        let acked: HashSet<String> = peer.acks().into_iter().map(|a| a.envelope_id).collect();
        assert_eq!(acked.len(), peer.acks().len(), "no envelope ACKed twice");
        assert_eq!(peer.connections().len(), 2, "no connection was lost: {:?}", status(&app, &id).await);
        let used: HashSet<usize> = peer.sent_envelopes().iter().map(|s| s.conn).collect();
        assert_eq!(used.len(), 2, "both connections carried events");
    }

    async fn routine_refreshes_under_traffic_lose_nothing_and_never_back_off(backend: Backend) {
        let peer = SlackPeer::with_token(TOKEN);
        let app = app_for(backend, &peer).await;
        let automation = create_automation(&app, "slack", json!("message"), None).await;
        let id = create_source(&app, slack_body("slack", json!({"connections": 2}))).await;
        wait_state(&app, &id, "connected").await;
        wait_ready_sockets(&peer, 2).await;

        let started = Instant::now();
        peer.refresh_every(Duration::from_secs(3), Duration::from_secs(1));
        let ids = peer.send_envelopes_paced(messages(3_000, "r"), 50.0);
        assert!(
            peer.wait_until(Duration::from_secs(120), |p| p.queued_envelopes() == 0 && p.sent_envelopes().len() >= ids.len()).await,
            "the traffic was sent"
        );
        peer.stop_background();
        settled(&peer, Duration::from_secs(30)).await;
        dispatched(&app).await;

        assert!(started.elapsed() >= Duration::from_secs(55), "a minute of refreshes");
        let gaps = peer.gaps_without_ready(started);
        assert!(gaps.is_empty(), "moments with no ready connection: {gaps:?}");
        assert_eq!(event_count(&app, "slack").await, 3_000);
        assert_eq!(runs_of(&app, &automation).await, 3_000);
        let refreshed = peer.connections().iter().filter(|c| !c.disconnects.is_empty()).count();
        assert!(refreshed >= 15, "refreshes: {refreshed}");
        let s = status(&app, &id).await;
        assert_eq!(s["state"], "connected", "{s}");
        assert_eq!(s["consecutive_failures"], 0, "a refresh is not a failure: {s}");
        assert_eq!(counter(&s, "reconnects"), 0, "no refresh counted as a reconnect: {s}");
        // Never backed off: every replacement was opened within moments of its refresh.
        let conns = peer.connections();
        for old in conns.iter().filter(|c| !c.disconnects.is_empty()) {
            let (asked, _) = &old.disconnects[0];
            let replaced = conns.iter().any(|c| c.opened_at > *asked && c.opened_at <= *asked + Duration::from_secs(2));
            assert!(replaced, "connection {} was not replaced promptly", old.conn);
        }
    }

    async fn a_refreshed_socket_is_read_until_slack_closes_it(backend: Backend) {
        let peer = SlackPeer::with_token(TOKEN);
        let app = app_for(backend, &peer).await;
        let automation = create_automation(&app, "slack", json!("message"), None).await;
        let id = create_source(&app, slack_body("slack", json!({"connections": 1}))).await;
        wait_state(&app, &id, "connected").await;
        wait_ready_sockets(&peer, 1).await;
        let old = peer.ready_connections()[0];
        let started = Instant::now();
        // Slack asks for a refresh, keeps sending on the old socket for ~10 s (20/s), then closes
        // it; meanwhile new traffic goes to the replacement.
        assert!(peer.disconnect(old, "refresh_requested", Some(Duration::from_secs(10))));
        let on_old = peer.send_envelopes_paced_to(old, messages(190, "old"), 20.0);
        let on_new = peer.send_envelopes_paced(messages(190, "new"), 20.0);
        assert!(
            peer.wait_until(Duration::from_secs(30), |p| p.sent_envelopes().len() >= 380 && p.queued_envelopes() == 0).await,
            "the traffic was sent"
        );
        settled(&peer, Duration::from_secs(30)).await;
        dispatched(&app).await;

        assert!(peer.redeliveries().is_empty(), "redelivered: {:?}", peer.redeliveries());
        let acked_on_old: HashSet<String> = peer.acks().into_iter().filter(|a| a.conn == old).map(|a| a.envelope_id).collect();
        let sent_on_old: HashSet<String> = peer.sent_envelopes().into_iter().filter(|e| e.conn == old).map(|e| e.envelope_id).collect();
        assert!(sent_on_old.len() >= on_old.len(), "{} sent on the old socket", sent_on_old.len());
        assert_eq!(acked_on_old, sent_on_old, "every envelope sent on the old socket was ACKed there");
        assert!(on_new.iter().chain(&on_old).all(|id| peer.is_settled(id)));
        // Switchboard let Slack close the old socket: no close frame of ours came first.
        let closed_by_us: Vec<_> = peer.client_closes().into_iter().filter(|c| c.conn == old).collect();
        assert!(
            closed_by_us.iter().all(|c| c.at >= started + Duration::from_millis(9_900)),
            "closed by Switchboard before Slack did: {closed_by_us:?}"
        );
        let gaps = peer.gaps_without_ready(started);
        assert!(gaps.is_empty(), "moments with no ready connection: {gaps:?}");
        assert_eq!(event_count(&app, "slack").await, 380);
        assert_eq!(runs_of(&app, &automation).await, 380, "no duplicate runs");
        let s = status(&app, &id).await;
        assert_eq!(s["consecutive_failures"], 0, "{s}");
    }

    async fn link_disabled_and_token_errors_are_terminal_until_reconnect(backend: Backend) {
        let peer = SlackPeer::start(SlackPeerConfig::new(TOKEN).scripts(vec![
            SlackScript::hello_then(vec![SlackStep::Disconnect("link_disabled".into())]),
            SlackScript::default(),
        ]));
        let app = app_for(backend, &peer).await;
        let disabled = create_source(&app, slack_body("disabled", json!({"connections": 1}))).await;
        let s = wait_state(&app, &disabled, "failed").await;
        assert_eq!(s["detail"], "Socket Mode disabled for the app", "{s}");
        let mut wrong = slack_body("revoked", json!({"connections": 1}));
        wrong["config"]["app_token"] = json!("xapp-1-A1-0000-wrongtoken");
        let revoked = create_source(&app, wrong).await;
        let s = wait_state(&app, &revoked, "failed").await;
        assert!(s["detail"].as_str().unwrap().contains("invalid_auth"), "{s}");

        let calls = peer.open_call_count();
        assert_eq!(calls, 2, "one call each, no retries");
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(peer.open_call_count(), calls, "no apps.connections.open call in 30 s");
        assert_eq!(status(&app, &disabled).await["state"], "failed");
        assert_eq!(status(&app, &revoked).await["state"], "failed");

        let resp = app.post(&format!("/v1/websocket-sources/{disabled}/reconnect"), ADMIN_KEY, json!({})).await;
        assert_eq!(resp.status, 202, "{}", resp.text);
        wait_state(&app, &disabled, "connected").await;
        // Fixing the token is a change: it reconnects at once.
        let resp = app.patch(&format!("/v1/websocket-sources/{revoked}"), ADMIN_KEY, json!({"config": {"app_token": TOKEN, "connections": 1}})).await;
        assert_eq!(resp.status, 200, "{}", resp.text);
        wait_state(&app, &revoked, "connected").await;
    }

    async fn retry_after_holds_the_next_call(backend: Backend) {
        let peer = SlackPeer::with_token(TOKEN);
        peer.push_open_answer(OpenAnswer::RateLimited { retry_after_s: 2 });
        let app = app_for(backend, &peer).await;
        let id = create_source(&app, slack_body("slack", json!({"connections": 1}))).await;
        wait_state(&app, &id, "connected").await;
        let calls = peer.open_calls();
        assert_eq!(calls.len(), 2, "{calls:?}");
        let gap = calls[1].at.duration_since(calls[0].at);
        assert!(gap >= Duration::from_secs(2), "next call after {gap:?}");
    }

    async fn too_many_websockets_keeps_the_sockets_under_the_cap(backend: Backend) {
        let peer = SlackPeer::start(SlackPeerConfig::new(TOKEN).max_connections(1));
        let app = app_with(backend, &peer, |s| s.slack_opens_per_second = 20.0).await;
        let id = create_source(&app, slack_body("slack", json!({"connections": 2}))).await;
        wait_state(&app, &id, "connected").await;
        assert!(peer.wait_until(WAIT, |p| p.too_many_refusals() >= 1).await);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(peer.max_live_sockets_seen(), 1, "never more live sockets than the cap");
        assert_eq!(peer.too_many_refusals(), 1, "the refused connection waits at least 30 s");
        let s = status(&app, &id).await;
        assert_eq!(s["state"], "connected", "{s}");
        assert_eq!(s["detail"], "1 of 2 connections ready", "{s}");
        assert_eq!(s["connections"]["configured"], 2, "{s}");
        assert_eq!(s["connections"]["ready"], 1, "{s}");
    }

    async fn a_half_open_connection_is_replaced(backend: Backend) {
        let peer = SlackPeer::start(SlackPeerConfig::new(TOKEN).scripts(vec![
            SlackScript::hello_then(vec![SlackStep::Stall]),
            SlackScript::default(),
        ]));
        let app = app_for(backend, &peer).await;
        let id = create_source(&app, slack_body("slack", json!({"connections": 1, "liveness": fast_liveness()}))).await;
        assert!(peer.wait_until(WAIT, |p| p.connections().len() >= 2).await, "replaced");
        let conns = peer.connections();
        let stalled_at = conns[0].hello_at.unwrap();
        let took = conns[1].opened_at.duration_since(stalled_at);
        // Detection within ping interval + pong timeout (2 s), then at most the first backoff
        // step (1 s) and the open call.
        assert!(took <= Duration::from_millis(4_500), "replaced after {took:?}");
        wait_state(&app, &id, "connected").await;
    }

    async fn large_fragmented_and_oversized_envelopes(backend: Backend) {
        let big_id = new_envelope_id();
        let big = padded_envelope(&big_id, "EvBig", 300 * 1024);
        let frag_id = new_envelope_id();
        let frag = events_api_envelope(&frag_id, "EvFrag", 0, json!({"text": "x".repeat(20_000)}));
        let huge = padded_envelope(&new_envelope_id(), "EvHuge", 600 * 1024);
        let peer = SlackPeer::start(SlackPeerConfig::new(TOKEN).scripts(vec![
            SlackScript::hello_then(vec![
                SlackStep::Envelope(big),
                SlackStep::SendFragmented(frag.to_string(), 7),
                // Time to commit and ACK both before the connection breaks.
                SlackStep::Sleep(Duration::from_secs(3)),
                SlackStep::Send(huge.to_string()),
            ]),
            SlackScript::default(),
        ]));
        let app = app_for(backend, &peer).await;
        let liveness = json!({"max_message_bytes": 512 * 1024});
        let id = create_source(&app, slack_body("slack", json!({"connections": 1, "liveness": liveness}))).await;
        assert!(peer.wait_until(WAIT, |p| p.connections().len() >= 2).await, "reconnected after the oversized frame");
        wait_state(&app, &id, "connected").await;
        let acked: HashSet<String> = peer.acks().into_iter().map(|a| a.envelope_id).collect();
        assert!(acked.contains(&big_id) && acked.contains(&frag_id), "{acked:?}");
        let stored: HashSet<String> = events_of(&app, "slack").await.into_iter().map(|e| e.dedup_key).collect();
        assert_eq!(stored, HashSet::from(["EvBig".to_owned(), "EvFrag".to_owned()]));
        assert!(eventually(WAIT, || async { counter(&status(&app, &id).await, "oversized") == 1 }).await);
    }

    async fn every_envelope_type_is_stored_with_meta_and_acked_exactly(backend: Backend) {
        let peer = SlackPeer::with_token(TOKEN);
        let app = app_for(backend, &peer).await;
        let id = create_source(&app, slack_body("slack", json!({"connections": 1, "debug_reconnects": true}))).await;
        wait_state(&app, &id, "connected").await;
        wait_ready_sockets(&peer, 1).await;
        peer.broadcast("not json");
        peer.broadcast("[1, 2]");
        peer.broadcast(r#"{"type": "mystery"}"#);
        let ids: Vec<String> = (0..5).map(|_| new_envelope_id()).collect();
        peer.send_envelopes(vec![
            events_api_envelope(&ids[0], "EvT1", 0, json!({})),
            slash_command_envelope(&ids[1], "/deploy", "prod"),
            interactive_envelope(&ids[2], "approve"),
            json!({"envelope_id": ids[3], "type": "future_type", "payload": {"type": "novel"}}),
        ]);
        settled(&peer, WAIT).await;
        // A redelivery of a stored event: a duplicate, ACKed all the same.
        peer.send_envelopes(vec![events_api_envelope(&ids[4], "EvT1", 1, json!({}))]);
        settled(&peer, WAIT).await;

        let texts: Vec<String> = peer.all_received_frames().into_iter().filter_map(|f| f.text).collect();
        for id in &ids {
            let exact = json!({"envelope_id": id}).to_string();
            assert_eq!(texts.iter().filter(|t| **t == exact).count(), 1, "one exact ACK for {id}: {texts:?}");
        }
        let events = events_of(&app, "slack").await;
        assert_eq!(events.len(), 4);
        let by_type = |t: &str| events.iter().find(|e| e.meta["envelope_type"] == t).unwrap_or_else(|| panic!("no {t} event"));
        let message = by_type("events_api");
        assert_eq!(message.event_key.as_deref(), Some("message"));
        assert_eq!(message.meta["retry_attempt"], 0);
        assert_eq!(message.meta["retry_reason"], "");
        assert_eq!(by_type("slash_commands").event_key.as_deref(), Some("/deploy"));
        assert_eq!(by_type("interactive").event_key.as_deref(), Some("block_actions"));
        assert_eq!(by_type("future_type").event_key.as_deref(), Some("novel"));

        let s = status(&app, &id).await;
        assert!(eventually(WAIT, || async {
            let s = status(&app, &id).await;
            counter(&s, "duplicates") == 1 && counter(&s, "events_stored") == 4
        }).await, "{s}");
        let s = status(&app, &id).await;
        assert_eq!(counter(&s, "non_json"), 1, "{s}");
        assert_eq!(counter(&s, "ignored"), 2, "{s}");
        assert_eq!(s["state"], "connected", "junk frames are never fatal: {s}");

        let call = &peer.open_calls()[0];
        assert_eq!(call.method, "POST");
        assert_eq!(call.path, "/api/apps.connections.open");
        assert_eq!(call.authorization.as_deref(), Some(format!("Bearer {TOKEN}").as_str()));
        let upgrade = &peer.upgrades()[0];
        assert!(upgrade.uri.contains("debug_reconnects=true"), "{}", upgrade.uri);
        let ticket = upgrade.ticket.clone().unwrap();
        let shown = app.get(&format!("/v1/websocket-sources/{id}"), ADMIN_KEY).await.text;
        let log = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
        for secret in [TOKEN, ticket.as_str()] {
            assert!(!shown.contains(secret), "secret in the API response");
            assert!(!log.contains(secret), "secret in the logs");
        }
    }

    async fn no_hello_abandons_the_attempt(backend: Backend) {
        let peer = SlackPeer::start(SlackPeerConfig::new(TOKEN).scripts(vec![
            SlackScript::new(vec![SlackStep::KeepOpen]),
            SlackScript::default(),
        ]));
        let app = app_for(backend, &peer).await;
        let id = create_source(&app, slack_body("slack", json!({"connections": 1}))).await;
        assert!(peer.wait_until(Duration::from_secs(20), |p| p.connections().len() >= 2).await);
        let conns = peer.connections();
        let waited = conns[1].opened_at.duration_since(conns[0].opened_at);
        assert!(waited >= Duration::from_secs(10) && waited < Duration::from_secs(13), "{waited:?}");
        assert!(peer.wait_until(WAIT, |p| p.connections()[0].closed_at.is_some()).await, "the silent connection was closed");
        wait_state(&app, &id, "connected").await;
    }

    async fn ghost_connections_are_reported(backend: Backend) {
        let peer = SlackPeer::start(SlackPeerConfig::new(TOKEN).scripts(vec![
            SlackScript::new(vec![SlackStep::HelloRaw(hello_json(5, 18_060))]),
        ]));
        let app = app_for(backend, &peer).await;
        let id = create_source(&app, slack_body("slack", json!({"connections": 1}))).await;
        let s = wait_state(&app, &id, "connected").await;
        let s = if s["detail"].is_null() { tokio::time::sleep(Duration::from_millis(500)).await; status(&app, &id).await } else { s };
        assert!(s["detail"].as_str().unwrap_or_default().contains("another process"), "{s}");
        assert_eq!(s["connections"]["reported"], 5, "the hello's num_connections is recorded: {s}");
    }

    async fn proactive_refresh_replaces_before_the_announced_time(backend: Backend) {
        let peer = SlackPeer::start(SlackPeerConfig::new(TOKEN).approximate_connection_time_s(3));
        let app = app_for(backend, &peer).await;
        let id = create_source(&app, slack_body("slack", json!({"connections": 1, "proactive_refresh": true}))).await;
        wait_state(&app, &id, "connected").await;
        let first_ready = Instant::now();
        assert!(peer.wait_until(Duration::from_secs(10), |p| p.connections().len() >= 3).await, "two refreshes");
        let conns = peer.connections();
        // The replacement is asked for at 90 % of the announced 3 s (its open call), well before
        // Slack would end the connection.
        let after = peer.open_calls()[1].at.duration_since(conns[0].hello_at.unwrap());
        assert!(after >= Duration::from_millis(2_500) && after < Duration::from_millis(3_500), "refreshed after {after:?}");
        assert!(peer.gaps_without_ready(first_ready).is_empty(), "make-before-break");
        let s = status(&app, &id).await;
        assert_eq!(s["consecutive_failures"], 0, "{s}");
    }
}

/// A redelivery of an envelope whose ACK never came (storage was down): one event, one run per
/// matching automation. Needs its own PostgreSQL to stop.
#[actix_web::test]
async fn redelivery_after_an_outage_is_one_event_with_one_run_each() {
    let pg = TempPostgres::start();
    let peer = SlackPeer::start(
        SlackPeerConfig::new(TOKEN)
            .ack_deadline(Duration::from_secs(2))
            .max_redeliveries(10),
    );
    let (mut settings, dir, _) = test_settings(Backend::Sqlite).await;
    settings.database_url = Some(pg.url());
    settings.allow_private_networks = true;
    settings.slack_api_base = peer.api_base();
    let app = spawn_with(Backend::Postgres, settings, dir, None).await;
    let a = create_automation(&app, "slack", json!("message"), None).await;
    let b = create_automation(&app, "slack", json!("mess*"), None).await;
    let id = create_source(&app, slack_body("slack", json!({"connections": 1}))).await;
    wait_state(&app, &id, "connected").await;
    wait_ready_sockets(&peer, 1).await;
    peer.send_envelopes(messages(1, "before"));
    settled(&peer, WAIT).await;

    pg.stop();
    let original = peer.send_envelopes(messages(1, "outage")).remove(0);
    assert!(
        peer.wait_until(Duration::from_secs(15), |p| p
            .redeliveries()
            .get(&original)
            .is_some_and(|again| !again.is_empty()))
            .await,
        "the peer redelivered"
    );
    assert!(
        !peer.is_settled(&original),
        "nothing is ACKed while storage is down"
    );

    pg.start_again();
    assert!(
        peer.wait_until(Duration::from_secs(60), |p| p.is_settled(&original))
            .await
    );
    dispatched(&app).await;
    assert_eq!(event_count(&app, "slack").await, 2);
    assert_eq!(runs_of(&app, &a).await, 2);
    assert_eq!(runs_of(&app, &b).await, 2);
}
