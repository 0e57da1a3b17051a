//! One named key of the keyring: parsing a `kid:base64key` entry, checking key ids, generating
//! key bytes, and wiping them on drop.

use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::{Key, XChaCha20Poly1305};
use rand::RngCore;

use super::{FORMAT_VERSION, KEY_LEN, KeyringError, MAX_KID_LEN};

/// Base64 decoders that accept input with or without `=` padding.
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One named key. Its `Debug` shows only the key id.
#[derive(Clone)]
pub(super) struct KeyEntry {
    pub(super) kid: String,
    pub(super) key: [u8; KEY_LEN],
}

impl KeyEntry {
    pub(super) fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&Key::from(self.key))
    }

    /// The blob header for this key: version, key id length, key id.
    pub(super) fn header(&self) -> Vec<u8> {
        let mut header = Vec::with_capacity(2 + self.kid.len());
        header.push(FORMAT_VERSION);
        // The key id was validated to 1..=32 ASCII bytes when the entry was built.
        header.push(u8::try_from(self.kid.len()).unwrap_or(u8::MAX));
        header.extend_from_slice(self.kid.as_bytes());
        header
    }
}

impl Drop for KeyEntry {
    fn drop(&mut self) {
        // Best effort without `unsafe`: black_box keeps the wipe from being optimised away.
        self.key.fill(0);
        std::hint::black_box(&self.key);
    }
}

impl fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEntry")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Parses one trimmed `kid:base64key` entry; `entry` is its position from 1.
pub(super) fn parse_entry(entry: usize, item: &str) -> Result<KeyEntry, KeyringError> {
    if item.is_empty() {
        let reason = "empty entry, is there a stray comma?";
        return Err(KeyringError::Malformed { entry, reason });
    }
    let (kid, encoded) = item.split_once(':').ok_or(KeyringError::Malformed {
        entry,
        reason: "no `:` between key id and key",
    })?;
    check_kid(kid).map_err(|reason| KeyringError::BadKeyId { entry, reason })?;
    if encoded.is_empty() {
        let reason = "no key after `:`";
        return Err(KeyringError::Malformed { entry, reason });
    }
    let engine = if encoded.contains(['-', '_']) {
        &URL_SAFE_LENIENT
    } else {
        &STANDARD_LENIENT
    };
    let kid = kid.to_owned();
    let mut bytes = match engine.decode(encoded) {
        Ok(bytes) => bytes,
        Err(_) => return Err(KeyringError::BadBase64 { kid }),
    };
    let key = <[u8; KEY_LEN]>::try_from(bytes.as_slice());
    let len = bytes.len();
    bytes.fill(0);
    match key {
        Ok(key) => Ok(KeyEntry { kid, key }),
        Err(_) => Err(KeyringError::BadLength { kid, len }),
    }
}

/// Checks a key id: 1..=32 characters of `[A-Za-z0-9_-]`.
pub(super) fn check_kid(kid: &str) -> Result<(), &'static str> {
    if kid.is_empty() {
        return Err("it is empty");
    }
    if kid.len() > MAX_KID_LEN {
        return Err("it is longer than 32 characters");
    }
    if !kid
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err("it contains characters other than A-Z, a-z, 0-9, `_` and `-`");
    }
    Ok(())
}

/// 32 fresh random key bytes.
pub(super) fn random_key() -> [u8; KEY_LEN] {
    let mut key = [0u8; KEY_LEN];
    rand::rng().fill_bytes(&mut key);
    key
}
