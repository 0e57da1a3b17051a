//! The sealed blob's framing (see the module docs of [`crate::crypto`]) and the slot it is bound
//! to as associated data.

use super::entry::check_kid;
use super::{CryptoError, FORMAT_VERSION, MAX_KID_LEN, NONCE_LEN, TAG_LEN};

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

/// The framing of a blob, every part length-checked.
pub(super) struct BlobParts<'a> {
    /// Version byte, key id length and key id: authenticated as associated data.
    pub(super) header: &'a [u8],
    pub(super) kid: &'a str,
    pub(super) nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the tag.
    pub(super) sealed: &'a [u8],
}

impl<'a> BlobParts<'a> {
    pub(super) fn split(blob: &'a [u8]) -> Result<Self, CryptoError> {
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
pub(super) fn associated_data(header: &[u8], slot: SecretSlot<'_>) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + slot.table.len() + slot.column.len() + 2 + 16);
    aad.extend_from_slice(header);
    aad.extend_from_slice(slot.table.as_bytes());
    aad.push(0);
    aad.extend_from_slice(slot.column.as_bytes());
    aad.push(0);
    aad.extend_from_slice(slot.row_id.as_bytes());
    aad
}
