#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use super::*;
use crate::pipeline::expr::to_value;
use crate::sources::failure::FailureClass;

const TOKEN: &str = "xapp-1-A111-222-s3cr3t";
const TICKET: &str = "0f9e8d7c-6b5a-4321";
const SEC: Duration = Duration::from_secs(1);

fn slack_url() -> String {
    format!("wss://wss-primary.slack.com/link/?ticket={TICKET}&app_id=A111")
}

fn opened() -> OpenedUrl {
    let body = json!({ "ok": true, "url": slack_url() }).to_string();
    parse_open_response(200, None, body.as_bytes()).unwrap()
}

fn failure(status: u16, retry_after: Option<&str>, body: &str) -> OpenFailure {
    parse_open_response(status, retry_after, body.as_bytes()).unwrap_err()
}

fn assert_no_secrets(text: &str) {
    assert!(!text.contains(TOKEN), "token leaked: {text}");
    assert!(!text.contains("s3cr3t"), "token leaked: {text}");
    assert!(!text.contains(TICKET), "ticket leaked: {text}");
}

fn one(session: &mut SlackSession, frame: Json) -> SlackAction {
    let mut actions = session.on_text(&frame.to_string());
    assert_eq!(actions.len(), 1, "{actions:?}");
    actions.remove(0)
}

fn ready_session() -> SlackSession {
    let mut session = SlackSession::new();
    one(&mut session, json!({ "type": "hello" }));
    session
}

fn adapter(settings: Json, token: Option<&str>) -> Result<SlackAdapter, SlackAdapterError> {
    let settings: SlackSettings = serde_json::from_value(settings).unwrap();
    let secrets = SourceSecrets {
        app_token: token.map(str::to_owned),
        ..SourceSecrets::default()
    };
    SlackAdapter::new(&settings, &secrets, "http://127.0.0.1:9/api/")
}

// apps.connections.open: the request

#[test]
fn open_request_posts_an_empty_form_with_the_bearer_token() {
    let spec = open_request("https://slack.com/api", TOKEN, false);
    assert_eq!(spec.method, "POST");
    assert_eq!(spec.url, "https://slack.com/api/apps.connections.open");
    assert_eq!(
        spec.headers,
        vec![
            ("Authorization".to_owned(), format!("Bearer {TOKEN}")),
            (
                "Content-Type".to_owned(),
                "application/x-www-form-urlencoded".to_owned()
            ),
        ]
    );
    assert_eq!(spec.body, "");
    assert_eq!(open_request("https://slack.com/api", TOKEN, true), spec);
    assert_eq!(
        open_request("http://127.0.0.1:8080/api/", TOKEN, false).url,
        "http://127.0.0.1:8080/api/apps.connections.open"
    );
}

#[test]
fn request_debug_hides_the_token() {
    let shown = format!("{:?}", open_request("https://slack.com/api", TOKEN, false));
    assert_no_secrets(&shown);
    assert!(shown.contains("Authorization"), "{shown}");
    assert!(shown.contains("apps.connections.open"), "{shown}");
}

// apps.connections.open: the answer

#[test]
fn ok_answer_gives_the_url() {
    let url = opened();
    assert_eq!(url.as_str(), slack_url());
    assert_eq!(url.connect_url(false), slack_url());
    assert_eq!(
        url.redacted(),
        "wss://wss-primary.slack.com/link/?ticket=***&app_id=A111"
    );
    assert_no_secrets(&format!("{url:?}"));
    let local = br#"{"ok":true,"url":"ws://127.0.0.1:4000/link?ticket=t1"}"#;
    assert!(parse_open_response(200, None, local).is_ok());
}

#[test]
fn terminal_open_errors_fail_the_source() {
    for code in TERMINAL_OPEN_ERRORS {
        for status in [200, 401, 403] {
            let body = json!({ "ok": false, "error": code }).to_string();
            let failed = failure(status, None, &body);
            let reason = format!("Slack refused the app token: {code}");
            assert_eq!(
                failed.class,
                FailureClass::Terminal {
                    reason: reason.clone()
                }
            );
            assert_eq!(failed.detail, reason);
            assert_eq!(failed.to_string(), reason);
        }
    }
    assert_eq!(TERMINAL_OPEN_ERRORS.len(), 5);
}

