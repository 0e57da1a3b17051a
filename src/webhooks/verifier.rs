//! Verifier presets and their settings (the signing itself comes with the inbound endpoint), and
//! the sealed secret set of a webhook.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::validation::Errors;

fn default_tolerance() -> u32 {
    300
}

/// HMAC algorithm of the `hmac` preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
    /// HMAC-SHA1 (legacy providers only).
    Sha1,
}

/// Signature encoding of the `hmac` preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Lower- or upper-case hex.
    Hex,
    /// Standard base64.
    Base64,
}

/// How inbound requests are authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "preset", rename_all = "lowercase", deny_unknown_fields)]
pub enum Verifier {
    /// `X-Hub-Signature-256: sha256=<hex>`.
    // A struct variant without fields, not a unit one: serde lets a unit variant of a tagged enum
    // ignore unknown fields.
    Github {},
    /// Slack v0 signatures with `X-Slack-Request-Timestamp`.
    Slack {
        /// Accepted clock skew in seconds (default 300).
        #[serde(default = "default_tolerance")]
        #[schema(minimum = 1, maximum = 86400)]
        tolerance_s: u32,
    },
    /// `Stripe-Signature: t=…,v1=…`.
    Stripe {
        /// Accepted clock skew in seconds (default 300).
        #[serde(default = "default_tolerance")]
        #[schema(minimum = 1, maximum = 86400)]
        tolerance_s: u32,
    },
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    Standard {
        /// Accepted clock skew in seconds (default 300).
        #[serde(default = "default_tolerance")]
        #[schema(minimum = 1, maximum = 86400)]
        tolerance_s: u32,
    },
    /// Any HMAC scheme: header, algorithm, encoding, prefix, optional timestamp.
    Hmac {
        /// Header carrying the signature.
        #[schema(pattern = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")]
        header: String,
        /// Hash algorithm (default sha256).
        #[serde(default = "default_algorithm")]
        algorithm: Algorithm,
        /// Signature encoding (default hex).
        #[serde(default = "default_encoding")]
        encoding: Encoding,
        /// Text before the signature in the header, e.g. `sha256=`.
        #[serde(default)]
        prefix: Option<String>,
        /// Header carrying a unix timestamp, when the provider signs one.
        #[serde(default)]
        timestamp_header: Option<String>,
        /// Signed content template with `{timestamp}` and `{body}` (default `{body}`).
        #[serde(default)]
        signed_content: Option<String>,
        /// Accepted clock skew in seconds when a timestamp is signed (default 300).
        #[serde(default = "default_tolerance")]
        #[schema(minimum = 1, maximum = 86400)]
        tolerance_s: u32,
    },
}

fn default_algorithm() -> Algorithm {
    Algorithm::Sha256
}

fn default_encoding() -> Encoding {
    Encoding::Hex
}

impl Verifier {
    /// The preset's name.
    pub fn preset(&self) -> &'static str {
        match self {
            Self::Github {} => "github",
            Self::Slack { .. } => "slack",
            Self::Stripe { .. } => "stripe",
            Self::Standard { .. } => "standard",
            Self::Hmac { .. } => "hmac",
        }
    }

    /// The headers this preset's verification or default expressions read (lower case): a
    /// delivery repeating one of them is refused, since the copies could be read differently.
    pub fn relevant_headers(&self) -> Vec<String> {
        let names: &[&str] = match self {
            Self::Github {} => &["x-hub-signature-256", "x-github-delivery", "x-github-event"],
            Self::Slack { .. } => &["x-slack-signature", "x-slack-request-timestamp"],
            Self::Stripe { .. } => &["stripe-signature"],
            Self::Standard { .. } => &[
                "webhook-id",
                "webhook-timestamp",
                "webhook-signature",
                "svix-id",
                "svix-timestamp",
                "svix-signature",
            ],
            Self::Hmac {
                header,
                timestamp_header,
                ..
            } => {
                return std::iter::once(header)
                    .chain(timestamp_header)
                    .map(|name| name.to_ascii_lowercase())
                    .collect();
            }
        };
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    /// Whether the signature covers a timestamp checked against a tolerance (what bounds a
    /// replay). Without one (GitHub, HMAC without `timestamp_header`), deliveries are guarded
    /// against replay by the hash of their body instead.
    pub fn signs_timestamp(&self) -> bool {
        match self {
            Self::Github {} => false,
            Self::Hmac {
                timestamp_header, ..
            } => timestamp_header.is_some(),
            Self::Slack { .. } | Self::Stripe { .. } | Self::Standard { .. } => true,
        }
    }

    /// Checks settings and a given secret against the preset's rules.
    pub fn check(&self, secret: Option<&str>, errors: &mut Errors) {
        match self {
            Self::Slack { tolerance_s }
            | Self::Stripe { tolerance_s }
            | Self::Standard { tolerance_s } => {
                errors.range("verifier.tolerance_s", (*tolerance_s).into(), 1..=86_400);
            }
            Self::Hmac {
                header,
                tolerance_s,
                signed_content,
                timestamp_header,
                ..
            } => {
                if header.is_empty()
                    || !header
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    errors.add("verifier.header", "must be an HTTP header name");
                }
                errors.range("verifier.tolerance_s", (*tolerance_s).into(), 1..=86_400);
                if let Some(template) = signed_content {
                    if !template.contains("{body}") {
                        errors.add("verifier.signed_content", "must contain `{body}`");
                    }
                    if template.contains("{timestamp}") && timestamp_header.is_none() {
                        errors.add(
                            "verifier.signed_content",
                            "uses `{timestamp}` but `timestamp_header` is not set",
                        );
                    }
                }
            }
            Self::Github {} => {}
        }
        if let Some(secret) = secret {
            if secret.len() < 8 {
                errors.add("secret", "must be at least 8 characters");
            }
            if matches!(self, Self::Standard { .. }) && standard_secret_bytes(secret).is_none() {
                errors.add(
                    "secret",
                    "must be `whsec_` followed by base64 (Standard Webhooks)",
                );
            }
        }
    }

    /// A fresh random secret in the preset's format.
    pub fn generate_secret(&self) -> String {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        match self {
            Self::Standard { .. } => format!(
                "whsec_{}",
                base64::engine::general_purpose::STANDARD.encode(bytes)
            ),
            _ => hex::encode(bytes),
        }
    }
}

/// The key bytes of a `whsec_<base64>` secret.
pub fn standard_secret_bytes(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.strip_prefix("whsec_")?;
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .filter(|b| !b.is_empty())
}

/// A webhook's secrets, sealed together: the current one and, during a rotation's grace period,
/// the previous one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookSecrets {
    /// The secret that signs from now on.
    pub current: String,
    /// The secret being rotated out.
    #[serde(default)]
    pub previous: Option<String>,
    /// When the previous secret stops verifying.
    #[serde(default)]
    pub previous_expires_at: Option<DateTime<Utc>>,
}
