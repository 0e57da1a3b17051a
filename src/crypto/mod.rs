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

mod blob;
mod entry;
mod error;
mod keyring;

pub use blob::SecretSlot;
pub use error::{CryptoError, KeyringError};
pub use keyring::Keyring;

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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
