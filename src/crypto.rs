//! Seal and open secrets at rest; the only module that touches the cipher.
//!
//! Secrets (Slack app tokens, header values, webhook signing secrets) are stored as opaque blobs
//! sealed with XChaCha20-Poly1305 under a [`Keyring`] read from `SWITCHBOARD_SECRET_KEYS`
//! (`kid:base64key[,kid:base64key…]`, the first key is the primary). New blobs always use the
//! primary key; older keys stay in the ring only so existing blobs still open until
//! `switchboard keys rotate` reseals them (see [`Keyring::reseal`]).
//!
//! # Blob format (version 1)
//!
//! | bytes | content |
//! | --- | --- |
//! | `0` | format version, `1` |
//! | `1` | key id length `n`, `1..=32` |
//! | `2 .. 2+n` | key id, ASCII `[A-Za-z0-9_-]` |
//! | next 24 | random XChaCha20 nonce |
//! | rest | ciphertext followed by the 16-byte Poly1305 tag |
//!
//! The associated data is the whole header (version byte, key id length, key id) followed by
//! `table || 0x00 || column || 0x00 || row_id (16 bytes)` from the [`SecretSlot`]. Editing the
//! header, or copying a blob to another table, column or row, therefore makes it fail to open.
//! Table and column names are code identifiers and must not contain NUL.
//!
//! Every length is checked before any slicing, so a truncated or garbled blob yields
//! [`CryptoError::Malformed`] and never a panic. Key bytes never appear in `Debug` output or in
//! error messages; [`Keyring::to_spec`] is the only way they leave the type.

use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::RngCore;

/// Current blob format version, stored in byte 0 of every sealed blob.
pub const FORMAT_VERSION: u8 = 1;
/// Length of a key in bytes.
pub const KEY_LEN: usize = 32;
/// Longest key id accepted, in ASCII characters.
pub const MAX_KID_LEN: usize = 32;
/// Length of the XChaCha20 nonce stored in each blob.
pub const NONCE_LEN: usize = 24;
/// Length of the Poly1305 authentication tag at the end of each blob.
pub const TAG_LEN: usize = 16;
/// Environment variable that holds the keyring spec.
pub const KEYS_ENV: &str = "SWITCHBOARD_SECRET_KEYS";

/// Base64 decoders that accept input with or without `=` padding.
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

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

/// Where a sealed secret lives: bound as AEAD associated data so a blob copied to another table,
/// column or row does not open.
#[derive(Debug, Clone, Copy)]
pub struct SecretSlot<'a> {
    /// Table name, e.g. `websocket_sources`.
    pub table: &'a str,
    /// Column name, e.g. `secrets`.
    pub column: &'a str,
    /// Primary key of the row that holds the blob.
    pub row_id: uuid::Uuid,
}

impl<'a> SecretSlot<'a> {
    /// A slot for `table.column` of the row `row_id`.
    pub fn new(table: &'a str, column: &'a str, row_id: uuid::Uuid) -> Self {
        Self {
            table,
            column,
            row_id,
        }
    }
}

/// One named key. Its `Debug` shows only the key id.
#[derive(Clone)]
struct KeyEntry {
    kid: String,
    key: [u8; KEY_LEN],
}

impl KeyEntry {
    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&Key::from(self.key))
    }

    /// The blob header for this key: version, key id length, key id.
    fn header(&self) -> Vec<u8> {
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

/// The set of secret keys; the first is the primary, used for every new seal.
///
/// `Debug` shows only key ids.
#[derive(Clone)]
pub struct Keyring {
    primary: KeyEntry,
    older: Vec<KeyEntry>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("primary", &self.primary_kid())
            .field("kids", &self.kids())
            .finish()
    }
}

