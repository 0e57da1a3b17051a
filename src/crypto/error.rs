//! Why a keyring spec or a secret was refused; messages never echo key material.

/// Why a keyring spec (`SWITCHBOARD_SECRET_KEYS` or the generated key file) was rejected.
///
/// Entries are numbered from 1. Messages never echo key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// The spec holds no entry at all.
    #[error(
        "SWITCHBOARD_SECRET_KEYS is empty: set it to `kid:base64key[,kid:base64key…]`; \
         generate one with `switchboard keys generate`"
    )]
    Empty,
    /// An entry is not of the form `kid:base64key`.
    #[error(
        "SWITCHBOARD_SECRET_KEYS entry {entry} is malformed ({reason}): expected `kid:base64key`; \
         generate one with `switchboard keys generate`"
    )]
    Malformed {
        /// Position of the entry, from 1.
        entry: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An entry's key id is empty, too long or uses characters outside `[A-Za-z0-9_-]`.
    #[error(
        "SWITCHBOARD_SECRET_KEYS entry {entry} has an invalid key id ({reason}): use 1 to 32 \
         characters of A-Z, a-z, 0-9, `_` and `-`"
    )]
    BadKeyId {
        /// Position of the entry, from 1.
        entry: usize,
        /// What is wrong with the key id.
        reason: &'static str,
    },
    /// A key is not valid base64.
    #[error(
        "key `{kid}` in SWITCHBOARD_SECRET_KEYS is not valid base64; \
         generate one with `switchboard keys generate`"
    )]
    BadBase64 {
        /// The key id of the entry.
        kid: String,
    },
    /// A key does not decode to exactly 32 bytes.
    #[error(
        "key `{kid}` in SWITCHBOARD_SECRET_KEYS decodes to {len} bytes but must be exactly 32; \
         generate one with `switchboard keys generate`"
    )]
    BadLength {
        /// The key id of the entry.
        kid: String,
        /// The decoded length in bytes.
        len: usize,
    },
    /// Two entries use the same key id.
    #[error(
        "key id `{0}` appears more than once in SWITCHBOARD_SECRET_KEYS; give every key a distinct id"
    )]
    DuplicateKid(String),
}

/// Why a secret could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The blob names a key id that the keyring does not hold.
    #[error("secret was sealed with key id `{0}`, which is not in SWITCHBOARD_SECRET_KEYS")]
    UnknownKey(String),
    /// Authentication failed: wrong key bytes, tampered blob, or a blob from another slot.
    #[error(
        "secret sealed with key id `{0}` failed to decrypt: wrong key, tampered data, or copied from another row"
    )]
    Decrypt(String),
    /// The blob's framing is invalid (too short, unknown version, bad key id).
    #[error("secret blob is malformed: {0}")]
    Malformed(&'static str),
    /// The opened secret was expected to be UTF-8 text but is not.
    #[error("secret is not valid UTF-8")]
    NotUtf8,
    /// The plaintext exceeds what the cipher can encrypt under one nonce (about 256 GiB).
    #[error("secret of {0} bytes is too large to seal")]
    TooLarge(usize),
}
