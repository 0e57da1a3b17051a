//! Pagination parameters of the list endpoints, read and checked (422 naming the parameter):
//! `limit` + `offset` for configuration resources, an opaque cursor (the last id seen, ids being
//! time-ordered UUID v7) for events and runs.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::db::pagination::OffsetPage;
use crate::error::ApiError;

/// Largest page size.
pub const MAX_LIMIT: u64 = 200;
/// Page size when none is given.
pub const DEFAULT_LIMIT: u64 = 50;
/// Largest `offset` (configuration lists are far shorter; beyond it, narrow the list instead).
pub const MAX_OFFSET: u64 = 1_000_000;

/// Query parameters of offset-paginated lists.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OffsetQuery {
    /// Page size, 1..=200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
    /// Items to skip, 0..=1000000 (default 0).
    #[param(minimum = 0, maximum = 1_000_000)]
    pub offset: Option<u64>,
}

impl OffsetQuery {
    /// Validates the parameters (422 naming `limit` or `offset`).
    pub fn page(&self) -> Result<OffsetPage, ApiError> {
        let offset = self.offset.unwrap_or(0);
        if offset > MAX_OFFSET {
            return Err(ApiError::field(
                "offset",
                format!("must be between 0 and {MAX_OFFSET}"),
            ));
        }
        Ok(OffsetPage {
            limit: check_limit(self.limit)?,
            offset,
        })
    }
}

/// Validates a `limit` parameter.
pub fn check_limit(limit: Option<u64>) -> Result<u64, ApiError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::field("limit", "must be between 1 and 200")),
    }
}

/// The list a cursor belongs to: a cursor of one list is refused by another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// `GET /v1/events`.
    Events = 1,
    /// `GET /v1/runs` and `GET /v1/automations/{id}/runs`.
    Runs = 2,
}

/// Encodes the id after which the next page of `listing` starts.
pub fn encode_cursor(listing: Listing, last: Uuid) -> String {
    let mut bytes = [0u8; 17];
    bytes[0] = listing as u8;
    bytes[1..].copy_from_slice(last.as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes a cursor produced by [`encode_cursor`] for the same `listing` (422 naming `cursor`
/// otherwise). A cursor of the untagged form that releases before 2026-12-05 issued (the id
/// alone) is still read, so a listing paged across an upgrade goes on.
pub fn decode_cursor(listing: Listing, cursor: &str) -> Result<Uuid, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| match bytes.split_first() {
            _ if bytes.len() == 16 => Uuid::from_slice(&bytes).ok(),
            Some((tag, id)) if *tag == listing as u8 => Uuid::from_slice(id).ok(),
            _ => None,
        })
        .ok_or_else(|| ApiError::field("cursor", "is not a cursor this list returned"))
}

/// Splits one extra fetched row off a page: returns the page and the cursor for the next one.
pub fn split_page<T>(
    listing: Listing,
    mut rows: Vec<T>,
    limit: u64,
    id: impl Fn(&T) -> Uuid,
) -> (Vec<T>, Option<String>) {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if rows.len() > limit {
        rows.truncate(limit);
        let next = rows.last().map(|row| encode_cursor(listing, id(row)));
        (rows, next)
    } else {
        (rows, None)
    }
}
