//! Signature verification for inbound webhooks, and the matching signing helpers.
//!
//! [`verify`] checks a request against a [`Verifier`] preset on the raw bytes, before anything is
//! parsed. Every preset runs the same three steps, and the first failing one decides the error:
//!
//! 1. read the headers it needs ([`VerifyError::MissingHeader`], [`VerifyError::Malformed`]);
//! 2. when a timestamp is signed, check it against the tolerance, both into the past and into the
//!    future ([`VerifyError::Stale`]) — before any MAC is computed, so replays are cheap to refuse;
//! 3. compute the HMAC with the current secret and, while its grace period lasts, the previous one,
//!    and compare the decoded MAC bytes in constant time with every signature the request carries
//!    ([`VerifyError::BadSignature`]).
//!
//! Header names are matched ASCII case-insensitively; when a header repeats, the first one counts.
//! Nothing here panics or overflows on hostile input: timestamps too large for an `i64` are
//! saturated (and so are stale), and undecodable signatures are reported as malformed.
//!
//! The `sign_*` helpers produce the header values a provider would send, for tests and docs.
//! Pure: no actix, awc or sea-orm.

use subtle::{Choice, ConstantTimeEq as _};

use super::mac::{check_fresh, compute_mac, decode, decode_prefixed, parse_timestamp, render};
use super::verifier::{Algorithm, Encoding, Verifier, WebhookSecrets, standard_secret_bytes};
pub use super::verify_error::VerifyError;

const GITHUB_SIGNATURE: &str = "x-hub-signature-256";
const SLACK_SIGNATURE: &str = "x-slack-signature";
const SLACK_TIMESTAMP: &str = "x-slack-request-timestamp";
const STRIPE_SIGNATURE: &str = "stripe-signature";
const STANDARD_ID: &str = "webhook-id";
const STANDARD_TIMESTAMP: &str = "webhook-timestamp";
const STANDARD_SIGNATURE: &str = "webhook-signature";
const DEFAULT_TEMPLATE: &str = "{body}";

/// The request facts verification needs (header names lower-case).
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// Request headers as `(name, value)` pairs, names lower-case.
    pub headers: &'a [(String, String)],
    /// The raw body, exactly as received.
    pub body: &'a [u8],
    /// The current time, in unix seconds.
    pub now_unix: i64,
}

impl<'a> SignedRequest<'a> {
    /// The first value of header `name` (matched ASCII case-insensitively).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        let headers: &'a [(String, String)] = self.headers;
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The trimmed value of a header the preset requires: missing → `MissingHeader`,
    /// blank → `Malformed`.
    fn required(&self, name: &str) -> Result<&'a str, VerifyError> {
        let value = self
            .header(name)
            .ok_or_else(|| VerifyError::MissingHeader(name.to_owned()))?
            .trim();
        if value.is_empty() {
            return Err(VerifyError::Malformed(format!("header `{name}` is empty")));
        }
        Ok(value)
    }
}

/// Which secret verified the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifiedWith {
    /// The webhook's current secret.
    Current,
    /// The previous secret, within its rotation grace period.
    Previous,
}

/// How a secret string becomes HMAC key bytes.
#[derive(Debug, Clone, Copy)]
enum KeyForm {
    /// The secret's UTF-8 bytes.
    Raw,
    /// `whsec_<base64>`: the decoded bytes (Standard Webhooks).
    Whsec,
}

/// A parsed request, ready for the MAC comparison.
struct Check<'a> {
    algorithm: Algorithm,
    key_form: KeyForm,
    /// The signed content, in pieces (the body is never copied).
    message: Vec<&'a [u8]>,
    /// Every decoded signature the request carries; any one may match.
    signatures: Vec<Vec<u8>>,
}

impl Check<'_> {
    /// Tries the current secret, then the previous one while its grace period lasts.
    fn against(
        &self,
        secrets: &WebhookSecrets,
        now_unix: i64,
    ) -> Result<VerifiedWith, VerifyError> {
        if self.matches(&secrets.current) {
            return Ok(VerifiedWith::Current);
        }
        let in_grace = secrets
            .previous_expires_at
            .is_some_and(|expires| expires.timestamp() > now_unix);
        match &secrets.previous {
            Some(previous) if in_grace && self.matches(previous) => Ok(VerifiedWith::Previous),
            _ => Err(VerifyError::BadSignature),
        }
    }

    /// Whether `secret` produces any of the signatures (constant time per signature, and every
    /// signature is compared).
    fn matches(&self, secret: &str) -> bool {
        let key = match self.key_form {
            KeyForm::Raw => secret.as_bytes().to_vec(),
            KeyForm::Whsec => match standard_secret_bytes(secret) {
                Some(bytes) => bytes,
                None => return false,
            },
        };
        let Some(expected) = compute_mac(self.algorithm, &key, &self.message) else {
            return false;
        };
        let found = self
            .signatures
            .iter()
            .fold(Choice::from(0), |acc, sig| acc | expected.ct_eq(sig));
        bool::from(found)
    }
}

