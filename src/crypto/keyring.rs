//! The [`Keyring`]: the primary key that seals, the older keys that still open, rotation.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::XNonce;
use chacha20poly1305::aead::{Aead, Payload};
use rand::RngCore;

use super::blob::{BlobParts, SecretSlot, associated_data};
use super::entry::{KeyEntry, check_kid, parse_entry, random_key};
use super::{CryptoError, KeyringError, NONCE_LEN};

/// The set of secret keys; the first is the primary, used for every new seal.
///
/// `Debug` shows only key ids.
#[derive(Clone)]
pub struct Keyring {
    pub(super) primary: KeyEntry,
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
