//! Why a webhook request did not verify.

/// Why a request did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A header the preset needs is absent (the lower-case header name).
    #[error("missing signature header `{0}`")]
    MissingHeader(String),
    /// A header is present but cannot be read (bad prefix, hex, base64, timestamp, …).
    #[error("malformed signature: {0}")]
    Malformed(String),
    /// The signature is well-formed but no secret produces it.
    #[error("signature does not match")]
    BadSignature,
    /// The signed timestamp is too far from now; `skew_s` is timestamp − now (positive = future).
    #[error("timestamp is outside the {tolerance_s} s tolerance (it is {skew_s} s off)")]
    Stale {
        /// The preset's accepted skew in seconds.
        tolerance_s: u32,
        /// Timestamp minus now, in seconds (saturated).
        skew_s: i64,
    },
}