/// Verifies in constant time against the current secret and, while its grace period lasts, the
/// previous one. Verification is on raw bytes, before any parsing.
///
/// The previous secret is tried only while `previous_expires_at` is later than
/// `request.now_unix`. See the module docs for the order of the checks.
pub fn verify(
    verifier: &Verifier,
    secrets: &WebhookSecrets,
    request: &SignedRequest<'_>,
) -> Result<VerifiedWith, VerifyError> {
    let check = match verifier {
        Verifier::Github {} => github_check(request)?,
        Verifier::Slack { tolerance_s } => slack_check(request, *tolerance_s)?,
        Verifier::Stripe { tolerance_s } => stripe_check(request, *tolerance_s)?,
        Verifier::Standard { tolerance_s } => standard_check(request, *tolerance_s)?,
        Verifier::Hmac { .. } => match HmacPreset::of(verifier) {
            Some(preset) => preset.check(request)?,
            None => return Err(VerifyError::BadSignature),
        },
    };
    check.against(secrets, request.now_unix)
}

/// `X-Hub-Signature-256: sha256=<hex>` over the body.
fn github_check<'a>(request: &SignedRequest<'a>) -> Result<Check<'a>, VerifyError> {
    let value = request.required(GITHUB_SIGNATURE)?;
    let signature = decode_prefixed(value, "sha256=", Encoding::Hex)?;
    Ok(Check {
        algorithm: Algorithm::Sha256,
        key_form: KeyForm::Raw,
        message: vec![request.body],
        signatures: vec![signature],
    })
}

/// `X-Slack-Signature: v0=<hex>` over `v0:<timestamp>:<body>`.
fn slack_check<'a>(
    request: &SignedRequest<'a>,
    tolerance_s: u32,
) -> Result<Check<'a>, VerifyError> {
    let value = request.required(SLACK_SIGNATURE)?;
    let timestamp = request.required(SLACK_TIMESTAMP)?;
    let signature = decode_prefixed(value, "v0=", Encoding::Hex)?;
    check_fresh(parse_timestamp(timestamp)?, request.now_unix, tolerance_s)?;
    Ok(Check {
        algorithm: Algorithm::Sha256,
        key_form: KeyForm::Raw,
        message: vec![b"v0:", timestamp.as_bytes(), b":", request.body],
        signatures: vec![signature],
    })
}

/// `Stripe-Signature: t=<ts>,v1=<hex>[,v1=…][,v0=…]` over `<t>.<body>`.
fn stripe_check<'a>(
    request: &SignedRequest<'a>,
    tolerance_s: u32,
) -> Result<Check<'a>, VerifyError> {
    let value = request.required(STRIPE_SIGNATURE)?;
    let (timestamp, signatures) = parse_stripe(value)?;
    check_fresh(parse_timestamp(timestamp)?, request.now_unix, tolerance_s)?;
    Ok(Check {
        algorithm: Algorithm::Sha256,
        key_form: KeyForm::Raw,
        message: vec![timestamp.as_bytes(), b".", request.body],
        signatures,
    })
}