impl Keyring {
    /// Parses `kid:base64key[,kid:base64key…]`; the first entry becomes the primary key.
    ///
    /// Whitespace around entries is ignored. A key id is 1..=32 characters of `[A-Za-z0-9_-]`;
    /// a key is 32 bytes in standard or URL-safe base64, padded or not.
    pub fn parse(spec: &str) -> Result<Keyring, KeyringError> {
        if spec.trim().is_empty() {
            return Err(KeyringError::Empty);
        }
        let mut entries: Vec<KeyEntry> = Vec::new();
        for (index, raw) in spec.split(',').enumerate() {
            let entry = parse_entry(index + 1, raw.trim())?;
            if entries.iter().any(|e| e.kid == entry.kid) {
                return Err(KeyringError::DuplicateKid(entry.kid.clone()));
            }
            entries.push(entry);
        }
        let mut entries = entries.into_iter();
        let primary = entries.next().ok_or(KeyringError::Empty)?;
        Ok(Keyring {
            primary,
            older: entries.collect(),
        })
    }

    /// Returns a fresh `kid:base64key` entry of 32 random bytes, ready for [`Keyring::parse`].
    ///
    /// The key id is not checked here; use [`Keyring::generate`] to have it validated.
    pub fn generate_entry(kid: &str) -> String {
        let entry = KeyEntry {
            kid: kid.to_owned(),
            key: random_key(),
        };
        format!("{}:{}", entry.kid, STANDARD.encode(entry.key))
    }

    /// A keyring holding a single freshly generated key named `kid`.
    pub fn generate(kid: &str) -> Result<Keyring, KeyringError> {
        check_kid(kid).map_err(|reason| KeyringError::BadKeyId { entry: 1, reason })?;
        Ok(Keyring {
            primary: KeyEntry {
                kid: kid.to_owned(),
                key: random_key(),
            },
            older: Vec::new(),
        })
    }

    /// This keyring with a freshly generated primary key `kid`; the current keys stay, for opening.
    pub fn with_new_primary(&self, kid: &str) -> Result<Keyring, KeyringError> {
        let fresh = Keyring::generate(kid)?;
        if self.contains(kid) {
            return Err(KeyringError::DuplicateKid(kid.to_owned()));
        }
        let mut older = Vec::with_capacity(self.older.len() + 1);
        older.push(self.primary.clone());
        older.extend(self.older.iter().cloned());
        Ok(Keyring {
            primary: fresh.primary,
            older,
        })
    }

