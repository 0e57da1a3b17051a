#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::actors::publisher::Published;
use crate::sources::status::{SourceState, StatusSnapshot};

fn subscribe(text: serde_json::Value) -> Subscription {
    match parse(&text.to_string()).unwrap() {
        ClientMessage::Subscribe(s) => s,
        other => panic!("not a subscribe: {other:?}"),
    }
}

fn refusal(text: &str) -> Refusal {
    parse(text).expect_err("refused")
}

#[test]
fn parses_the_three_message_types() {
    let sub = subscribe(
        json!({"type": "subscribe", "id": "a", "topics": ["event.received", "run.created", "event.received"],
        "filter": "source == 'orders'", "source": "orders"}),
    );
    assert_eq!(sub.id, "a");
    assert_eq!(sub.topics, vec![Topic::EventReceived, Topic::RunCreated]);
    assert_eq!(sub.filter.unwrap().as_str(), "source == 'orders'");
    assert_eq!(sub.source.as_deref(), Some("orders"));
    assert!(matches!(
        parse(r#"{"type":"unsubscribe","id":"a"}"#).unwrap(),
        ClientMessage::Unsubscribe { id } if id == "a"
    ));
    assert!(matches!(
        parse(r#"{"type":"ping"}"#).unwrap(),
        ClientMessage::Ping
    ));
}

#[test]
fn refusals_name_the_problem_and_echo_the_id() {
    assert!(refusal("{nope").detail.starts_with("invalid JSON"));
    assert_eq!(refusal("[1]").detail, "a message must be a JSON object");
    assert_eq!(refusal(r#"{"id":"x"}"#).detail, "missing `type`");
    let unknown = refusal(r#"{"type":"shout","id":"x"}"#);
    assert!(unknown.detail.contains("unknown type `shout`"));
    assert_eq!(unknown.id.as_deref(), Some("x"));
    let topic = refusal(r#"{"type":"subscribe","id":"s1","topics":["event.recieved"]}"#);
    assert!(
        topic.detail.contains("unknown topic `event.recieved`"),
        "{topic:?}"
    );
    assert!(topic.detail.contains("run.created"));
    assert_eq!(topic.id.as_deref(), Some("s1"));
    let filter =
        refusal(r#"{"type":"subscribe","id":"s2","topics":["run.created"],"filter":"a ||"}"#);
    assert!(filter.detail.starts_with("filter: syntax"), "{filter:?}");
    assert!(filter.detail.contains("position"), "{filter:?}");
    let function =
        refusal(r#"{"type":"subscribe","id":"s3","topics":["run.created"],"filter":"nope(a)"}"#);
    assert!(
        function.detail.starts_with("filter: unknown-function"),
        "{function:?}"
    );
    let field = refusal(r#"{"type":"subscribe","id":"s4","topics":["run.created"],"extra":1}"#);
    assert!(field.detail.contains("unknown field `extra`"), "{field:?}");
    assert!(
        refusal(r#"{"type":"subscribe","id":"s5","topics":[]}"#)
            .detail
            .starts_with("topics:")
    );
    assert!(
        refusal(r#"{"type":"subscribe","id":"","topics":["run.created"]}"#)
            .detail
            .starts_with("id:")
    );
    assert!(
        refusal(r#"{"type":"subscribe","id":"s6","topics":["run.created"],"source":"Not A Slug"}"#)
            .detail
            .starts_with("source:")
    );
    assert!(
        refusal(r#"{"type":"subscribe","topics":["run.created"]}"#)
            .detail
            .contains("missing field `id`")
    );
    assert!(
        refusal(r#"{"type":"ping","x":1}"#)
            .detail
            .contains("unknown field")
    );
    let big = format!(
        r#"{{"type":"ping","pad":"{}"}}"#,
        "x".repeat(MAX_MESSAGE_BYTES)
    );
    assert!(refusal(&big).detail.contains("larger than 65536 bytes"));
}

#[test]
fn refusal_frames_carry_the_id_only_when_known() {
    let with: serde_json::Value =
        serde_json::from_str(&Refusal::new("bad", Some("a")).frame()).unwrap();
    assert_eq!(with, json!({"type": "error", "detail": "bad", "id": "a"}));
    let without: serde_json::Value =
        serde_json::from_str(&Refusal::new("bad", None).frame()).unwrap();
    assert_eq!(without, json!({"type": "error", "detail": "bad"}));
}

#[test]
fn subscriptions_refuse_duplicates_and_more_than_the_maximum() {
    let mut subs = Subscriptions::default();
    for i in 0..MAX_SUBSCRIPTIONS {
        let sub = subscribe(
            json!({"type": "subscribe", "id": format!("s{i}"), "topics": ["run.created"]}),
        );
        subs.add(sub).unwrap();
    }
    let dup = subscribe(json!({"type": "subscribe", "id": "s0", "topics": ["run.created"]}));
    assert!(subs.add(dup).unwrap_err().detail.contains("exists"));
    let extra = subscribe(json!({"type": "subscribe", "id": "more", "topics": ["run.created"]}));
    let refused = subs.add(extra).unwrap_err();
    assert!(refused.detail.contains("too many subscriptions"));
    assert_eq!(refused.id.as_deref(), Some("more"));
    assert_eq!(subs.len(), MAX_SUBSCRIPTIONS);
    subs.remove("s3").unwrap();
    assert!(
        subs.remove("s3")
            .unwrap_err()
            .detail
            .contains("no subscription")
    );
    assert_eq!(subs.len(), MAX_SUBSCRIPTIONS - 1);
}

#[test]
fn matching_applies_topic_source_and_filter() {
    let mut subs = Subscriptions::default();
    for sub in [
        json!({"type": "subscribe", "id": "all", "topics": ["event.received"]}),
        json!({"type": "subscribe", "id": "orders", "topics": ["event.received"], "source": "orders"}),
        json!({"type": "subscribe", "id": "big", "topics": ["event.received"], "filter": "starts_with(event_key, 'order.')"}),
        json!({"type": "subscribe", "id": "broken", "topics": ["event.received"], "filter": "length(event_key)"}),
        json!({"type": "subscribe", "id": "runs", "topics": ["run.created"]}),
    ] {
        subs.add(subscribe(sub)).unwrap();
    }
    let order = json!({"event_key": "order.created"});
    assert_eq!(
        subs.matching(Topic::EventReceived, "orders", &order).ids,
        vec!["all", "orders", "big", "broken"]
    );
    let user = json!({"event_key": "user.created"});
    assert_eq!(
        subs.matching(Topic::EventReceived, "users", &user).ids,
        vec!["all", "broken"]
    );
    // A filter that fails at run time (length of null) matches nothing.
    let none = json!({"event_key": null});
    assert_eq!(
        subs.matching(Topic::EventReceived, "users", &none).ids,
        vec!["all"]
    );
    assert!(subs.wants(Topic::RunCreated, "x"));
    assert!(!subs.wants(Topic::SourceStatus, "x"));
}

#[test]
fn routes_and_data_of_every_published_message() {
    let org = Uuid::now_v7();
    let event = Uuid::now_v7();
    let run = Published::RunCreated {
        org_id: org,
        run_id: Uuid::now_v7(),
        automation_id: Uuid::now_v7(),
        event_id: event,
        event_payload: Arc::new(json!({"source": "orders", "event_key": "order.created"})),
    };
    assert_eq!(route(&run), (Topic::RunCreated, org, "orders"));
    assert_eq!(data(&run)["event_payload"]["event_key"], "order.created");
    assert_eq!(data(&run)["status"], "PENDING");

    let received = Published::EventReceived {
        org_id: org,
        event_id: None,
        origin: "websocket",
        source: "orders".into(),
        event_key: Some("k".into()),
        status: "received".into(),
        duplicate: true,
        received_at: Utc::now(),
    };
    assert_eq!(route(&received), (Topic::EventReceived, org, "orders"));
    let d = data(&received);
    assert_eq!(d["dedup"], "duplicate");
    assert!(d["event_id"].is_null());

    let dispatched = Published::EventDispatched {
        org_id: org,
        event_id: event,
        source: "orders".into(),
        event_key: None,
        outcome: json!([{"result": "matched"}]),
    };
    assert_eq!(route(&dispatched), (Topic::EventDispatched, org, "orders"));
    assert_eq!(data(&dispatched)["outcome"][0]["result"], "matched");

    let frame: serde_json::Value = serde_json::from_str(&message_frame(
        Topic::EventDispatched,
        "s",
        &json!({}),
        Utc::now(),
    ))
    .unwrap();
    assert_eq!(frame["type"], "event.dispatched");
    assert_eq!(frame["subscription"], "s");
    assert!(
        chrono::DateTime::parse_from_rfc3339(frame["at"].as_str().unwrap()).is_ok(),
        "{frame}"
    );
}

#[test]
fn live_status_has_the_rest_shape() {
    let snapshot = StatusSnapshot {
        source_id: Uuid::now_v7(),
        state: SourceState::Backoff,
        detail: Some("refused".into()),
        connected_at: None,
        last_event_at: Some(Utc::now()),
        next_retry_at: Some(Utc::now()),
        consecutive_failures: 3,
        counters: json!({"frames": 2}),
        connections: None,
    };
    let message = Published::source_status(Uuid::now_v7(), "feed", &snapshot);
    let rest = serde_json::to_value(crate::api::sources::shapes::StatusOut::from(
        snapshot.clone(),
    ))
    .unwrap();
    assert_eq!(data(&message)["status"], rest);
    assert_eq!(data(&message)["source_id"], json!(snapshot.source_id));
    assert_eq!(data(&message)["source"], "feed");
}

#[test]
fn fragments_are_joined_under_the_limit() {
    let mut joined = Reassembly::default();
    assert!(joined.finish(b"stray").is_none());
    joined.start(true, br#"{"type":"#);
    joined.push(br#""pi"#);
    assert_eq!(
        joined.finish(br#"ng"}"#).unwrap().unwrap(),
        r#"{"type":"ping"}"#
    );
    joined.start(false, b"\x01");
    assert!(
        joined
            .finish(b"")
            .unwrap()
            .unwrap_err()
            .detail
            .contains("binary")
    );
    joined.start(true, &[b'x'; MAX_MESSAGE_BYTES]);
    joined.push(b"y");
    let refused = joined.finish(b"").unwrap().unwrap_err();
    assert!(refused.detail.contains("larger than"), "{refused:?}");
    joined.start(true, &[0xff, 0xfe]);
    assert!(
        joined
            .finish(b"")
            .unwrap()
            .unwrap_err()
            .detail
            .contains("UTF-8")
    );
}
