//! Property-based fuzzing on stable Rust (proptest): every parser and adapter that takes bytes from
//! the network, over arbitrary bytes and over valid inputs structurally mutated. Each target must
//! never panic, must answer every rejection with a typed error, and expressions must stay inside
//! their evaluation budget (a result within its size limit, an evaluation that ends quickly).
//!
//! Cases per target: `FUZZ_CASES` (default 2,000, the short pass `scripts/test` runs). The long run
//! documented in `docs/reliability.md`:
//! `FUZZ_CASES=1000000 cargo test --release --test fuzz -- --test-threads=2`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use switchboard::pipeline::expr::{CompiledExpr, Limits, to_json_within, to_value};
use switchboard::pipeline::glob::{OnPatterns, glob_match};
use switchboard::sources::config::{GenericSettings, SourceSecrets};
use switchboard::sources::generic::GenericAdapter;
use switchboard::sources::reassembly::{Piece, Reassembler};
use switchboard::sources::slack::SlackSession;
use switchboard::webhooks::inbound::parse_body;
use switchboard::webhooks::sign::{sign_github, sign_hmac, sign_slack, sign_standard, sign_stripe};
use switchboard::webhooks::verifier::{Verifier, WebhookSecrets};
use switchboard::webhooks::verify::{SignedRequest, verify};

fn runner() -> TestRunner {
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000);
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Arbitrary JSON of bounded size, with strings that may hold NUL and odd unicode.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "\\PC{0,12}".prop_map(Value::String),
        "[a-z\u{0}\u{ffff}\"\\\\]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,6}", inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// `text` with a few bytes replaced, inserted or removed (structure-aware mutation of a valid
/// input).
fn mutated(text: String) -> impl Strategy<Value = Vec<u8>> {
    let len = text.len().max(1);
    prop::collection::vec((0..len, any::<u8>(), 0..3u8), 0..4).prop_map(move |edits| {
        let mut bytes = text.clone().into_bytes();
        for (at, byte, kind) in edits {
            let at = at.min(bytes.len());
            match kind {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => {}
            }
        }
        bytes
    })
}

/// Arbitrary bytes, or a valid document mutated.
fn frame_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        json_value().prop_flat_map(|v| mutated(v.to_string())),
        json_value().prop_map(|v| v.to_string().into_bytes()),
    ]
}

fn generic(framing: &str) -> GenericAdapter {
    let settings: GenericSettings = serde_json::from_value(json!({
        "url": "wss://feed.example.com/ws",
        "framing": framing,
        "ready_expr": "type == 'ready' || `true`",
        "fail_expr": "type == 'fatal'",
        "ack_expr": "{ack: id, n: length(@)}",
        "binary": "base64",
        "max_messages_per_frame": 50,
    }))
    .unwrap();
    GenericAdapter::new(&settings, &SourceSecrets::default()).unwrap()
}

