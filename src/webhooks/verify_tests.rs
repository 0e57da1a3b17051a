//! Known-answer and rejection tests for webhook signature verification. The hard-coded expected
//! signatures were cross-checked independently with Python's `hmac`/`hashlib`/`base64`.

use chrono::DateTime;
use proptest::prelude::*;

use super::*;
use crate::webhooks::sign::{sign_github, sign_hmac, sign_slack, sign_standard, sign_stripe};

const NOW: i64 = 1_700_000_000;

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

fn secrets(current: &str) -> WebhookSecrets {
    WebhookSecrets {
        current: current.to_owned(),
        previous: None,
        previous_expires_at: None,
    }
}

fn rotated(current: &str, previous: &str, expires_unix: i64) -> WebhookSecrets {
    WebhookSecrets {
        current: current.to_owned(),
        previous: Some(previous.to_owned()),
        previous_expires_at: DateTime::from_timestamp(expires_unix, 0),
    }
}

fn run(
    verifier: &Verifier,
    secrets: &WebhookSecrets,
    pairs: &[(&str, &str)],
    body: &[u8],
    now_unix: i64,
) -> Result<VerifiedWith, VerifyError> {
    let headers = headers(pairs);
    let request = SignedRequest {
        headers: &headers,
        body,
        now_unix,
    };
    verify(verifier, secrets, &request)
}

fn malformed(result: Result<VerifiedWith, VerifyError>) -> bool {
    matches!(result, Err(VerifyError::Malformed(_)))
}

// ---------------------------------------------------------------- github

const GH_SECRET: &str = "It's a Secret to Everybody";
const GH_BODY: &[u8] = b"Hello, World!";
const GH_SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

fn github(secret: &str, signature: &str, body: &[u8]) -> Result<VerifiedWith, VerifyError> {
    let pairs = [("x-hub-signature-256", signature)];
    run(&Verifier::Github {}, &secrets(secret), &pairs, body, NOW)
}

#[test]
fn github_documented_example() {
    assert_eq!(sign_github(GH_SECRET, GH_BODY), GH_SIG);
    assert_eq!(
        github(GH_SECRET, GH_SIG, GH_BODY),
        Ok(VerifiedWith::Current)
    );
}

#[test]
fn github_hex_is_case_insensitive_and_header_name_too() {
    let upper = format!("sha256={}", GH_SIG["sha256=".len()..].to_uppercase());
    assert_eq!(
        github(GH_SECRET, &upper, GH_BODY),
        Ok(VerifiedWith::Current)
    );
    let pairs = [("X-Hub-Signature-256", GH_SIG)];
    let got = run(
        &Verifier::Github {},
        &secrets(GH_SECRET),
        &pairs,
        GH_BODY,
        NOW,
    );
    assert_eq!(got, Ok(VerifiedWith::Current));
}

