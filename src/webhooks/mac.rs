//! The pieces verification and signing share: rendering a signed-content template, decoding
//! signatures and timestamps, the freshness check and the HMAC itself. Pure.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha512};

use super::verifier::{Algorithm, Encoding};
use super::verify_error::VerifyError;

/// Standard-alphabet base64 that accepts signatures with or without padding.
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Splits a signed-content template into pieces, substituting `{body}` and (when given)
/// `{timestamp}`; everything else, including an unfilled `{timestamp}`, stays literal.
pub(super) fn render<'a>(
    template: &'a str,
    timestamp: Option<&'a str>,
    body: &'a [u8],
) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(at) = rest.find('{') {
        let (literal, tail) = rest.split_at(at);
        parts.push(literal.as_bytes());
        if let Some(after) = tail.strip_prefix("{body}") {
            parts.push(body);
            rest = after;
        } else if let (Some(after), Some(ts)) = (tail.strip_prefix("{timestamp}"), timestamp) {
            parts.push(ts.as_bytes());
            rest = after;
        } else {
            parts.push(b"{");
            rest = tail.strip_prefix('{').unwrap_or_default();
        }
    }
    parts.push(rest.as_bytes());
    parts
}

/// Strips `prefix` (ASCII case-insensitive) and decodes the rest.
pub(super) fn decode_prefixed(
    value: &str,
    prefix: &str,
    encoding: Encoding,
) -> Result<Vec<u8>, VerifyError> {
    let rest = value
        .get(..prefix.len())
        .filter(|head| head.eq_ignore_ascii_case(prefix))
        .and_then(|_| value.get(prefix.len()..))
        .ok_or_else(|| VerifyError::Malformed(format!("expected the `{prefix}` prefix")))?;
    decode(encoding, rest.trim()).ok_or_else(|| {
        let what = match encoding {
            Encoding::Hex => "hex",
            Encoding::Base64 => "base64",
        };
        VerifyError::Malformed(format!("signature is not {what}"))
    })
}

/// Decodes a signature; empty or undecodable → `None`. Hex accepts either case.
pub(super) fn decode(encoding: Encoding, text: &str) -> Option<Vec<u8>> {
    let bytes = match encoding {
        Encoding::Hex => hex::decode(text).ok(),
        Encoding::Base64 => BASE64_LENIENT.decode(text).ok(),
    };
    bytes.filter(|b| !b.is_empty())
}

/// Parses a unix timestamp in seconds: optional `-` then ASCII digits; values beyond `i64`
/// saturate (and are then stale) instead of being rejected as malformed.
pub(super) fn parse_timestamp(text: &str) -> Result<i64, VerifyError> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VerifyError::Malformed(format!(
            "timestamp `{}` is not a unix time",
            text.chars().take(32).collect::<String>()
        )));
    }
    let saturated = if text.starts_with('-') {
        i64::MIN
    } else {
        i64::MAX
    };
    Ok(text.parse().unwrap_or(saturated))
}

/// `Stale` unless `|timestamp − now| ≤ tolerance_s` (inclusive at both ends).
pub(super) fn check_fresh(
    timestamp: i64,
    now_unix: i64,
    tolerance_s: u32,
) -> Result<(), VerifyError> {
    let skew_s = timestamp.saturating_sub(now_unix);
    if skew_s.unsigned_abs() > u64::from(tolerance_s) {
        return Err(VerifyError::Stale {
            tolerance_s,
            skew_s,
        });
    }
    Ok(())
}

/// HMAC of the concatenated `parts`; `None` only if the key is refused (never for HMAC).
pub(super) fn compute_mac(algorithm: Algorithm, key: &[u8], parts: &[&[u8]]) -> Option<Vec<u8>> {
    match algorithm {
        Algorithm::Sha256 => mac_of::<Hmac<Sha256>>(key, parts),
        Algorithm::Sha512 => mac_of::<Hmac<Sha512>>(key, parts),
        Algorithm::Sha1 => mac_of::<Hmac<Sha1>>(key, parts),
    }
}

/// HMAC with `M` of the concatenated `parts`.
fn mac_of<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Option<Vec<u8>> {
    let mut mac = <M as KeyInit>::new_from_slice(key).ok()?;
    for part in parts {
        mac.update(part);
    }
    Some(mac.finalize().into_bytes().to_vec())
}
