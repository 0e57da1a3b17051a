#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use hmac::{Hmac, Mac};
use proptest::prelude::*;
use serde_json::{Value as Json, json};
use sha2::Sha256;

use super::*;
use crate::pipeline::expr::{Limits, to_value};
use crate::sources::validate::placeholders;

const URL: &str = "wss://feed.example.com/ws";

/// Settings from `extra` merged over a minimal generic configuration.
fn settings(extra: Json) -> GenericSettings {
    let mut config = json!({ "url": URL });
    config
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value(config).unwrap()
}

fn secrets(values: &[(&str, &str)]) -> SourceSecrets {
    SourceSecrets {
        values: values
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..SourceSecrets::default()
    }
}

fn adapter(extra: Json) -> GenericAdapter {
    GenericAdapter::new(&settings(extra), &SourceSecrets::default()).unwrap()
}

fn msg(raw: Json) -> Action {
    Action::Message {
        value: to_value(&raw),
        raw,
    }
}

const NON_JSON: Action = Action::Count(Counter::NonJson);
const HANDSHAKE: Action = Action::Count(Counter::Handshake);
const EXPR_ERROR: Action = Action::Count(Counter::ExpressionError);

#[test]
fn message_framing_takes_one_document_per_frame() {
    let a = adapter(json!({}));
    let mut s = a.session();
    assert!(s.is_ready());
    assert!(!a.needs_ready_frame());
    assert_eq!(s.on_text(&a, r#"{"a": 1}"#), vec![msg(json!({"a": 1}))]);
    assert_eq!(s.on_text(&a, "[1, 2]"), vec![msg(json!([1, 2]))]);
    assert_eq!(s.on_text(&a, "{\"a\": 1}\n{\"a\": 2}"), vec![NON_JSON]);
    assert_eq!(s.on_text(&a, "not json"), vec![NON_JSON]);
    assert_eq!(s.on_text(&a, ""), vec![NON_JSON]);
}

#[test]
fn ndjson_framing_splits_lines_and_skips_blank_ones() {
    let a = adapter(json!({"framing": "ndjson"}));
    let mut s = a.session();
    let frame = "{\"n\": 1}\n\n   \n{bad\r\n{\"n\": 2}\r\n\"text\"\n";
    assert_eq!(
        s.on_text(&a, frame),
        vec![
            msg(json!({"n": 1})),
            NON_JSON,
            msg(json!({"n": 2})),
            msg(json!("text"))
        ]
    );
    assert_eq!(s.on_text(&a, "\n \n"), vec![]);
}

#[test]
fn json_array_framing_takes_each_element() {
    let a = adapter(json!({"framing": "json_array"}));
    let mut s = a.session();
    assert_eq!(
        s.on_text(&a, r#"[{"n": 1}, 2, null]"#),
        vec![msg(json!({"n": 1})), msg(json!(2)), msg(json!(null))]
    );
    assert_eq!(s.on_text(&a, r#"{"n": 3}"#), vec![msg(json!({"n": 3}))]);
    assert_eq!(s.on_text(&a, "[]"), vec![]);
    assert_eq!(s.on_text(&a, "[1, "), vec![NON_JSON]);
}

#[test]
fn ready_gates_messages_and_counts_handshake_frames() {
    let a = adapter(json!({"ready_expr": "type == 'auth_ok'", "ready_timeout_s": 7}));
    assert!(a.needs_ready_frame());
    assert_eq!(a.ready_timeout(), Duration::from_secs(7));
    let mut s = a.session();
    assert!(!s.is_ready());
    assert_eq!(s.on_text(&a, r#"{"type": "hello"}"#), vec![HANDSHAKE]);
    assert_eq!(s.on_text(&a, "nope"), vec![NON_JSON]);
    assert!(!s.is_ready());
    assert_eq!(s.on_text(&a, r#"{"type": "auth_ok"}"#), vec![Action::Ready]);
    assert!(s.is_ready());
    assert_eq!(
        s.on_text(&a, r#"{"type": "auth_ok"}"#),
        vec![msg(json!({"type": "auth_ok"}))]
    );
    assert!(!a.session().is_ready(), "every connection starts unready");
}

#[test]
fn ready_can_arrive_mid_frame() {
    let a = adapter(json!({"framing": "json_array", "ready_expr": "ok"}));
    let mut s = a.session();
    assert_eq!(
        s.on_text(&a, r#"[{"ok": false}, {"ok": true}, {"e": 1}]"#),
        vec![HANDSHAKE, Action::Ready, msg(json!({"e": 1}))]
    );
}

#[test]
fn expression_errors_are_counted_and_do_not_match() {
    let a = adapter(json!({"ready_expr": "abs(x)", "fail_expr": "abs(y)"}));
    let mut s = a.session();
    assert_eq!(
        s.on_text(&a, r#"{"x": "s", "y": "s"}"#),
        vec![EXPR_ERROR, EXPR_ERROR, HANDSHAKE]
    );
    assert_eq!(
        s.on_text(&a, r#"{"x": 1, "y": "s"}"#),
        vec![EXPR_ERROR, Action::Ready]
    );
    assert_eq!(
        s.on_text(&a, r#"{"y": "s"}"#),
        vec![EXPR_ERROR, msg(json!({"y": "s"}))]
    );
}

#[test]
fn fail_expr_stops_the_frame_before_ready() {
    let a = adapter(json!({
        "framing": "ndjson",
        "ready_expr": "type == 'auth_ok'",
        "fail_expr": "type == 'auth_invalid'",
    }));
    let mut s = a.session();
    let actions = s.on_text(
        &a,
        "{\"type\": \"auth_required\"}\n{\"type\": \"auth_invalid\", \"msg\": \"pw=hunter2\"}\n{\"type\": \"auth_ok\"}",
    );
    let [first, Action::Fail { reason }] = actions.as_slice() else {
        panic!("{actions:?}");
    };
    assert_eq!(*first, HANDSHAKE);
    assert!(reason.contains("type == 'auth_invalid'"), "{reason}");
    assert!(!reason.contains("hunter2"), "{reason}");
    assert!(!s.is_ready());
}

#[test]
fn fail_expr_is_checked_after_ready_too() {
    let a = adapter(json!({
        "framing": "json_array",
        "ready_expr": "type == 'auth_ok'",
        "fail_expr": "type == 'auth_invalid'",
    }));
    let mut s = a.session();
    let frame = r#"[{"type": "auth_ok"}, {"type": "e"}, {"type": "auth_invalid"}, {"type": "e2"}]"#;
    let actions = s.on_text(&a, frame);
    assert_eq!(actions.len(), 3, "{actions:?}");
    assert_eq!(actions[..2], [Action::Ready, msg(json!({"type": "e"}))]);
    assert!(matches!(&actions[2], Action::Fail { .. }));
    let long = "type == 'x' || ".repeat(20) + "type == 'auth_invalid'";
    let a = adapter(json!({ "fail_expr": long }));
    let actions = a.session().on_text(&a, r#"{"type": "auth_invalid"}"#);
    let [Action::Fail { reason }] = actions.as_slice() else {
        panic!("{actions:?}");
    };
    assert!(
        reason.chars().count() < 160 && reason.contains('…'),
        "{reason}"
    );
}

#[test]
fn binary_frames_are_counted_or_wrapped_in_base64() {
    let a = adapter(json!({}));
    assert_eq!(
        a.session().on_binary(&a, &[0, 1, 2, 255]),
        vec![Action::Count(Counter::Binary)]
    );
    let a = adapter(json!({"binary": "base64", "framing": "ndjson"}));
    assert_eq!(
        a.session().on_binary(&a, &[0, 1, 2, 255]),
        vec![msg(json!({"binary": "AAEC/w=="}))]
    );
    let a = adapter(json!({"binary": "base64", "ready_expr": "ready"}));
    let mut s = a.session();
    assert_eq!(s.on_binary(&a, b"hi"), vec![HANDSHAKE]);
    assert_eq!(s.on_text(&a, r#"{"ready": 1}"#), vec![Action::Ready]);
    assert_eq!(s.on_binary(&a, b""), vec![msg(json!({"binary": ""}))]);
}

#[test]
fn ack_frames_follow_the_result_type() {
    let message = to_value(&json!({"id": 7, "kind": "ev", "text": "done"}));
    let ack =
        |expr: &str| adapter(json!({ "ack_expr": expr })).ack_frame(&message, Limits::default());
    let object: Json =
        serde_json::from_str(&ack("{type: 'ack', id: id}").unwrap().unwrap()).unwrap();
    assert_eq!(object, json!({"type": "ack", "id": 7}));
    assert_eq!(ack("text").unwrap().as_deref(), Some("done"));
    assert_eq!(ack("[id]").unwrap().as_deref(), Some("[7]"));
    assert_eq!(ack("id").unwrap().as_deref(), Some("7"));
    assert_eq!(ack("missing").unwrap(), None);
    assert!(ack("abs(kind)").unwrap_err().contains("position"));
    assert_eq!(
        adapter(json!({}))
            .ack_frame(&message, Limits::default())
            .unwrap(),
        None
    );
}

#[test]
fn ack_frame_uses_the_value_from_the_message_action() {
    let a = adapter(json!({"ack_expr": "{ack: envelope_id}"}));
    let actions = a.session().on_text(&a, r#"{"envelope_id": "e-1"}"#);
    let [Action::Message { value, .. }] = actions.as_slice() else {
        panic!("{actions:?}");
    };
    assert_eq!(
        a.ack_frame(value, Limits::default()).unwrap().as_deref(),
        Some(r#"{"ack":"e-1"}"#)
    );
}

#[test]
fn on_connect_fills_secrets_with_json_escaping() {
    let nasty = r#"p"a\ss\"w{o}rd\n"#;
    let s = settings(json!({"on_connect": [
        {"type": "auth", "token": "{{secret:token}}", "n": 1, "{{secret: key }}": ["x-{{secret:token}}-y"]},
        "AUTH {{secret:token}} {{secret:key}}",
        "no placeholders {{secret:unclosed",
    ]}));
    let a = GenericAdapter::new(
        &s,
        &secrets(&[("token", nasty), ("key", "k{{secret:token}}")]),
    )
    .unwrap();
    let [json_text, plain, untouched] = a.on_connect_messages() else {
        panic!("{:?}", a.on_connect_messages());
    };
    let parsed: Json = serde_json::from_str(json_text).unwrap();
    assert_eq!(parsed["token"], json!(nasty));
    assert_eq!(parsed["n"], json!(1));
    assert_eq!(
        parsed["k{{secret:token}}"],
        json!([format!("x-{nasty}-y")]),
        "keys are filled, secrets are not expanded again"
    );
    assert_eq!(*plain, format!("AUTH {nasty} k{{{{secret:token}}}}"));
    assert_eq!(untouched, "no placeholders {{secret:unclosed");
}

#[test]
fn unknown_secrets_and_bad_expressions_name_the_field() {
    let s = settings(json!({"on_connect": ["ok", {"t": "{{secret:missing}}"}]}));
    let err = GenericAdapter::new(&s, &secrets(&[("other", "v")])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "config.on_connect[1] refers to unknown secret `missing`"
    );
    let s = settings(json!({"app_ping": {"interval_s": 5, "message": "{{secret:gone}}"}}));
    let err = GenericAdapter::new(&s, &SourceSecrets::default()).unwrap_err();
    assert!(
        err.to_string().starts_with("config.app_ping.message"),
        "{err}"
    );
    let s =
        settings(json!({"upgrade_auth": {"type": "hmac_bearer", "key_id": "k", "secret": "nope"}}));
    let err = GenericAdapter::new(&s, &SourceSecrets::default()).unwrap_err();
    assert!(
        err.to_string().starts_with("config.upgrade_auth.secret"),
        "{err}"
    );
    for field in ["ready_expr", "fail_expr", "ack_expr"] {
        let s = settings(json!({ field: "a.[" }));
        let err = GenericAdapter::new(&s, &SourceSecrets::default()).unwrap_err();
        assert!(matches!(err, AdapterError::Expr { .. }), "{err}");
        assert!(
            err.to_string().starts_with(&format!("config.{field}: ")),
            "{err}"
        );
    }
}

#[test]
fn fill_reads_names_as_validation_does() {
    let text = "a {{secret: one }} b {{secret:two}}{{secret:}} {{secret:x";
    let values: BTreeMap<String, String> = placeholders(text)
        .into_iter()
        .map(|name| (name.to_owned(), format!("<{name}>")))
        .collect();
    assert_eq!(
        connect::fill(text, &values).unwrap(),
        "a <one> b <two><> {{secret:x"
    );
}

#[test]
fn app_ping_is_rendered_once() {
    let s = settings(
        json!({"app_ping": {"interval_s": 15, "message": {"op": "ping", "k": "{{secret:k}}"}}}),
    );
    let a = GenericAdapter::new(&s, &secrets(&[("k", "v\"")])).unwrap();
    let (every, text) = a.app_ping().unwrap();
    assert_eq!(every, Duration::from_secs(15));
    assert_eq!(
        serde_json::from_str::<Json>(text).unwrap(),
        json!({"op": "ping", "k": "v\""})
    );
    let a = adapter(json!({"app_ping": {"interval_s": 0, "message": "ping"}}));
    assert_eq!(a.app_ping(), Some((Duration::from_secs(1), "ping")));
    assert_eq!(adapter(json!({})).app_ping(), None);
}

#[test]
fn hmac_bearer_signs_key_id_and_timestamp() {
    let secret = "s3cr3t-\"key\"";
    let s = settings(json!({
        "subprotocols": ["v1.feed"],
        "upgrade_auth": {"type": "hmac_bearer", "key_id": "k1", "secret": "hmac"},
    }));
    let mut sec = secrets(&[("hmac", secret)]);
    sec.headers = BTreeMap::from([
        ("X-Api-Key".to_owned(), "hdr-value".to_owned()),
        ("authorization".to_owned(), "Basic old".to_owned()),
    ]);
    let a = GenericAdapter::new(&s, &sec).unwrap();
    let request = a.connect_request(1_700_000_000);
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(b"k1.1700000000");
    let expected = hex::encode(mac.finalize().into_bytes());
    // Computed independently: python3 hmac.new(secret, b"k1.1700000000", sha256).hexdigest().
    assert_eq!(
        expected,
        "703535c77b05dbc96dcb5b143c6351ca93e2d456eb00826d5efa55b681e19030"
    );
    assert_eq!(
        request.headers,
        vec![
            ("X-Api-Key".to_owned(), "hdr-value".to_owned()),
            (
                "Authorization".to_owned(),
                format!("Bearer k1.1700000000.{expected}")
            ),
        ]
    );
    assert_eq!(request.subprotocols, vec!["v1.feed".to_owned()]);
    assert_ne!(a.connect_request(1_700_000_001).headers, request.headers);
}

#[test]
fn headers_pass_through_without_upgrade_auth() {
    let mut sec = SourceSecrets::default();
    sec.headers
        .insert("Authorization".to_owned(), "Bearer static".to_owned());
    let a = GenericAdapter::new(&settings(json!({})), &sec).unwrap();
    let request = a.connect_request(0);
    assert_eq!(request.url, URL);
    assert_eq!(
        request.headers,
        vec![("Authorization".to_owned(), "Bearer static".to_owned())]
    );
    assert!(request.subprotocols.is_empty());
}

#[test]
fn secret_url_replaces_the_stored_url_and_urls_are_checked() {
    let full = "wss://user:pw@feed.example.com/ws?token=abc&room=1";
    let sec = SourceSecrets {
        url: Some(full.to_owned()),
        ..SourceSecrets::default()
    };
    let stored = settings(json!({"url": "wss://user:***@feed.example.com/ws?token=***&room=1"}));
    let a = GenericAdapter::new(&stored, &sec).unwrap();
    let request = a.connect_request(0);
    assert_eq!(request.url, "wss://feed.example.com/ws?token=abc&room=1");
    assert_eq!(
        request.headers,
        vec![("Authorization".to_owned(), "Basic dXNlcjpwdw==".to_owned())]
    );
    for bad in ["not a url", "https://feed.example.com/"] {
        let err = GenericAdapter::new(&settings(json!({ "url": bad })), &SourceSecrets::default())
            .unwrap_err();
        assert!(matches!(err, AdapterError::BadUrl(_)), "{err}");
        assert!(!err.to_string().contains(bad), "{err}");
    }
}

#[test]
fn user_info_is_sent_as_basic_auth_unless_authorization_is_configured() {
    let with_url = |url: &str, sec: SourceSecrets| {
        let sec = SourceSecrets {
            url: Some(url.to_owned()),
            ..sec
        };
        GenericAdapter::new(&settings(json!({})), &sec)
            .unwrap()
            .connect_request(0)
    };
    let token_only = with_url(
        "wss://sk_live_1@feed.example.com/ws",
        SourceSecrets::default(),
    );
    assert_eq!(token_only.url, URL);
    // "sk_live_1:" in base64.
    assert_eq!(
        token_only.headers,
        vec![(
            "Authorization".to_owned(),
            "Basic c2tfbGl2ZV8xOg==".to_owned()
        )]
    );
    // Percent-encoded user info is decoded first: "a b:p@ss".
    let encoded = with_url(
        "wss://a%20b:p%40ss@feed.example.com/ws",
        SourceSecrets::default(),
    );
    assert_eq!(encoded.headers[0].1, "Basic YSBiOnBAc3M=");
    let mut configured = SourceSecrets::default();
    configured
        .headers
        .insert("authorization".to_owned(), "Bearer mine".to_owned());
    let explicit = with_url("wss://u:p@feed.example.com/ws", configured);
    assert_eq!(explicit.url, URL);
    assert_eq!(
        explicit.headers,
        vec![("authorization".to_owned(), "Bearer mine".to_owned())]
    );
}

#[test]
fn debug_shows_no_secret() {
    let s = settings(json!({
        "url": "wss://feed.example.com/ws",
        "on_connect": [{"auth": "{{secret:token}}"}],
        "app_ping": {"interval_s": 5, "message": "{{secret:token}}"},
        "upgrade_auth": {"type": "hmac_bearer", "key_id": "kid", "secret": "hmac"},
        "ready_expr": "type == 'ok'",
    }));
    let mut sec = secrets(&[("token", "tok-SECRET-1"), ("hmac", "hmac-SECRET-2")]);
    sec.headers
        .insert("X-Api-Key".to_owned(), "hdr-SECRET-3".to_owned());
    sec.url =
        Some("wss://usr-SECRET-4:pw-SECRET-5@feed.example.com/ws?room=room-SECRET-6".to_owned());
    let a = GenericAdapter::new(&s, &sec).unwrap();
    let shown = format!("{a:?} {a:#?} {:?}", a.connect_request(1));
    assert!(!shown.contains("SECRET"), "{shown}");
    for visible in [
        "X-Api-Key",
        "Authorization",
        "feed.example.com/ws?***",
        "kid",
        "type == 'ok'",
    ] {
        assert!(shown.contains(visible), "{visible} missing from {shown}");
    }
}

proptest! {
    #[test]
    fn any_secret_round_trips_through_a_json_message(secret in any::<String>(), prefix in ".{0,8}") {
        let s = settings(json!({"on_connect": [{"t": format!("{prefix}{{{{secret:s}}}}")}]}));
        let a = GenericAdapter::new(&s, &secrets(&[("s", &secret)])).unwrap();
        let parsed: Json = serde_json::from_str(&a.on_connect_messages()[0]).unwrap();
        prop_assert_eq!(parsed, json!({"t": format!("{prefix}{secret}")}));
    }
}