#[test]
fn rate_limits_honour_retry_after() {
    let body = r#"{"ok":false,"error":"ratelimited"}"#;
    let limited = |retry_after| FailureClass::RateLimited { retry_after };
    assert_eq!(failure(429, Some("2"), body).class, limited(2 * SEC));
    assert_eq!(failure(429, Some(" 7 "), "").class, limited(7 * SEC));
    assert_eq!(failure(429, Some("1.5"), body).class, limited(SEC * 3 / 2));
    assert_eq!(failure(429, None, body).class, limited(30 * SEC));
    assert_eq!(failure(429, Some("soon"), body).class, limited(30 * SEC));
    assert_eq!(failure(429, Some("-1"), body).class, limited(30 * SEC));
    assert_eq!(failure(429, Some("NaN"), body).class, limited(30 * SEC));
    assert_eq!(failure(200, Some("3"), body).class, limited(3 * SEC));
    assert_eq!(DEFAULT_RETRY_AFTER, 30 * SEC);
    assert_eq!(
        failure(429, Some("1e300"), body).class,
        limited(MAX_RETRY_AFTER)
    );
    assert_eq!(
        failure(429, Some("86401"), body).class,
        limited(MAX_RETRY_AFTER)
    );
    assert!(failure(429, Some("2"), body).detail.contains("2 s"));
}