/// Splits a Stripe header into its timestamp and its decoded `v1` signatures (other schemes and
/// undecodable `v1` entries are ignored, as long as one `v1` decodes).
fn parse_stripe(value: &str) -> Result<(&str, Vec<Vec<u8>>), VerifyError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    let mut saw_v1 = false;
    for (key, item) in value.split(',').filter_map(|item| item.split_once('=')) {
        match key.trim() {
            "t" if timestamp.replace(item.trim()).is_some() => {
                return Err(VerifyError::Malformed("more than one `t=`".into()));
            }
            "v1" => {
                saw_v1 = true;
                signatures.extend(decode(Encoding::Hex, item.trim()));
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or_else(|| VerifyError::Malformed("no `t=` timestamp".into()))?;
    match (saw_v1, signatures.is_empty()) {
        (false, _) => Err(VerifyError::Malformed("no `v1=` signature".into())),
        (true, true) => Err(VerifyError::Malformed("`v1=` is not hex".into())),
        (true, false) => Ok((timestamp, signatures)),
    }
}

/// Standard Webhooks: `webhook-signature: v1,<base64> …` over `<id>.<timestamp>.<body>`.
fn standard_check<'a>(
    request: &SignedRequest<'a>,
    tolerance_s: u32,
) -> Result<Check<'a>, VerifyError> {
    // Svix-branded senders use the same scheme under `svix-*` header names.
    let either = |name: &str, svix: &str| match request.header(name) {
        Some(value) => Ok(value),
        None => request
            .header(svix)
            .ok_or_else(|| VerifyError::MissingHeader(name.to_owned())),
    };
    let id = either(STANDARD_ID, "svix-id")?;
    let timestamp = either(STANDARD_TIMESTAMP, "svix-timestamp")?;
    let value = either(STANDARD_SIGNATURE, "svix-signature")?;
    let signatures = parse_standard(value)?;
    check_fresh(parse_timestamp(timestamp)?, request.now_unix, tolerance_s)?;
    Ok(Check {
        algorithm: Algorithm::Sha256,
        key_form: KeyForm::Whsec,
        message: vec![
            id.as_bytes(),
            b".",
            timestamp.as_bytes(),
            b".",
            request.body,
        ],
        signatures,
    })
}

/// The decoded `v1,<base64>` entries of a space-separated Standard Webhooks signature list
/// (other versions, e.g. `v1a`, are ignored).
fn parse_standard(value: &str) -> Result<Vec<Vec<u8>>, VerifyError> {
    let v1: Vec<&str> = value
        .split_ascii_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .collect();
    if v1.is_empty() {
        return Err(VerifyError::Malformed("no `v1,` signature".into()));
    }
    let signatures: Vec<Vec<u8>> = v1
        .iter()
        .filter_map(|sig| decode(Encoding::Base64, sig))
        .collect();
    if signatures.is_empty() {
        return Err(VerifyError::Malformed("`v1,` is not base64".into()));
    }
    Ok(signatures)
}

/// The `hmac` preset's settings, borrowed from a [`Verifier::Hmac`].
pub(super) struct HmacPreset<'v> {
    header: &'v str,
    pub(super) algorithm: Algorithm,
    pub(super) encoding: Encoding,
    pub(super) prefix: &'v str,
    pub(super) timestamp_header: Option<&'v str>,
    pub(super) template: &'v str,
    tolerance_s: u32,
}

impl<'v> HmacPreset<'v> {
    /// The settings when `verifier` is the `hmac` preset.
    pub(super) fn of(verifier: &'v Verifier) -> Option<Self> {
        let Verifier::Hmac {
            header,
            algorithm,
            encoding,
            prefix,
            timestamp_header,
            signed_content,
            tolerance_s,
        } = verifier
        else {
            return None;
        };
        Some(Self {
            header,
            algorithm: *algorithm,
            encoding: *encoding,
            prefix: prefix.as_deref().unwrap_or(""),
            timestamp_header: timestamp_header.as_deref(),
            template: signed_content.as_deref().unwrap_or(DEFAULT_TEMPLATE),
            tolerance_s: *tolerance_s,
        })
    }

    /// Reads the configured headers and renders the signed content.
    fn check<'a>(&self, request: &SignedRequest<'a>) -> Result<Check<'a>, VerifyError>
    where
        'v: 'a,
    {
        if !self.template.contains("{body}") {
            return Err(VerifyError::Malformed(
                "signed content must cover `{body}`".into(),
            ));
        }
        let value = request.required(&self.header.to_ascii_lowercase())?;
        let timestamp = match self.timestamp_header {
            Some(name) => Some(request.required(&name.to_ascii_lowercase())?),
            None => None,
        };
        let signature = decode_prefixed(value, self.prefix, self.encoding)?;
        if let Some(timestamp) = timestamp {
            check_fresh(
                parse_timestamp(timestamp)?,
                request.now_unix,
                self.tolerance_s,
            )?;
        }
        Ok(Check {
            algorithm: self.algorithm,
            key_form: KeyForm::Raw,
            message: render(self.template, timestamp, request.body),
            signatures: vec![signature],
        })
    }
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