    /// The spec that [`Keyring::parse`] reads back into this keyring (standard padded base64).
    ///
    /// This is the only way key bytes leave the type; write it only to the key file or the
    /// operator's terminal.
    pub fn to_spec(&self) -> String {
        self.entries()
            .map(|e| format!("{}:{}", e.kid, STANDARD.encode(e.key)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The key id new secrets are sealed with.
    pub fn primary_kid(&self) -> &str {
        &self.primary.kid
    }

    /// All key ids, primary first.
    pub fn kids(&self) -> Vec<&str> {
        self.entries().map(|e| e.kid.as_str()).collect()
    }

    /// Whether the keyring holds a key with this id.
    pub fn contains(&self, kid: &str) -> bool {
        self.find(kid).is_some()
    }

    /// Seals `plaintext` for `slot` under the primary key with a fresh random nonce.
    pub fn seal(&self, plaintext: &[u8], slot: SecretSlot<'_>) -> Result<Vec<u8>, CryptoError> {
        let entry = &self.primary;
        let header = entry.header();
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let aad = associated_data(&header, slot);
        let payload = Payload {
            msg: plaintext,
            aad: &aad,
        };
        let sealed = entry
            .cipher()
            .encrypt(&XNonce::from(nonce), payload)
            .map_err(|_| CryptoError::TooLarge(plaintext.len()))?;
        let mut blob = Vec::with_capacity(header.len() + NONCE_LEN + sealed.len());
        blob.extend_from_slice(&header);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        Ok(blob)
    }

    /// Opens a blob sealed for `slot` by any key in the ring.
    pub fn open(&self, blob: &[u8], slot: SecretSlot<'_>) -> Result<Vec<u8>, CryptoError> {
        let parts = BlobParts::split(blob)?;
        let entry = self
            .find(parts.kid)
            .ok_or_else(|| CryptoError::UnknownKey(parts.kid.to_owned()))?;
        let aad = associated_data(parts.header, slot);
        let payload = Payload {
            msg: parts.sealed,
            aad: &aad,
        };
        entry
            .cipher()
            .decrypt(&XNonce::from(parts.nonce), payload)
            .map_err(|_| CryptoError::Decrypt(parts.kid.to_owned()))
    }

    /// Seals a UTF-8 string; see [`Keyring::seal`].
    pub fn seal_str(&self, plaintext: &str, slot: SecretSlot<'_>) -> Result<Vec<u8>, CryptoError> {
        self.seal(plaintext.as_bytes(), slot)
    }

    /// Opens a blob that must hold UTF-8 text; see [`Keyring::open`].
    pub fn open_str(&self, blob: &[u8], slot: SecretSlot<'_>) -> Result<String, CryptoError> {
        String::from_utf8(self.open(blob, slot)?).map_err(|_| CryptoError::NotUtf8)
    }

    /// The id of the key that sealed `blob`, read from its header without decrypting.
    pub fn sealed_kid(blob: &[u8]) -> Result<&str, CryptoError> {
        BlobParts::split(blob).map(|parts| parts.kid)
    }

    /// Re-seals `blob` under the primary key: `Some(new blob)` if it was sealed by an older key,
    /// `None` if it already uses the primary. The blob is opened (authenticated) in both cases,
    /// so a rotation run also reports broken blobs.
    pub fn reseal(
        &self,
        blob: &[u8],
        slot: SecretSlot<'_>,
    ) -> Result<Option<Vec<u8>>, CryptoError> {
        let plaintext = self.open(blob, slot)?;
        if Self::sealed_kid(blob)? == self.primary_kid() {
            return Ok(None);
        }
        self.seal(&plaintext, slot).map(Some)
    }

    fn entries(&self) -> impl Iterator<Item = &KeyEntry> {
        std::iter::once(&self.primary).chain(self.older.iter())
    }

    fn find(&self, kid: &str) -> Option<&KeyEntry> {
        self.entries().find(|e| e.kid == kid)
    }
}

/// The framing of a blob, every part length-checked.
struct BlobParts<'a> {
    /// Version byte, key id length and key id: authenticated as associated data.
    header: &'a [u8],
    kid: &'a str,
    nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the tag.
    sealed: &'a [u8],
}

impl<'a> BlobParts<'a> {
    fn split(blob: &'a [u8]) -> Result<Self, CryptoError> {
        const TOO_SHORT: CryptoError = CryptoError::Malformed("too short");
        let (&version, rest) = blob.split_first().ok_or(TOO_SHORT)?;
        if version != FORMAT_VERSION {
            return Err(CryptoError::Malformed("unsupported format version"));
        }
        let &kid_len = rest.first().ok_or(TOO_SHORT)?;
        let kid_len = usize::from(kid_len);
        if kid_len == 0 || kid_len > MAX_KID_LEN {
            return Err(CryptoError::Malformed("key id length out of range"));
        }
        let (header, rest) = blob.split_at_checked(2 + kid_len).ok_or(TOO_SHORT)?;
        let kid = header
            .get(2..)
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .filter(|kid| check_kid(kid).is_ok())
            .ok_or(CryptoError::Malformed("key id has invalid characters"))?;
        let (nonce, sealed) = rest.split_at_checked(NONCE_LEN).ok_or(TOO_SHORT)?;
        if sealed.len() < TAG_LEN {
            return Err(TOO_SHORT);
        }
        let nonce = <[u8; NONCE_LEN]>::try_from(nonce).map_err(|_| TOO_SHORT)?;
        Ok(BlobParts {
            header,
            kid,
            nonce,
            sealed,
        })
    }
}

/// `header || table || 0x00 || column || 0x00 || row_id`.
fn associated_data(header: &[u8], slot: SecretSlot<'_>) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + slot.table.len() + slot.column.len() + 2 + 16);
    aad.extend_from_slice(header);
    aad.extend_from_slice(slot.table.as_bytes());
    aad.push(0);
    aad.extend_from_slice(slot.column.as_bytes());
    aad.push(0);
    aad.extend_from_slice(slot.row_id.as_bytes());
    aad
}

/// Parses one trimmed `kid:base64key` entry; `entry` is its position from 1.
fn parse_entry(entry: usize, item: &str) -> Result<KeyEntry, KeyringError> {
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
fn check_kid(kid: &str) -> Result<(), &'static str> {
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

fn random_key() -> [u8; KEY_LEN] {
    let mut key = [0u8; KEY_LEN];
    rand::rng().fill_bytes(&mut key);
    key
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use uuid::Uuid;

    const KEY_A: [u8; 32] = [0x11; 32];
    const KEY_B: [u8; 32] = [0x22; 32];

    fn entry(kid: &str, key: [u8; 32]) -> String {
        format!("{kid}:{}", STANDARD.encode(key))
    }

    fn ring(spec: &str) -> Keyring {
        Keyring::parse(spec).unwrap()
    }

    fn slot(row: u128) -> SecretSlot<'static> {
        SecretSlot::new("websocket_sources", "secrets", Uuid::from_u128(row))
    }

    fn min_len(kid: &str) -> usize {
        2 + kid.len() + NONCE_LEN + TAG_LEN
    }

    proptest! {
        #[test]
        fn round_trips_any_bytes_and_slot(
            plaintext in proptest::collection::vec(any::<u8>(), 0..512),
            table in "[a-z_]{0,24}",
            column in "[a-z_]{0,24}",
            row in any::<u128>(),
        ) {
            let keys = ring(&entry("k1", KEY_A));
            let slot = SecretSlot::new(&table, &column, Uuid::from_u128(row));
            let blob = keys.seal(&plaintext, slot).unwrap();
            prop_assert_eq!(blob.len(), min_len("k1") + plaintext.len());
            prop_assert_eq!(keys.open(&blob, slot).unwrap(), plaintext);
        }

        #[test]
        fn round_trips_strings(text in "\\PC{0,64}") {
            let keys = ring(&entry("k1", KEY_A));
            let blob = keys.seal_str(&text, slot(7)).unwrap();
            prop_assert_eq!(keys.open_str(&blob, slot(7)).unwrap(), text);
        }

        #[test]
        fn any_single_bit_flip_is_rejected(
            plaintext in proptest::collection::vec(any::<u8>(), 0..64),
            position in any::<proptest::sample::Index>(),
            bit in 0u8..8,
        ) {
            let keys = ring(&format!("{},{}", entry("k1", KEY_A), entry("k2", KEY_B)));
            let mut blob = keys.seal(&plaintext, slot(1)).unwrap();
            let at = position.index(blob.len());
            blob[at] ^= 1 << bit;
            prop_assert!(keys.open(&blob, slot(1)).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(blob in proptest::collection::vec(any::<u8>(), 0..128)) {
            let keys = ring(&entry("k1", KEY_A));
            prop_assert!(keys.open(&blob, slot(1)).is_err());
            let _ = Keyring::sealed_kid(&blob);
        }
    }

    #[test]
    fn blob_layout_matches_the_documented_format() {
        let keys = ring(&entry("primary-1", KEY_A));
        let blob = keys.seal(b"hello", slot(1)).unwrap();
        assert_eq!(blob[0], FORMAT_VERSION);
        assert_eq!(usize::from(blob[1]), "primary-1".len());
        assert_eq!(&blob[2..11], b"primary-1");
        assert_eq!(blob.len(), min_len("primary-1") + 5);
        assert_eq!(Keyring::sealed_kid(&blob).unwrap(), "primary-1");
    }

    #[test]
    fn nonces_are_fresh() {
        let keys = ring(&entry("k1", KEY_A));
        let one = keys.seal(b"same", slot(1)).unwrap();
        let two = keys.seal(b"same", slot(1)).unwrap();
        assert_ne!(one, two);
    }

    #[test]
    fn wrong_key_under_same_kid_is_a_decrypt_error_naming_the_kid() {
        let blob = ring(&entry("k1", KEY_A)).seal(b"s", slot(1)).unwrap();
        let err = ring(&entry("k1", KEY_B)).open(&blob, slot(1)).unwrap_err();
        assert!(matches!(&err, CryptoError::Decrypt(kid) if kid == "k1"));
        assert!(err.to_string().contains("`k1`"));
    }

    #[test]
    fn unknown_kid_is_reported() {
        let blob = ring(&entry("old", KEY_A)).seal(b"s", slot(1)).unwrap();
        let err = ring(&entry("new", KEY_B)).open(&blob, slot(1)).unwrap_err();
        assert!(matches!(&err, CryptoError::UnknownKey(kid) if kid == "old"));
        assert!(err.to_string().contains("SWITCHBOARD_SECRET_KEYS"));
    }

    #[test]
    fn blobs_are_bound_to_their_slot() {
        let keys = ring(&entry("k1", KEY_A));
        let row = Uuid::from_u128(1);
        let home = SecretSlot::new("webhooks", "secrets", row);
        let blob = keys.seal(b"s", home).unwrap();
        let elsewhere = [
            SecretSlot::new("webhooks", "secrets", Uuid::from_u128(2)),
            SecretSlot::new("websocket_sources", "secrets", row),
            SecretSlot::new("webhooks", "config", row),
            // Moving a byte across the separator must not produce the same associated data.
            SecretSlot::new("webhook", "ssecrets", row),
        ];
        for other in elsewhere {
            let err = keys.open(&blob, other).unwrap_err();
            assert!(matches!(err, CryptoError::Decrypt(_)), "{other:?}: {err:?}");
        }
        assert_eq!(keys.open(&blob, home).unwrap(), b"s");
    }

    #[test]
    fn every_truncation_is_an_error_and_short_ones_are_malformed() {
        for kid in ["k", "abcdefghijklmnopqrstuvwxyz012345"] {
            let keys = ring(&entry(kid, KEY_A));
            let blob = keys.seal(b"some secret", slot(1)).unwrap();
            for len in 0..blob.len() {
                let err = keys.open(&blob[..len], slot(1)).unwrap_err();
                if len < min_len(kid) {
                    assert!(
                        matches!(err, CryptoError::Malformed(_)),
                        "{kid} {len}: {err:?}"
                    );
                    assert!(Keyring::sealed_kid(&blob[..len]).is_err());
                } else {
                    assert!(
                        matches!(err, CryptoError::Decrypt(_)),
                        "{kid} {len}: {err:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn empty_plaintext_has_exactly_the_minimum_length() {
        let keys = ring(&entry("k1", KEY_A));
        let blob = keys.seal(b"", slot(1)).unwrap();
        assert_eq!(blob.len(), min_len("k1"));
        assert_eq!(keys.open(&blob, slot(1)).unwrap(), b"");
    }

    #[test]
    fn bad_headers_are_malformed() {
        let keys = ring(&entry("k1", KEY_A));
        let blob = keys.seal(b"secret", slot(1)).unwrap();
        let mut version = blob.clone();
        version[0] = 2;
        let mut zero_kid = blob.clone();
        zero_kid[1] = 0;
        let mut long_kid = blob.clone();
        long_kid[1] = 33;
        let mut bad_char = blob.clone();
        bad_char[2] = b'.';
        let mut non_ascii = blob;
        non_ascii[2] = 0xc3;
        for bad in [version, zero_kid, long_kid, bad_char, non_ascii] {
            assert!(matches!(
                keys.open(&bad, slot(1)),
                Err(CryptoError::Malformed(_))
            ));
            assert!(matches!(
                Keyring::sealed_kid(&bad),
                Err(CryptoError::Malformed(_))
            ));
        }
    }

    #[test]
    fn open_str_rejects_non_utf8() {
        let keys = ring(&entry("k1", KEY_A));
        let blob = keys.seal(&[0xff, 0xfe], slot(1)).unwrap();
        assert!(matches!(
            keys.open_str(&blob, slot(1)),
            Err(CryptoError::NotUtf8)
        ));
    }

    #[test]
    fn parse_accepts_whitespace_url_safe_and_unpadded_keys() {
        let key: [u8; 32] = std::array::from_fn(|i| (i * 8 + 3) as u8);
        let standard = STANDARD.encode(key);
        assert!(standard.contains(['+', '/']) && standard.ends_with('='));
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key);
        let spec = format!(
            " a:{standard} ,\n b:{} ,\tc:{url_safe}",
            standard.trim_end_matches('=')
        );
        let keys = ring(&spec);
        assert_eq!(keys.kids(), ["a", "b", "c"]);
        assert_eq!(keys.primary_kid(), "a");
        let blob = keys.seal(b"x", slot(1)).unwrap();
        let c_only = ring(&format!("c:{standard}"));
        assert!(matches!(
            c_only.open(&blob, slot(1)),
            Err(CryptoError::UnknownKey(_))
        ));
        assert_eq!(
            ring(&format!("a:{url_safe}")).open(&blob, slot(1)).unwrap(),
            b"x"
        );
    }

    #[test]
    fn to_spec_is_the_inverse_of_parse() {
        let spec = format!("{},{}", entry("new", KEY_B), entry("old", KEY_A));
        let keys = ring(&spec);
        assert_eq!(keys.to_spec(), spec);
        let again = ring(&keys.to_spec());
        let blob = keys.seal(b"s", slot(1)).unwrap();
        assert_eq!(again.open(&blob, slot(1)).unwrap(), b"s");
    }

    #[test]
    fn generated_entries_parse_and_differ() {
        let one = Keyring::generate_entry("gen");
        let two = Keyring::generate_entry("gen");
        assert_ne!(one, two);
        assert_eq!(ring(&one).kids(), ["gen"]);
        let generated = Keyring::generate("fresh").unwrap();
        assert_eq!(ring(&generated.to_spec()).kids(), ["fresh"]);
        assert!(matches!(
            Keyring::generate("bad kid"),
            Err(KeyringError::BadKeyId { .. })
        ));
    }

    #[test]
    fn parse_errors_are_specific() {
        let good = STANDARD.encode(KEY_A);
        type Expected = fn(&KeyringError) -> bool;
        let cases: Vec<(String, Expected)> = vec![
            (String::new(), |e| matches!(e, KeyringError::Empty)),
            (" \n\t".into(), |e| matches!(e, KeyringError::Empty)),
            (good.clone(), |e| {
                matches!(e, KeyringError::Malformed { entry: 1, .. })
            }),
            (format!("a:{good},"), |e| {
                matches!(e, KeyringError::Malformed { entry: 2, .. })
            }),
            ("a:".into(), |e| {
                matches!(e, KeyringError::Malformed { entry: 1, .. })
            }),
            (format!(":{good}"), |e| {
                matches!(e, KeyringError::BadKeyId { entry: 1, .. })
            }),
            (format!("a.b:{good}"), |e| {
                matches!(e, KeyringError::BadKeyId { entry: 1, .. })
            }),
            (format!("é:{good}"), |e| {
                matches!(e, KeyringError::BadKeyId { .. })
            }),
            (format!("{}:{good}", "k".repeat(33)), |e| {
                matches!(e, KeyringError::BadKeyId { .. })
            }),
            (
                "a:not base64!".into(),
                |e| matches!(e, KeyringError::BadBase64 { kid } if kid == "a"),
            ),
            (
                format!("a:{}", STANDARD.encode([0u8; 31])),
                |e| matches!(e, KeyringError::BadLength { kid, len: 31 } if kid == "a"),
            ),
            (format!("a:{}", STANDARD.encode([0u8; 33])), |e| {
                matches!(e, KeyringError::BadLength { len: 33, .. })
            }),
            (
                format!("a:{good},a:{}", STANDARD.encode(KEY_B)),
                |e| matches!(e, KeyringError::DuplicateKid(kid) if kid == "a"),
            ),
        ];
        for (spec, expected) in cases {
            let err = Keyring::parse(&spec).unwrap_err();
            assert!(expected(&err), "{spec:?} gave {err:?}");
            assert!(!err.to_string().contains(&good), "{err}");
        }
        let longest = format!("{}:{good}", "k".repeat(32));
        assert!(Keyring::parse(&longest).is_ok());
    }

    #[test]
    fn error_messages_say_how_to_fix() {
        let msg = Keyring::parse("").unwrap_err().to_string();
        assert!(msg.contains("switchboard keys generate"), "{msg}");
        let short = format!("a:{}", STANDARD.encode([0u8; 31]));
        let msg = Keyring::parse(&short).unwrap_err().to_string();
        assert!(msg.contains("31 bytes") && msg.contains("32"), "{msg}");
    }

    #[test]
    fn rotation_opens_old_blobs_and_reseals_under_the_new_primary() {
        let old = ring(&entry("old", KEY_A));
        let rotated = ring(&format!("{},{}", entry("new", KEY_B), entry("old", KEY_A)));
        let blob = old.seal(b"token", slot(9)).unwrap();
        assert_eq!(rotated.open(&blob, slot(9)).unwrap(), b"token");

        let moved = rotated.reseal(&blob, slot(9)).unwrap().unwrap();
        assert_eq!(Keyring::sealed_kid(&moved).unwrap(), "new");
        assert_eq!(rotated.open(&moved, slot(9)).unwrap(), b"token");
        assert!(rotated.reseal(&moved, slot(9)).unwrap().is_none());
        assert!(matches!(
            old.open(&moved, slot(9)),
            Err(CryptoError::UnknownKey(_))
        ));
        // A resealed blob is still bound to its slot.
        assert!(rotated.open(&moved, slot(10)).is_err());
        assert!(rotated.reseal(&blob, slot(10)).is_err());
    }

    #[test]
    fn with_new_primary_keeps_older_keys() {
        let old = ring(&entry("old", KEY_A));
        let blob = old.seal(b"s", slot(1)).unwrap();
        let rotated = old.with_new_primary("new").unwrap();
        assert_eq!(rotated.kids(), ["new", "old"]);
        assert_eq!(rotated.open(&blob, slot(1)).unwrap(), b"s");
        assert!(
            ring(&rotated.to_spec())
                .reseal(&blob, slot(1))
                .unwrap()
                .is_some()
        );
        assert!(matches!(
            old.with_new_primary("old"),
            Err(KeyringError::DuplicateKid(_))
        ));
    }

    #[test]
    fn debug_output_contains_no_key_material() {
        let keys = ring(&format!("{},{}", entry("new", KEY_B), entry("old", KEY_A)));
        for shown in [
            format!("{keys:?}"),
            format!("{keys:#?}"),
            format!("{:?}", keys.primary),
        ] {
            assert!(shown.contains("new"), "{shown}");
            for key in [KEY_A, KEY_B] {
                assert!(!shown.contains(&STANDARD.encode(key)), "{shown}");
                assert!(
                    !shown.contains("17, 17") && !shown.contains("34, 34"),
                    "{shown}"
                );
            }
        }
    }
}