#[test]
fn server_errors_other_errors_and_garbage_are_transient() {
    let cases: &[(u16, &str)] = &[
        (500, ""),
        (502, "<html>Bad Gateway</html>"),
        (503, r#"{"ok":false,"error":"internal_error"}"#),
        (200, r#"{"ok":false,"error":"some_new_error"}"#),
        (200, r#"{"ok":false}"#),
        (200, "not json at all"),
        (200, ""),
        (200, "[1, 2]"),
        (200, r#"{"ok":true}"#),
        (200, r#"{"ok":true,"url":42}"#),
        (200, r#"{"ok":true,"url":"https://example.com/?ticket=x"}"#),
        (200, r#"{"ok":true,"url":"not a url"}"#),
        (
            200,
            r#"{"ok":"yes","url":"wss://x.slack.com/link/?ticket=x"}"#,
        ),
        (
            302,
            r#"{"ok":true,"url":"wss://x.slack.com/link/?ticket=x"}"#,
        ),
        (404, "Not Found"),
        (401, ""),
    ];
    for (status, body) in cases {
        let failed = failure(*status, None, body);
        assert_eq!(failed.class, FailureClass::Transient, "{status} {body}");
        assert!(!failed.detail.is_empty());
        assert!(!failed.detail.contains("ticket=x"), "{}", failed.detail);
    }
    assert!(failure(503, None, "").detail.contains("HTTP 503"));
    let other = failure(200, None, r#"{"ok":false,"error":"some_new_error"}"#);
    assert!(other.detail.contains("some_new_error"), "{}", other.detail);
}

#[test]
fn failure_details_never_echo_secrets_or_odd_text() {
    let body = json!({ "ok": false, "error": format!("bad <{TOKEN}> \n{TICKET}") }).to_string();
    let failed = failure(200, None, &body);
    assert_eq!(failed.class, FailureClass::Transient);
    assert!(!failed.detail.contains('<') && !failed.detail.contains('\n'));
    let long = json!({ "ok": false, "error": "e".repeat(10_000) }).to_string();
    assert!(failure(200, None, &long).detail.len() < 200);
    let with_url = json!({ "ok": false, "error": "oops", "url": slack_url() }).to_string();
    assert_no_secrets(&failure(500, None, &with_url).detail);
}

// URLs

#[test]
fn debug_reconnects_is_appended_to_the_query() {
    let cases = [
        (
            "wss://h/link/?ticket=t",
            "wss://h/link/?ticket=t&debug_reconnects=true",
        ),
        ("wss://h/link", "wss://h/link?debug_reconnects=true"),
        ("wss://h/link?", "wss://h/link?debug_reconnects=true"),
        (
            "wss://h/link?a=1&",
            "wss://h/link?a=1&debug_reconnects=true",
        ),
        (
            "wss://h/link?a=1#f",
            "wss://h/link?a=1&debug_reconnects=true#f",
        ),
        (
            "wss://h/link?debug_reconnects=true",
            "wss://h/link?debug_reconnects=true",
        ),
        (
            "wss://h/l?a=1&debug_reconnects=true",
            "wss://h/l?a=1&debug_reconnects=true",
        ),
    ];
    for (url, expected) in cases {
        assert_eq!(connect_url(url, true), expected, "{url}");
        assert_eq!(connect_url(url, false), url);
    }
    assert_eq!(
        opened().connect_url(true),
        format!("{}&debug_reconnects=true", slack_url())
    );
}

#[test]
fn ticket_is_redacted() {
    let slack = slack_url();
    let cases = [
        (
            slack.as_str(),
            "wss://wss-primary.slack.com/link/?ticket=***&app_id=A111",
        ),
        (
            "wss://h/l?app_id=A&ticket=abc",
            "wss://h/l?app_id=A&ticket=***",
        ),
        (
            "wss://h/l?TICKET=abc&x=1#frag",
            "wss://h/l?TICKET=***&x=1#frag",
        ),
        ("wss://h/l?%74icket=abc", "wss://h/l?%74icket=***"),
        (
            "wss://h/l?ticket=a&ticket=b",
            "wss://h/l?ticket=***&ticket=***",
        ),
        ("wss://h/l?tickets=a", "wss://h/l?tickets=a"),
        ("wss://h/l", "wss://h/l"),
        ("not a url?ticket=zzz", "not a url?ticket=***"),
    ];
    for (url, expected) in cases {
        assert_eq!(redact_ticket(url), expected, "{url}");
    }
    let debug = connect_url(&slack_url(), true);
    assert_no_secrets(&redact_ticket(&debug));
}

// hello

#[test]
fn hello_with_every_field_makes_the_connection_ready() {
    let mut session = SlackSession::new();
    assert!(!session.is_ready());
    let hello = json!({
        "type": "hello",
        "num_connections": 2,
        "debug_info": {
            "host": "applink-7fc4fdbb64-4x5xq",
            "build_number": 10,
            "approximate_connection_time": 18060
        },
        "connection_info": { "app_id": "A111" }
    });
    assert_eq!(
        one(&mut session, hello),
        SlackAction::Ready {
            num_connections: Some(2),
            approximate_connection_time: Some(18060 * SEC),
            host: Some("applink-7fc4fdbb64-4x5xq".to_owned()),
        }
    );
    assert!(session.is_ready());
    assert_eq!(session.num_connections(), Some(2));
}

#[test]
fn hello_without_fields_or_with_odd_ones_is_ready_too() {
    let empty = SlackAction::Ready {
        num_connections: None,
        approximate_connection_time: None,
        host: None,
    };
    let hellos = [
        json!({ "type": "hello" }),
        json!({ "type": "hello", "debug_info": {} }),
        json!({ "type": "hello", "debug_info": null, "num_connections": null }),
        json!({ "type": "hello", "num_connections": "2", "debug_info": "x" }),
        json!({ "type": "hello", "num_connections": -1,
                "debug_info": { "host": 5, "approximate_connection_time": -3 } }),
    ];
    for hello in hellos {
        let mut session = SlackSession::new();
        assert_eq!(one(&mut session, hello.clone()), empty, "{hello}");
        assert!(session.is_ready());
        assert_eq!(session.num_connections(), None);
    }
    let mut session = SlackSession::new();
    let partial = json!({ "type": "hello", "debug_info": { "approximate_connection_time": 1.5 },
                          "num_connections": 99_999_999_999u64 });
    assert_eq!(
        one(&mut session, partial),
        SlackAction::Ready {
            num_connections: Some(u32::MAX),
            approximate_connection_time: Some(SEC * 3 / 2),
            host: None,
        }
    );
}

#[test]
fn a_second_hello_is_counted_and_ignored() {
    let mut session = ready_session();
    assert_eq!(
        one(
            &mut session,
            json!({ "type": "hello", "num_connections": 4 })
        ),
        SlackAction::Count(SlackCounter::RepeatedHello)
    );
    assert_eq!(session.num_connections(), None);
}

#[test]
fn hello_timeout_after_ten_seconds_without_hello() {
    assert_eq!(HELLO_TIMEOUT, 10 * SEC);
    let start = Instant::now();
    let session = SlackSession::new();
    assert_eq!(session.hello_timeout(start, start), None);
    assert_eq!(session.hello_timeout(start, start + 9 * SEC), None);
    let Some(SlackAction::Failed { class, detail }) =
        session.hello_timeout(start, start + 10 * SEC)
    else {
        panic!("no timeout");
    };
    assert_eq!(class, FailureClass::Transient);
    assert!(detail.contains("hello"), "{detail}");
    assert_eq!(session.hello_timeout(start + SEC, start), None);
    assert_eq!(ready_session().hello_timeout(start, start + 60 * SEC), None);
}

// envelopes

fn envelope(frame: &Json) -> (String, String, Json, Json, String) {
    let mut session = ready_session();
    match one(&mut session, frame.clone()) {
        SlackAction::Envelope {
            envelope_id,
            envelope_type,
            raw,
            value,
            meta,
            ack,
            ..
        } => {
            assert_eq!(&raw, frame);
            assert_eq!(value, to_value(frame));
            (envelope_id, envelope_type, raw, meta, ack)
        }
        other => panic!("not an envelope: {other:?}"),
    }
}

#[test]
fn events_api_envelope_with_retry_fields() {
    let frame = json!({
        "envelope_id": "57d6b1a1-6c2d-4e1e-9a6e-1b0e2a1f3c4d",
        "type": "events_api",
        "accepts_response_payload": false,
        "retry_attempt": 2,
        "retry_reason": "timeout",
        "payload": {
            "event_id": "Ev0123",
            "event": { "type": "app_mention", "text": "<@U1> hi" }
        }
    });
    let (id, kind, _, meta, ack) = envelope(&frame);
    assert_eq!(id, "57d6b1a1-6c2d-4e1e-9a6e-1b0e2a1f3c4d");
    assert_eq!(kind, "events_api");
    assert_eq!(
        meta,
        json!({
            "envelope_type": "events_api",
            "retry_attempt": 2,
            "retry_reason": "timeout",
            "accepts_response_payload": false
        })
    );
    assert_eq!(
        ack,
        r#"{"envelope_id":"57d6b1a1-6c2d-4e1e-9a6e-1b0e2a1f3c4d"}"#
    );
}

#[test]
fn every_envelope_type_is_delivered_and_acked_exactly() {
    let frames = [
        json!({ "envelope_id": "e1", "type": "slash_commands", "accepts_response_payload": true,
                "payload": { "command": "/deploy", "text": "prod" } }),
        json!({ "envelope_id": "e2", "type": "interactive", "accepts_response_payload": true,
                "payload": { "type": "block_actions" } }),
        json!({ "envelope_id": "e3", "type": "something_new", "payload": {} }),
        json!({ "envelope_id": "e4", "type": "events_api", "retry_attempt": 0,
                "retry_reason": "", "payload": { "event": { "type": "message" } } }),
    ];
    let kinds = [
        "slash_commands",
        "interactive",
        "something_new",
        "events_api",
    ];
    for (n, (frame, kind)) in frames.iter().zip(kinds).enumerate() {
        let (id, envelope_type, _, meta, ack) = envelope(frame);
        assert_eq!(id, format!("e{}", n + 1));
        assert_eq!(envelope_type, kind);
        assert_eq!(meta["envelope_type"], kind);
        assert_eq!(meta["retry_attempt"], frame["retry_attempt"]);
        assert_eq!(meta["retry_reason"], frame["retry_reason"]);
        assert_eq!(
            meta["accepts_response_payload"],
            frame["accepts_response_payload"]
        );
        assert_eq!(ack, format!(r#"{{"envelope_id":"e{}"}}"#, n + 1));
    }
    let (_, _, _, meta, _) = envelope(&frames[2]);
    assert_eq!(
        meta,
        json!({ "envelope_type": "something_new", "retry_attempt": null,
                "retry_reason": null, "accepts_response_payload": null })
    );
}

#[test]
fn envelope_without_type_and_ack_escaping() {
    let (_, kind, _, meta, ack) = envelope(&json!({ "envelope_id": "a\"b\\c" }));
    assert_eq!(kind, "unknown");
    assert_eq!(meta["envelope_type"], "unknown");
    assert_eq!(ack, r#"{"envelope_id":"a\"b\\c"}"#);
    assert_eq!(
        serde_json::from_str::<Json>(&ack).unwrap(),
        json!({ "envelope_id": "a\"b\\c" })
    );
    // An envelope id wins over any type, even `hello` or `disconnect`.
    let (_, kind, ..) = envelope(&json!({ "envelope_id": "x", "type": "disconnect" }));
    assert_eq!(kind, "disconnect");
}

#[test]
fn envelopes_before_hello_are_counted_and_still_delivered() {
    let mut session = SlackSession::new();
    let frame = json!({ "envelope_id": "early", "type": "events_api", "payload": {} });
    let actions = session.on_text(&frame.to_string());
    assert_eq!(actions.len(), 2);
    assert_eq!(actions[0], SlackAction::Count(SlackCounter::EarlyEnvelope));
    assert!(
        matches!(&actions[1], SlackAction::Envelope { envelope_id, ack, .. }
            if envelope_id == "early" && ack == r#"{"envelope_id":"early"}"#)
    );
    assert!(!session.is_ready());
}

#[test]
fn envelopes_after_disconnect_are_still_delivered() {
    let mut session = ready_session();
    let refresh = json!({ "type": "disconnect", "reason": "refresh_requested" });
    assert!(matches!(
        one(&mut session, refresh),
        SlackAction::Refresh { .. }
    ));
    let frame = json!({ "envelope_id": "straggler", "type": "events_api", "payload": {} });
    assert!(matches!(
        one(&mut session, frame),
        SlackAction::Envelope { .. }
    ));
}

#[test]
fn unusable_envelope_ids_are_counted() {
    let mut session = ready_session();
    for id in [json!(""), json!(7), json!(null), json!({ "a": 1 })] {
        let frame = json!({ "envelope_id": id, "type": "events_api" });
        assert_eq!(
            one(&mut session, frame),
            SlackAction::Count(SlackCounter::InvalidEnvelopeId)
        );
    }
}

#[test]
fn envelope_value_feeds_the_default_expressions() {
    use crate::pipeline::expr::{CompiledExpr, to_json};
    use crate::sources::config::slack_defaults;
    let frame = json!({ "envelope_id": "e9", "type": "events_api",
                        "payload": { "event_id": "Ev9", "event": { "type": "app_mention" } } });
    let mut session = ready_session();
    let SlackAction::Envelope { value, .. } = one(&mut session, frame) else {
        panic!("not an envelope");
    };
    let eval = |source| {
        to_json(
            &CompiledExpr::compile(source)
                .unwrap()
                .search(&value)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(eval(slack_defaults::EVENT_KEY), json!("app_mention"));
    assert_eq!(eval(slack_defaults::DEDUP_KEY), json!("Ev9"));
    assert_eq!(
        eval(slack_defaults::PAYLOAD),
        json!({ "type": "app_mention" })
    );
}

// disconnect and the rest

#[test]
fn routine_disconnects_refresh() {
    let cases = [
        (
            json!({ "type": "disconnect", "reason": "warning" }),
            "warning",
        ),
        (
            json!({ "type": "disconnect", "reason": "refresh_requested",
                 "debug_info": { "host": "h" } }),
            "refresh_requested",
        ),
        (
            json!({ "type": "disconnect", "reason": "brand_new" }),
            "brand_new",
        ),
        (json!({ "type": "disconnect" }), "unspecified"),
        (json!({ "type": "disconnect", "reason": "" }), "unspecified"),
        (json!({ "type": "disconnect", "reason": 5 }), "unspecified"),
    ];
    for (frame, reason) in cases {
        let mut session = ready_session();
        assert_eq!(
            one(&mut session, frame),
            SlackAction::Refresh {
                reason: reason.to_owned()
            }
        );
        assert!(session.is_ready());
    }
    let long = json!({ "type": "disconnect", "reason": "r".repeat(1000) });
    let SlackAction::Refresh { reason } = one(&mut ready_session(), long) else {
        panic!("not a refresh");
    };
    assert_eq!(reason.len(), 64);
}

#[test]
fn link_disabled_is_terminal() {
    let frame = json!({ "type": "disconnect", "reason": "link_disabled" });
    for mut session in [SlackSession::new(), ready_session()] {
        assert_eq!(
            one(&mut session, frame.clone()),
            SlackAction::Failed {
                class: FailureClass::Terminal {
                    reason: "Socket Mode disabled for the app".to_owned()
                },
                detail: "Socket Mode disabled for the app".to_owned(),
            }
        );
    }
}

#[test]
fn too_many_websockets_is_throttled_for_thirty_seconds() {
    let frame = json!({ "type": "disconnect", "reason": "too_many_websockets" });
    let SlackAction::Failed { class, detail } = one(&mut ready_session(), frame) else {
        panic!("not a failure");
    };
    assert_eq!(
        class,
        FailureClass::Throttled {
            min_delay: 30 * SEC
        }
    );
    assert!(detail.contains("too_many_websockets"), "{detail}");
}

#[test]
fn other_frames_are_counted_never_fatal() {
    let mut session = ready_session();
    let cases = [
        ("", SlackCounter::NonJson),
        ("not json", SlackCounter::NonJson),
        ("{\"type\":", SlackCounter::NonJson),
        ("[1, 2]", SlackCounter::NonObject),
        ("\"hello\"", SlackCounter::NonObject),
        ("null", SlackCounter::NonObject),
        ("42", SlackCounter::NonObject),
        ("{}", SlackCounter::Unknown),
        (r#"{"type":"pong"}"#, SlackCounter::Unknown),
        (r#"{"type":5}"#, SlackCounter::Unknown),
        (r#"{"payload":{"event":{}}}"#, SlackCounter::Unknown),
    ];
    for (text, counter) in cases {
        assert_eq!(
            session.on_text(text),
            vec![SlackAction::Count(counter)],
            "{text}"
        );
    }
    assert!(session.is_ready());
}

// the open budget

#[test]
fn budget_allows_a_burst_of_two_then_one_a_second() {
    let mut budget = OpenBudget::default();
    let now = Instant::now();
    let waits: Vec<Duration> = (0..5).map(|_| budget.reserve(now)).collect();
    assert_eq!(
        waits,
        [Duration::ZERO, Duration::ZERO, SEC, 2 * SEC, 3 * SEC]
    );
    let mut idle = OpenBudget::default();
    idle.reserve(now);
    idle.reserve(now);
    assert_eq!(idle.reserve(now + 10 * SEC), Duration::ZERO);
    assert_eq!(idle.reserve(now + 10 * SEC), Duration::ZERO);
    assert_eq!(idle.reserve(now + 10 * SEC), SEC);
}

#[test]
fn budget_spacing_holds_for_callers_that_wait() {
    for (interval, burst) in [(SEC, 2), (SEC / 4, 1), (SEC, 5)] {
        let mut budget = OpenBudget::new(interval, burst);
        let start = Instant::now();
        let mut now = start;
        let mut calls = Vec::new();
        for step in 0..40u32 {
            now += Duration::from_millis(u64::from(step % 7) * 90);
            calls.push(now + budget.reserve(now));
        }
        calls.sort();
        // Any window of k intervals holds at most `burst + k - 1` calls.
        for k in [1u32, 2, 5] {
            let window = interval * k;
            for (n, call) in calls.iter().enumerate() {
                let in_window = calls[n..]
                    .iter()
                    .take_while(|c| **c < *call + window)
                    .count();
                let most = (burst + k - 1) as usize;
                assert!(in_window <= most, "{interval:?} {burst} {k}: {in_window}");
            }
        }
    }
}

#[test]
fn no_call_before_retry_after() {
    let mut budget = OpenBudget::default();
    let now = Instant::now();
    assert_eq!(budget.reserve(now), Duration::ZERO);
    budget.on_rate_limited(now, 2 * SEC);
    assert_eq!(budget.held_for(now), 2 * SEC);
    assert_eq!(budget.held_for(now + SEC), SEC);
    assert_eq!(budget.held_for(now + 3 * SEC), Duration::ZERO);
    // Every connection waits the hold out, then the calls are spaced without a burst.
    let waits: Vec<Duration> = (0..3).map(|_| budget.reserve(now)).collect();
    assert_eq!(waits, [2 * SEC, 3 * SEC, 4 * SEC]);
    // A shorter Retry-After later never shortens the hold.
    let mut held = OpenBudget::default();
    held.on_rate_limited(now, 10 * SEC);
    held.on_rate_limited(now + SEC, SEC);
    assert_eq!(held.held_for(now), 10 * SEC);
    assert!(held.reserve(now + SEC) >= 9 * SEC);
}

#[test]
fn rate_limit_after_reservations_is_checked_with_held_for() {
    let mut budget = OpenBudget::default();
    let now = Instant::now();
    let first = budget.reserve(now);
    let second = budget.reserve(now);
    assert_eq!((first, second), (Duration::ZERO, Duration::ZERO));
    budget.on_rate_limited(now, 5 * SEC);
    // The second connection wakes after its wait, sees the hold and books again.
    assert_eq!(budget.held_for(now + second), 5 * SEC);
    assert!(budget.reserve(now + second) >= 5 * SEC);
    for offset in 0..20 {
        let at = now + SEC * offset / 2;
        assert!(at + budget.reserve(at) >= now + 5 * SEC);
    }
}

#[test]
fn budget_survives_extreme_values() {
    let now = Instant::now();
    let mut budget = OpenBudget::new(Duration::MAX, u32::MAX);
    budget.reserve(now);
    budget.reserve(now);
    budget.on_rate_limited(now, Duration::MAX);
    assert!(budget.held_for(now) > 1000 * SEC);
    assert!(budget.reserve(now) > 1000 * SEC);
    let mut zero = OpenBudget::new(Duration::ZERO, 0);
    assert_eq!(zero.reserve(now), Duration::ZERO);
    assert_eq!(zero.reserve(now), Duration::ZERO);
}

// proactive refresh, ghosts, the adapter

#[test]
fn proactive_refresh_at_ninety_percent() {
    assert_eq!(proactive_refresh_after(None), None);
    assert_eq!(proactive_refresh_after(Some(Duration::ZERO)), None);
    assert_eq!(proactive_refresh_after(Some(100 * SEC)), Some(90 * SEC));
    assert_eq!(
        proactive_refresh_after(Some(18060 * SEC)),
        Some(16254 * SEC)
    );
    assert!(proactive_refresh_after(Some(Duration::MAX)).is_some());
}

#[test]
fn ghost_warning_when_slack_counts_more_connections() {
    assert_eq!(ghost_warning(2, 1), None);
    assert_eq!(ghost_warning(2, 2), None);
    let warning = ghost_warning(2, 3).unwrap();
    assert!(warning.contains('3') && warning.contains('2'), "{warning}");
    assert!(ghost_warning(10, u32::MAX).is_some());
    assert_eq!(ghost_warning(10, 10), None);
}

#[test]
fn adapter_builds_requests_and_hides_the_token() {
    let a = adapter(
        json!({ "debug_reconnects": true, "proactive_refresh": true }),
        Some(TOKEN),
    )
    .unwrap();
    assert_eq!(a.connections(), 2);
    let spec = a.open_request();
    assert_eq!(spec.url, "http://127.0.0.1:9/api/apps.connections.open");
    assert_eq!(spec.headers[0].1, format!("Bearer {TOKEN}"));
    assert_eq!(
        a.connect_url(&opened()),
        format!("{}&debug_reconnects=true", slack_url())
    );
    assert_eq!(a.refresh_after(Some(10 * SEC)), Some(9 * SEC));
    assert_eq!(a.ghost_warning(2), None);
    assert!(a.ghost_warning(3).is_some());
    assert!(!a.session().is_ready());
    assert_no_secrets(&format!("{a:?}"));
}

#[test]
fn adapter_defaults_and_limits() {
    let a = adapter(json!({ "connections": 0 }), Some(TOKEN)).unwrap();
    assert_eq!(a.connections(), 1);
    assert_eq!(a.connect_url(&opened()), slack_url());
    assert_eq!(a.refresh_after(Some(10 * SEC)), None);
    assert_eq!(
        adapter(json!({ "connections": 50 }), Some(TOKEN))
            .unwrap()
            .connections(),
        10
    );
    assert_eq!(
        adapter(json!({}), None),
        Err(SlackAdapterError::MissingAppToken)
    );
    assert_eq!(
        adapter(json!({}), Some("")),
        Err(SlackAdapterError::MissingAppToken)
    );
}

#[test]
fn the_shared_open_budget_is_keyed_by_the_app_never_by_the_token() {
    let slack = adapter(json!({}), Some("xapp-1-A0123ABC-5678-abcdefsecret")).unwrap();
    assert_eq!(slack.app_key(), "app:A0123ABC");
    let odd = adapter(json!({}), Some("xapp-not-a-usual-token-secretvalue")).unwrap();
    let key = odd.app_key();
    assert!(!key.contains("secret"), "{key}");
    let other = adapter(json!({}), Some("zzzz-token-of-another-shape")).unwrap();
    assert!(other.app_key().starts_with("sha256:"));
    assert_ne!(other.app_key(), odd.app_key());
}
