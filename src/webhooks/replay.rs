//! The replay guard of a signed webhook delivery: what recognises a captured delivery sent again
//! where its dedup key would not. Pure.

use super::verifier::Verifier;

/// What recognises a captured signed delivery sent again, where its dedup key would not: with no
/// timestamp signed (GitHub, `hmac` without one), the body's hash, for good; with a timestamp but
/// no dedup key at all (`hmac` without `dedup_key_expr`), the hash of the signed timestamp and
/// body (a replay inside the tolerance is the same delivery; a body sent again later is new).
/// `None` for an insecure webhook or where the dedup key does it.
pub fn replay_guard(
    insecure: bool,
    dedup_key_expr: Option<&str>,
    verifier: &Verifier,
    headers: &[(String, String)],
    body: &[u8],
) -> Option<String> {
    if insecure {
        return None;
    }
    if !verifier.signs_timestamp() {
        return Some(replay_key(None, body));
    }
    let keyless = dedup_key_expr.is_none() && super::inbound::default_exprs(verifier).2.is_none();
    let Verifier::Hmac {
        timestamp_header: Some(name),
        ..
    } = verifier
    else {
        return None;
    };
    let name = name.to_ascii_lowercase();
    let stamp = headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str());
    keyless.then(|| replay_key(stamp, body))
}

/// The hash of a delivery's body (after its signed timestamp, when there is one).
fn replay_key(stamp: Option<&str>, body: &[u8]) -> String {
    use sha2::{Digest as _, Sha256};
    let mut hash = Sha256::new();
    if let Some(stamp) = stamp {
        hash.update(stamp.as_bytes());
        hash.update(b".");
    }
    hash.update(body);
    format!("sha256:{}", hex::encode(hash.finalize()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn hmac(timestamp_header: Option<&str>) -> Verifier {
        serde_json::from_value(serde_json::json!({
            "preset": "hmac", "header": "x-signature", "timestamp_header": timestamp_header,
        }))
        .unwrap()
    }

    #[test]
    fn guards_what_the_dedup_key_does_not() {
        let headers = vec![("x-timestamp".to_owned(), "100".to_owned())];
        let later = vec![("x-timestamp".to_owned(), "200".to_owned())];
        let github = Verifier::Github {};
        assert_eq!(
            replay_guard(false, None, &github, &[], b"b"),
            replay_guard(false, None, &github, &headers, b"b")
        );
        assert_eq!(
            replay_guard(true, None, &github, &[], b"b"),
            None,
            "insecure: nothing to guard"
        );
        let stamped = hmac(Some("X-Timestamp"));
        let first = replay_guard(false, None, &stamped, &headers, b"b");
        assert!(first.is_some());
        assert_eq!(
            first,
            replay_guard(false, None, &stamped, &headers, b"b"),
            "a replay"
        );
        assert_ne!(
            first,
            replay_guard(false, None, &stamped, &later, b"b"),
            "sent again later"
        );
        assert_eq!(
            replay_guard(false, Some("body.id"), &stamped, &headers, b"b"),
            None,
            "the dedup key guards"
        );
        assert!(replay_guard(false, None, &hmac(None), &[], b"b").is_some());
        let stripe: Verifier =
            serde_json::from_value(serde_json::json!({"preset": "stripe"})).unwrap();
        assert_eq!(
            replay_guard(false, None, &stripe, &headers, b"b"),
            None,
            "Stripe's event id guards"
        );
    }
}