#[test]
fn github_rejects_tampered_body_and_wrong_secret() {
    assert_eq!(
        github(GH_SECRET, GH_SIG, b"Hello, World?"),
        Err(VerifyError::BadSignature)
    );
    assert_eq!(
        github("It's a Secret to Nobody", GH_SIG, GH_BODY),
        Err(VerifyError::BadSignature)
    );
    // Well-formed hex of the wrong length.
    assert_eq!(
        github(GH_SECRET, "sha256=abcd", GH_BODY),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn github_missing_and_malformed() {
    let got = run(&Verifier::Github {}, &secrets(GH_SECRET), &[], GH_BODY, NOW);
    assert_eq!(
        got,
        Err(VerifyError::MissingHeader("x-hub-signature-256".into()))
    );
    for bad in [
        "sha256=zz",
        "",
        "   ",
        "sha256=",
        "sha1=abcd",
        "757107ea",
        "sha256=abc",
    ] {
        assert!(malformed(github(GH_SECRET, bad, GH_BODY)), "{bad:?}");
    }
}

// ---------------------------------------------------------------- slack

const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const SLACK_TS: i64 = 1_531_420_618;
const SLACK_BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const SLACK_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

fn slack(signature: &str, timestamp: &str, now: i64) -> Result<VerifiedWith, VerifyError> {
    let verifier = Verifier::Slack { tolerance_s: 300 };
    let pairs = [
        ("x-slack-signature", signature),
        ("x-slack-request-timestamp", timestamp),
    ];
    run(&verifier, &secrets(SLACK_SECRET), &pairs, SLACK_BODY, now)
}

#[test]
fn slack_documented_example() {
    assert_eq!(sign_slack(SLACK_SECRET, SLACK_TS, SLACK_BODY), SLACK_SIG);
    let ts = SLACK_TS.to_string();
    assert_eq!(slack(SLACK_SIG, &ts, SLACK_TS), Ok(VerifiedWith::Current));
}

#[test]
fn slack_tolerance_past_and_future() {
    let ts = SLACK_TS.to_string();
    assert_eq!(
        slack(SLACK_SIG, &ts, SLACK_TS + 300),
        Ok(VerifiedWith::Current)
    );
    assert_eq!(
        slack(SLACK_SIG, &ts, SLACK_TS + 301),
        Err(VerifyError::Stale {
            tolerance_s: 300,
            skew_s: -301
        })
    );
    assert_eq!(
        slack(SLACK_SIG, &ts, SLACK_TS - 300),
        Ok(VerifiedWith::Current)
    );
    assert_eq!(
        slack(SLACK_SIG, &ts, SLACK_TS - 301),
        Err(VerifyError::Stale {
            tolerance_s: 300,
            skew_s: 301
        })
    );
}

#[test]
fn slack_custom_tolerance() {
    let verifier = Verifier::Slack { tolerance_s: 5 };
    let ts = SLACK_TS.to_string();
    let pairs = [
        ("x-slack-signature", SLACK_SIG),
        ("x-slack-request-timestamp", ts.as_str()),
    ];
    let s = secrets(SLACK_SECRET);
    assert!(run(&verifier, &s, &pairs, SLACK_BODY, SLACK_TS + 5).is_ok());
    assert!(matches!(
        run(&verifier, &s, &pairs, SLACK_BODY, SLACK_TS + 6),
        Err(VerifyError::Stale { tolerance_s: 5, .. })
    ));
}

#[test]
fn slack_rejects_tampered_body_and_wrong_timestamp() {
    let verifier = Verifier::Slack { tolerance_s: 300 };
    let ts = SLACK_TS.to_string();
    let pairs = [
        ("x-slack-signature", SLACK_SIG),
        ("x-slack-request-timestamp", ts.as_str()),
    ];
    let s = secrets(SLACK_SECRET);
    let got = run(&verifier, &s, &pairs, b"token=other", SLACK_TS);
    assert_eq!(got, Err(VerifyError::BadSignature));
    // The timestamp is signed: shifting it by one second breaks the signature.
    let shifted = (SLACK_TS + 1).to_string();
    assert_eq!(
        slack(SLACK_SIG, &shifted, SLACK_TS),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn slack_missing_and_malformed() {
    let verifier = Verifier::Slack { tolerance_s: 300 };
    let s = secrets(SLACK_SECRET);
    let only_sig = [("x-slack-signature", SLACK_SIG)];
    assert_eq!(
        run(&verifier, &s, &only_sig, SLACK_BODY, SLACK_TS),
        Err(VerifyError::MissingHeader(
            "x-slack-request-timestamp".into()
        ))
    );
    let only_ts = [("x-slack-request-timestamp", "1531420618")];
    assert_eq!(
        run(&verifier, &s, &only_ts, SLACK_BODY, SLACK_TS),
        Err(VerifyError::MissingHeader("x-slack-signature".into()))
    );
    let ts = SLACK_TS.to_string();
    assert!(malformed(slack(SLACK_SIG, "abc", SLACK_TS)));
    assert!(malformed(slack(SLACK_SIG, "", SLACK_TS)));
    assert!(malformed(slack(SLACK_SIG, "+1531420618", SLACK_TS)));
    assert!(malformed(slack("v0=zz", &ts, SLACK_TS)));
    assert!(malformed(slack("v1=abcd", &ts, SLACK_TS)));
}

#[test]
fn huge_and_negative_timestamps_are_stale_without_overflow() {
    let got = slack(SLACK_SIG, "99999999999999999999999999", SLACK_TS);
    assert_eq!(
        got,
        Err(VerifyError::Stale {
            tolerance_s: 300,
            skew_s: i64::MAX - SLACK_TS
        })
    );
    let got = slack(SLACK_SIG, "-99999999999999999999999999", SLACK_TS);
    assert_eq!(
        got,
        Err(VerifyError::Stale {
            tolerance_s: 300,
            skew_s: i64::MIN
        })
    );
    assert!(matches!(
        slack(SLACK_SIG, "-5", SLACK_TS),
        Err(VerifyError::Stale { .. })
    ));
    assert!(matches!(
        slack(SLACK_SIG, &i64::MAX.to_string(), i64::MIN),
        Err(VerifyError::Stale {
            skew_s: i64::MAX,
            ..
        })
    ));
}

// ---------------------------------------------------------------- stripe

const STRIPE_SECRET: &str = "whsec_test_secret";
const STRIPE_BODY: &[u8] = br#"{"id":"evt_1","type":"invoice.paid"}"#;
/// HMAC-SHA256(STRIPE_SECRET, "1700000000." + STRIPE_BODY), from Python.
const STRIPE_V1: &str = "46dc069361a7691082640523fa33fe5d6c8c88d5f5e257cdf8cf11539d166595";
const OTHER_V1: &str = "5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd";

fn stripe(header: &str, body: &[u8], now: i64) -> Result<VerifiedWith, VerifyError> {
    let verifier = Verifier::Stripe { tolerance_s: 300 };
    let pairs = [("stripe-signature", header)];
    run(&verifier, &secrets(STRIPE_SECRET), &pairs, body, now)
}

fn stripe_ok(header: &str) -> bool {
    stripe(header, STRIPE_BODY, NOW) == Ok(VerifiedWith::Current)
}

#[test]
fn stripe_known_answer() {
    let header = format!("t={NOW},v1={STRIPE_V1}");
    assert_eq!(sign_stripe(STRIPE_SECRET, NOW, STRIPE_BODY), header);
    assert!(stripe_ok(&header));
}

#[test]
fn stripe_any_v1_may_match_and_v0_is_ignored() {
    // Stripe's documented shape: t, two v1 (only the second matches), then a v0.
    let header = format!("t={NOW},v1={OTHER_V1},v1={STRIPE_V1},v0={OTHER_V1}");
    assert!(stripe_ok(&header));
    let spaced = format!("t={NOW}, v1={OTHER_V1}, v1={STRIPE_V1}");
    assert!(stripe_ok(&spaced));
    // An undecodable v1 next to a good one is skipped.
    assert!(stripe_ok(&format!("t={NOW},v1=zz,v1={STRIPE_V1}")));
    // Only the v0 matching is not enough.
    let v0_only = format!("t={NOW},v1={OTHER_V1},v0={STRIPE_V1}");
    assert_eq!(
        stripe(&v0_only, STRIPE_BODY, NOW),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn stripe_rejects_tampered_body_and_wrong_secret() {
    let header = format!("t={NOW},v1={STRIPE_V1}");
    assert_eq!(stripe(&header, b"{}", NOW), Err(VerifyError::BadSignature));
    let verifier = Verifier::Stripe { tolerance_s: 300 };
    let pairs = [("stripe-signature", header.as_str())];
    let got = run(&verifier, &secrets("whsec_other"), &pairs, STRIPE_BODY, NOW);
    assert_eq!(got, Err(VerifyError::BadSignature));
}

#[test]
fn stripe_tolerance() {
    let header = format!("t={NOW},v1={STRIPE_V1}");
    assert!(stripe(&header, STRIPE_BODY, NOW + 300).is_ok());
    assert!(stripe(&header, STRIPE_BODY, NOW - 300).is_ok());
    assert_eq!(
        stripe(&header, STRIPE_BODY, NOW + 301),
        Err(VerifyError::Stale {
            tolerance_s: 300,
            skew_s: -301
        })
    );
    assert_eq!(
        stripe(&header, STRIPE_BODY, NOW - 301),
        Err(VerifyError::Stale {
            tolerance_s: 300,
            skew_s: 301
        })
    );
}

#[test]
fn stripe_missing_and_malformed() {
    let verifier = Verifier::Stripe { tolerance_s: 300 };
    assert_eq!(
        run(&verifier, &secrets(STRIPE_SECRET), &[], STRIPE_BODY, NOW),
        Err(VerifyError::MissingHeader("stripe-signature".into()))
    );
    let bad = [
        String::new(),
        format!("t=abc,v1={STRIPE_V1}"),
        format!("v1={STRIPE_V1}"),
        format!("t={NOW}"),
        format!("t={NOW},v0={STRIPE_V1}"),
        format!("t={NOW},v1=zz"),
        format!("t={NOW},t={NOW},v1={STRIPE_V1}"),
        ",,,=,".to_owned(),
    ];
    for header in &bad {
        assert!(malformed(stripe(header, STRIPE_BODY, NOW)), "{header:?}");
    }
}

// ---------------------------------------------------------------- standard webhooks

/// The Standard Webhooks specification's example.
const STD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const STD_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const STD_TS: i64 = 1_614_265_330;
const STD_BODY: &[u8] = br#"{"test": 2432232314}"#;
const STD_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

fn standard(secret: &str, signature: &str, now: i64) -> Result<VerifiedWith, VerifyError> {
    let ts = STD_TS.to_string();
    let pairs = [
        ("webhook-id", STD_ID),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", signature),
    ];
    let verifier = Verifier::Standard { tolerance_s: 300 };
    run(&verifier, &secrets(secret), &pairs, STD_BODY, now)
}

#[test]
fn standard_specification_example() {
    assert_eq!(sign_standard(STD_SECRET, STD_ID, STD_TS, STD_BODY), STD_SIG);
    assert_eq!(
        standard(STD_SECRET, STD_SIG, STD_TS),
        Ok(VerifiedWith::Current)
    );
}

#[test]
fn standard_multiple_signatures() {
    let list = format!("v1,Zm9vYmFy v1a,AAAA v2,{} {STD_SIG}", &STD_SIG[3..]);
    assert_eq!(
        standard(STD_SECRET, &list, STD_TS),
        Ok(VerifiedWith::Current)
    );
    let unpadded = STD_SIG.trim_end_matches('=');
    assert_eq!(
        standard(STD_SECRET, unpadded, STD_TS),
        Ok(VerifiedWith::Current)
    );
    // The right MAC under a non-v1 label does not count.
    let relabelled = format!("v1,Zm9vYmFy v1a,{}", &STD_SIG[3..]);
    assert_eq!(
        standard(STD_SECRET, &relabelled, STD_TS),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn standard_rejects_tampered_wrong_secret_and_stale() {
    let verifier = Verifier::Standard { tolerance_s: 300 };
    let ts = STD_TS.to_string();
    let pairs = [
        ("webhook-id", "msg_other"),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", STD_SIG),
    ];
    let got = run(&verifier, &secrets(STD_SECRET), &pairs, STD_BODY, STD_TS);
    assert_eq!(got, Err(VerifyError::BadSignature));
    let wrong = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    assert_eq!(
        standard(wrong, STD_SIG, STD_TS),
        Err(VerifyError::BadSignature)
    );
    // A secret that is not whsec_<base64> never verifies.
    assert_eq!(
        standard("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", STD_SIG, STD_TS),
        Err(VerifyError::BadSignature)
    );
    assert!(standard(STD_SECRET, STD_SIG, STD_TS + 300).is_ok());
    assert!(standard(STD_SECRET, STD_SIG, STD_TS - 300).is_ok());
    assert!(matches!(
        standard(STD_SECRET, STD_SIG, STD_TS + 301),
        Err(VerifyError::Stale { skew_s: -301, .. })
    ));
    assert!(matches!(
        standard(STD_SECRET, STD_SIG, STD_TS - 301),
        Err(VerifyError::Stale { skew_s: 301, .. })
    ));
}

#[test]
fn standard_missing_and_malformed() {
    let verifier = Verifier::Standard { tolerance_s: 300 };
    let s = secrets(STD_SECRET);
    let ts = STD_TS.to_string();
    let all = [
        ("webhook-id", STD_ID),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", STD_SIG),
    ];
    for skip in 0..all.len() {
        let pairs: Vec<_> = (0..all.len())
            .filter(|i| *i != skip)
            .map(|i| all[i])
            .collect();
        let got = run(&verifier, &s, &pairs, STD_BODY, STD_TS);
        assert_eq!(got, Err(VerifyError::MissingHeader(all[skip].0.into())));
    }
    for bad in [
        "",
        "v1a,AAAA",
        "v1,",
        "v1,!!!!",
        "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    ] {
        assert!(malformed(standard(STD_SECRET, bad, STD_TS)), "{bad:?}");
    }
}

// ---------------------------------------------------------------- hmac preset

fn hmac_verifier(
    algorithm: Algorithm,
    encoding: Encoding,
    prefix: Option<&str>,
    timestamp_header: Option<&str>,
    signed_content: Option<&str>,
) -> Verifier {
    Verifier::Hmac {
        header: "X-Signature".into(),
        algorithm,
        encoding,
        prefix: prefix.map(str::to_owned),
        timestamp_header: timestamp_header.map(str::to_owned),
        signed_content: signed_content.map(str::to_owned),
        tolerance_s: 300,
    }
}

const HMAC_BODY: &[u8] = br#"{"type":"order.created"}"#;
/// Base64 HMAC-SHA512("shared-secret-1", "1700000000:" + HMAC_BODY), from Python.
const HMAC_512: &str = "sha512=yhsyYxzQ5c5s1jJaFapfAABd7B+qFTmt9vPsGSpXaAZu1rhEBxjgzmsrKyFHexjHv7UJF+1IGQn4zAmi5nejLA==";

fn sha512_verifier() -> Verifier {
    hmac_verifier(
        Algorithm::Sha512,
        Encoding::Base64,
        Some("sha512="),
        Some("X-Timestamp"),
        Some("{timestamp}:{body}"),
    )
}

fn sha512(signature: &str, timestamp: &str, now: i64) -> Result<VerifiedWith, VerifyError> {
    let pairs = [("x-signature", signature), ("x-timestamp", timestamp)];
    let s = secrets("shared-secret-1");
    run(&sha512_verifier(), &s, &pairs, HMAC_BODY, now)
}

#[test]
fn hmac_sha512_base64_prefix_timestamp_template() {
    let verifier = sha512_verifier();
    let signed = sign_hmac(&verifier, "shared-secret-1", Some(NOW), HMAC_BODY);
    assert_eq!(signed.as_deref(), Some(HMAC_512));
    let ts = NOW.to_string();
    assert_eq!(sha512(HMAC_512, &ts, NOW), Ok(VerifiedWith::Current));
    assert_eq!(
        sha512(HMAC_512.trim_end_matches('='), &ts, NOW),
        Ok(VerifiedWith::Current)
    );
    assert_eq!(
        sha512(&HMAC_512.replace("sha512=", "SHA512="), &ts, NOW),
        Ok(VerifiedWith::Current)
    );
    let later = (NOW + 1).to_string();
    assert_eq!(
        sha512(HMAC_512, &later, NOW),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn hmac_timestamp_tolerance_and_headers() {
    let ts = NOW.to_string();
    assert!(sha512(HMAC_512, &ts, NOW + 300).is_ok());
    assert!(sha512(HMAC_512, &ts, NOW - 300).is_ok());
    assert!(matches!(
        sha512(HMAC_512, &ts, NOW + 301),
        Err(VerifyError::Stale { skew_s: -301, .. })
    ));
    assert!(matches!(
        sha512(HMAC_512, &ts, NOW - 301),
        Err(VerifyError::Stale { skew_s: 301, .. })
    ));
    let s = secrets("shared-secret-1");
    let got = run(
        &sha512_verifier(),
        &s,
        &[("x-signature", HMAC_512)],
        HMAC_BODY,
        NOW,
    );
    assert_eq!(got, Err(VerifyError::MissingHeader("x-timestamp".into())));
    let got = run(
        &sha512_verifier(),
        &s,
        &[("x-timestamp", &ts)],
        HMAC_BODY,
        NOW,
    );
    assert_eq!(got, Err(VerifyError::MissingHeader("x-signature".into())));
    assert!(malformed(sha512(HMAC_512, "soon", NOW)));
    assert!(malformed(sha512(&HMAC_512[7..], &ts, NOW)));
    assert!(malformed(sha512("sha512=***", &ts, NOW)));
    assert!(malformed(sha512("é", &ts, NOW)));
}

/// Hex HMAC-SHA1("legacy-secret", HMAC1_BODY), from Python.
const HMAC1_BODY: &[u8] = br#"{"type":"ping"}"#;
const HMAC1_SIG: &str = "cff52e6b8eaef2601cfca576cbb2dd0648b9a68a";

#[test]
fn hmac_sha1_hex_default_template() {
    let verifier = hmac_verifier(Algorithm::Sha1, Encoding::Hex, None, None, None);
    let signed = sign_hmac(&verifier, "legacy-secret", None, HMAC1_BODY);
    assert_eq!(signed.as_deref(), Some(HMAC1_SIG));
    // A timestamp is ignored when the preset signs none.
    let signed = sign_hmac(&verifier, "legacy-secret", Some(NOW), HMAC1_BODY);
    assert_eq!(signed.as_deref(), Some(HMAC1_SIG));
    let s = secrets("legacy-secret");
    let upper = HMAC1_SIG.to_uppercase();
    for sig in [HMAC1_SIG, upper.as_str()] {
        let got = run(&verifier, &s, &[("x-signature", sig)], HMAC1_BODY, NOW);
        assert_eq!(got, Ok(VerifiedWith::Current));
    }
    let got = run(&verifier, &s, &[("x-signature", HMAC1_SIG)], b"{}", NOW);
    assert_eq!(got, Err(VerifyError::BadSignature));
    let got = run(
        &verifier,
        &secrets("other"),
        &[("x-signature", HMAC1_SIG)],
        HMAC1_BODY,
        NOW,
    );
    assert_eq!(got, Err(VerifyError::BadSignature));
}

#[test]
fn hmac_sha256_round_trip_with_literal_braces() {
    let verifier = hmac_verifier(
        Algorithm::Sha256,
        Encoding::Hex,
        Some("v1="),
        Some("x-ts"),
        Some("{id}{timestamp}.{body}{"),
    );
    let signed = sign_hmac(&verifier, "k3y-k3y-k3y", Some(NOW), b"abc");
    let signed = signed.unwrap_or_default();
    assert!(signed.starts_with("v1="));
    let ts = NOW.to_string();
    let pairs = [("x-signature", signed.as_str()), ("x-ts", ts.as_str())];
    let got = run(&verifier, &secrets("k3y-k3y-k3y"), &pairs, b"abc", NOW);
    assert_eq!(got, Ok(VerifiedWith::Current));
    let parts = render("{id}{timestamp}.{body}{", Some("7"), b"abc");
    assert_eq!(parts.concat(), b"{id}7.abc{");
    assert_eq!(
        render("{timestamp}:{body}", None, b"x").concat(),
        b"{timestamp}:x"
    );
}

#[test]
fn hmac_template_must_cover_the_body() {
    let verifier = hmac_verifier(
        Algorithm::Sha256,
        Encoding::Hex,
        None,
        Some("x-ts"),
        Some("{timestamp}"),
    );
    let ts = NOW.to_string();
    let signed = sign_hmac(&verifier, "secret-secret", Some(NOW), b"").unwrap_or_default();
    let pairs = [("x-signature", signed.as_str()), ("x-ts", ts.as_str())];
    let got = run(
        &verifier,
        &secrets("secret-secret"),
        &pairs,
        b"anything",
        NOW,
    );
    assert!(malformed(got));
}

#[test]
fn sign_hmac_needs_the_hmac_preset_and_its_timestamp() {
    assert_eq!(sign_hmac(&Verifier::Github {}, "secret", None, b""), None);
    assert_eq!(
        sign_hmac(&sha512_verifier(), "shared-secret-1", None, HMAC_BODY),
        None
    );
}

// ---------------------------------------------------------------- rotation

#[test]
fn previous_secret_verifies_during_grace_only() {
    let body = GH_BODY;
    let pairs = [("x-hub-signature-256", GH_SIG)];
    let expires = NOW + 86_400;
    let s = rotated("brand-new-secret", GH_SECRET, expires);
    let at = |now| run(&Verifier::Github {}, &s, &pairs, body, now);
    assert_eq!(at(NOW), Ok(VerifiedWith::Previous));
    assert_eq!(at(expires - 1), Ok(VerifiedWith::Previous));
    assert_eq!(at(expires), Err(VerifyError::BadSignature));
    assert_eq!(at(expires + 1), Err(VerifyError::BadSignature));
    // The current secret verifies throughout and is reported as such.
    let s = rotated(GH_SECRET, "old-secret", expires);
    let got = run(&Verifier::Github {}, &s, &pairs, body, NOW);
    assert_eq!(got, Ok(VerifiedWith::Current));
    // A previous secret without an expiry has no grace period.
    let mut s = rotated("brand-new-secret", GH_SECRET, expires);
    s.previous_expires_at = None;
    let got = run(&Verifier::Github {}, &s, &pairs, body, NOW);
    assert_eq!(got, Err(VerifyError::BadSignature));
}

#[test]
fn rotation_applies_to_timestamped_presets() {
    let header = sign_stripe("old-stripe-secret", NOW, STRIPE_BODY);
    let verifier = Verifier::Stripe { tolerance_s: 300 };
    let pairs = [("stripe-signature", header.as_str())];
    let s = rotated("new-stripe-secret", "old-stripe-secret", NOW + 10);
    let got = run(&verifier, &s, &pairs, STRIPE_BODY, NOW);
    assert_eq!(got, Ok(VerifiedWith::Previous));
    let got = run(&verifier, &s, &pairs, STRIPE_BODY, NOW + 10);
    assert_eq!(got, Err(VerifyError::BadSignature));
}

// ---------------------------------------------------------------- robustness

fn all_presets() -> Vec<Verifier> {
    vec![
        Verifier::Github {},
        Verifier::Slack { tolerance_s: 300 },
        Verifier::Stripe { tolerance_s: 300 },
        Verifier::Standard { tolerance_s: 300 },
        sha512_verifier(),
        hmac_verifier(Algorithm::Sha1, Encoding::Hex, Some("é="), None, None),
    ]
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_headers(value in ".{0,80}", ts in ".{0,30}", now in any::<i64>()) {
        let names = [
            "x-hub-signature-256", "x-slack-signature", "stripe-signature", "webhook-signature",
            "x-signature",
        ];
        let mut pairs: Vec<(&str, &str)> = names.iter().map(|n| (*n, value.as_str())).collect();
        pairs.extend([
            ("x-slack-request-timestamp", ts.as_str()),
            ("webhook-timestamp", ts.as_str()),
            ("x-timestamp", ts.as_str()),
            ("webhook-id", "msg"),
        ]);
        let s = rotated(STD_SECRET, "whsec_", now);
        for verifier in all_presets() {
            let _ = run(&verifier, &s, &pairs, b"body", now);
        }
    }
}
