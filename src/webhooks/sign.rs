//! The header values a provider would send, for tests and docs (re-exported by
//! [`super::verify`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::mac::{compute_mac, render};
use super::verifier::{Algorithm, Encoding, Verifier, standard_secret_bytes};
use super::verify::HmacPreset;

/// Hex HMAC-SHA256 for the signing helpers.
fn hex_sha256(key: &[u8], parts: &[&[u8]]) -> String {
    compute_mac(Algorithm::Sha256, key, parts)
        .map(hex::encode)
        .unwrap_or_default()
}

/// The `X-Hub-Signature-256` value GitHub sends: `sha256=<hex>`.
pub fn sign_github(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hex_sha256(secret.as_bytes(), &[body]))
}

/// The `X-Slack-Signature` value Slack sends for `timestamp` (sent as
/// `X-Slack-Request-Timestamp`): `v0=<hex>`.
pub fn sign_slack(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let parts: [&[u8]; 4] = [b"v0:", ts.as_bytes(), b":", body];
    format!("v0={}", hex_sha256(secret.as_bytes(), &parts))
}

/// The `Stripe-Signature` value Stripe sends: `t=<ts>,v1=<hex>`.
pub fn sign_stripe(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let parts: [&[u8]; 3] = [ts.as_bytes(), b".", body];
    format!("t={ts},v1={}", hex_sha256(secret.as_bytes(), &parts))
}

/// The `webhook-signature` value of Standard Webhooks: `v1,<base64>`, keyed with the decoded
/// bytes of a `whsec_<base64>` secret (any other secret is used as raw bytes, and such a
/// signature never verifies).
pub fn sign_standard(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = standard_secret_bytes(secret).unwrap_or_else(|| secret.as_bytes().to_vec());
    let ts = timestamp.to_string();
    let parts: [&[u8]; 5] = [id.as_bytes(), b".", ts.as_bytes(), b".", body];
    let mac = compute_mac(Algorithm::Sha256, &key, &parts).unwrap_or_default();
    format!("v1,{}", STANDARD.encode(mac))
}

/// The signature header value for the `hmac` preset (prefix included, hex in lower case, base64
/// padded). `None` when `verifier` is another preset, or it signs a timestamp and none is given;
/// `timestamp` is ignored when no `timestamp_header` is configured.
pub fn sign_hmac(
    verifier: &Verifier,
    secret: &str,
    timestamp: Option<i64>,
    body: &[u8],
) -> Option<String> {
    let preset = HmacPreset::of(verifier)?;
    let ts = match preset.timestamp_header {
        Some(_) => Some(timestamp?.to_string()),
        None => None,
    };
    let parts = render(preset.template, ts.as_deref(), body);
    let mac = compute_mac(preset.algorithm, secret.as_bytes(), &parts)?;
    let encoded = match preset.encoding {
        Encoding::Hex => hex::encode(mac),
        Encoding::Base64 => STANDARD.encode(mac),
    };
    Some(format!("{}{encoded}", preset.prefix))
}