#[test]
fn generic_frame_adapter_never_panics() {
    let adapters = [generic("message"), generic("ndjson"), generic("json_array")];
    runner()
        .run(
            &(frame_bytes(), 0..3usize, any::<bool>()),
            |(bytes, which, text)| {
                let adapter = &adapters[which];
                let mut session = adapter.session();
                let actions = match (text, std::str::from_utf8(&bytes)) {
                    (true, Ok(text)) => session.on_text(adapter, text),
                    _ => session.on_binary(adapter, &bytes),
                };
                prop_assert!(actions.len() <= 51 * 2);
                for action in actions {
                    if let switchboard::sources::generic::Action::Message { value, .. } = action {
                        let _ = adapter.ack_frame(&value, Limits::for_input(bytes.len()));
                    }
                }
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn ndjson_and_array_splitting_never_panics() {
    let adapters = [generic("ndjson"), generic("json_array")];
    let item = prop_oneof![
        any::<i64>().prop_map(|n| json!(n)),
        ("[a-z]{0,3}", any::<u8>()).prop_map(|(k, v)| json!({ k: v })),
        "[a-z\u{0}]{0,4}".prop_map(Value::String),
    ];
    let lines = prop::collection::vec(item, 0..60);
    runner()
        .run(&(lines, any::<bool>()), |(items, array)| {
            let (adapter, text) = if array {
                (&adapters[1], Value::Array(items.clone()).to_string())
            } else {
                let text: Vec<String> = items.iter().map(Value::to_string).collect();
                (&adapters[0], text.join("\n"))
            };
            let actions = adapter.session().on_text(adapter, &text);
            // Over the cap a frame is refused whole: one action, never a backlog.
            if items.len() > 50 {
                prop_assert_eq!(actions.len(), 1);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn slack_frame_adapter_never_panics() {
    let envelope = || {
        (json_value(), "[a-z0-9-]{0,8}").prop_map(|(payload, id)| {
            json!({"envelope_id": id, "type": "events_api", "payload": payload, "retry_attempt": 0})
                .to_string()
        })
    };
    let frames = prop_oneof![
        frame_bytes(),
        envelope().prop_map(String::into_bytes),
        envelope().prop_flat_map(mutated),
        Just(br#"{"type":"hello","num_connections":1}"#.to_vec()),
        Just(br#"{"type":"disconnect","reason":"refresh_requested"}"#.to_vec()),
    ];
    runner()
        .run(&prop::collection::vec(frames, 1..4), |frames| {
            let mut session = SlackSession::new();
            for frame in frames {
                let _ = session.on_text(&String::from_utf8_lossy(&frame));
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn continuation_reassembly_never_panics_and_respects_its_cap() {
    let piece = prop_oneof![
        (any::<bool>(), prop::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(t, b)| Piece::First(t, Bytes::from(b))),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| Piece::Continue(Bytes::from(b))),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| Piece::Last(Bytes::from(b))),
    ];
    runner()
        .run(&prop::collection::vec(piece, 0..20), |pieces| {
            let mut reassembler = Reassembler::new(100);
            for piece in pieces {
                if let Ok(Some((_, whole))) = reassembler.push(piece) {
                    prop_assert!(whole.len() <= 100);
                }
            }
            Ok(())
        })
        .unwrap();
}

fn verifiers() -> Vec<Verifier> {
    [
        json!({"preset": "github"}),
        json!({"preset": "slack"}),
        json!({"preset": "stripe"}),
        json!({"preset": "standard"}),
        json!({"preset": "hmac", "header": "x-sig", "encoding": "base64", "prefix": "v1=",
               "timestamp_header": "x-ts", "signed_content": "{timestamp}.{body}"}),
        json!({"preset": "hmac", "header": "x-sig", "algorithm": "sha512"}),
    ]
    .into_iter()
    .map(|v| serde_json::from_value(v).unwrap())
    .collect()
}

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The headers of a correctly signed delivery of `body` at `now` for `verifier`.
fn signed(verifier: &Verifier, body: &[u8], now: i64) -> Vec<(String, String)> {
    let h = |n: &str, v: String| (n.to_owned(), v);
    match verifier {
        Verifier::Github {} => vec![h("x-hub-signature-256", sign_github(SECRET, body))],
        Verifier::Slack { .. } => vec![
            h("x-slack-request-timestamp", now.to_string()),
            h("x-slack-signature", sign_slack(SECRET, now, body)),
        ],
        Verifier::Stripe { .. } => vec![h("stripe-signature", sign_stripe(SECRET, now, body))],
        Verifier::Standard { .. } => vec![
            h("webhook-id", "msg_1".into()),
            h("webhook-timestamp", now.to_string()),
            h(
                "webhook-signature",
                sign_standard(SECRET, "msg_1", now, body),
            ),
        ],
        Verifier::Hmac { .. } => vec![
            h("x-ts", now.to_string()),
            h(
                "x-sig",
                sign_hmac(verifier, SECRET, Some(now), body).unwrap(),
            ),
        ],
    }
}

#[test]
fn webhook_header_parsing_and_every_verifier_never_panic() {
    let verifiers = verifiers();
    let secrets = WebhookSecrets {
        current: SECRET.to_owned(),
        previous: None,
        previous_expires_at: None,
    };
    let header_names = prop::sample::select(vec![
        "x-hub-signature-256",
        "x-slack-signature",
        "x-slack-request-timestamp",
        "stripe-signature",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "svix-signature",
        "x-sig",
        "x-ts",
    ]);
    let headers = prop::collection::vec((header_names, "\\PC{0,40}|[0-9a-f=,v1t ]{0,80}"), 0..6);
    let body = prop::collection::vec(any::<u8>(), 0..128);
    runner()
        .run(
            &(0..6usize, headers, body, any::<bool>(), 0..64usize),
            |(which, headers, body, from_valid, flip)| {
                let verifier = &verifiers[which];
                let now = 1_700_000_000;
                let headers: Vec<(String, String)> = if from_valid {
                    signed(verifier, &body, now)
                } else {
                    headers
                        .into_iter()
                        .map(|(n, v)| (n.to_owned(), v))
                        .collect()
                };
                let request = SignedRequest {
                    headers: &headers,
                    body: &body,
                    now_unix: now,
                };
                let verdict = verify(verifier, &secrets, &request);
                if from_valid {
                    prop_assert!(
                        verdict.is_ok(),
                        "a correct signature was refused: {verdict:?}"
                    );
                    // Any change to the signed bytes is refused with a typed error.
                    let mut tampered = body.clone();
                    if tampered.is_empty() {
                        tampered.push(b'x');
                    } else {
                        let at = flip % tampered.len();
                        tampered[at] ^= 0x20;
                    }
                    let request = SignedRequest {
                        headers: &headers,
                        body: &tampered,
                        now_unix: now,
                    };
                    prop_assert!(verify(verifier, &secrets, &request).is_err());
                }
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn body_parsing_never_panics() {
    let content_type = prop::sample::select(vec![
        None,
        Some("application/json"),
        Some("application/x-www-form-urlencoded"),
        Some("application/vnd.api+json; charset=utf-8"),
        Some("text/plain"),
        Some(""),
    ]);
    let body = prop_oneof![
        frame_bytes(),
        "[a-z=&%+0-9]{0,60}".prop_map(String::into_bytes),
        json_value().prop_map(|v| format!("payload={}", v).into_bytes()),
    ];
    runner()
        .run(&(content_type, body), |(content_type, body)| {
            let _ = parse_body(content_type, &body);
            Ok(())
        })
        .unwrap();
}

/// Expressions built from JMESPath's pieces, nested a little: most parse, some blow up.
fn expression() -> impl Strategy<Value = String> {
    let atom = prop::sample::select(vec![
        "@",
        "a",
        "b.c",
        "[0]",
        "[-1]",
        "[*]",
        "[]",
        "*",
        "`1`",
        "`\"x\"`",
        "'s'",
        "[@,@]",
        "{k: @}",
        "a[?b > `1`]",
        "[1:3]",
        "[::-1]",
        "length(@)",
        "to_string(@)",
        "keys(@)",
        "sort_by(@, &a)",
        "map(&[@,@], @)",
        "max_by(@, &b)",
        "join(',', @)",
        "contains(@, 'x')",
        "regex(a, '[a-')",
        "glob(a, 'x*')",
        "lower(a)",
        "!a",
        "a || b",
        "a && b",
        "a == b",
    ])
    .prop_map(str::to_owned);
    atom.prop_recursive(4, 16, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} | {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("[{a}, {b}]")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a}.{b}")),
            inner.clone().prop_map(|a| format!("map(&{a}, @)")),
            inner.prop_map(|a| format!("({a})[]")),
        ]
    })
}

#[test]
fn expressions_compile_and_evaluate_within_their_budget() {
    let sources = prop_oneof![
        expression(),
        "\\PC{0,30}",
        expression().prop_flat_map(|e| {
            mutated(e).prop_map(|b| String::from_utf8_lossy(&b).into_owned())
        })
    ];
    runner()
        .run(&(sources, json_value()), |(source, data)| {
            let Ok(expr) = CompiledExpr::compile(&source) else {
                return Ok(());
            };
            let limits = Limits::default();
            let started = Instant::now();
            let value = to_value(&data);
            if let Ok(result) = expr.search_within(&value, limits)
                && let Ok(json) = to_json_within(&result, limits.result_bytes, 256)
            {
                // Rendered JSON never exceeds the limit by more than its estimate's slack.
                prop_assert!(json.to_string().len() <= 2 * limits.result_bytes);
            }
            prop_assert!(
                started.elapsed() < Duration::from_secs(5),
                "`{source}` ran for {:?}",
                started.elapsed()
            );
            Ok(())
        })
        .unwrap();
}

#[test]
fn glob_compile_never_panics() {
    let pattern = prop_oneof!["\\PC{0,20}", "[a-z*?\\[\\]!^\\\\-]{0,20}"];
    runner()
        .run(&(pattern, "\\PC{0,20}"), |(pattern, text)| {
            let _ = glob_match(&pattern, &text);
            let _ = OnPatterns::compile(&[pattern.as_str()]).map(|p| p.matches(&text));
            Ok(())
        })
        .unwrap();
}
