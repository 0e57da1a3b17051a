//! `since` / `until` on the history lists (`GET /v1/events`, the run lists), turned into bounds on
//! the ids. Ids are UUID v7 whose first 48 bits are the Unix time in milliseconds at which the row
//! was received (events) or at which its event was received (runs), and the lists are in id order,
//! so a time window is an id range: one index on `(…, id)` serves the filter, the window and the
//! cursor together. The bound is the id's millisecond: `since` keeps ids of that millisecond or
//! later, `until` ids of that millisecond or earlier (both inclusive).

use chrono::{DateTime, Utc};
use sea_orm::DbBackend;
use sea_orm::sea_query::Expr;
use uuid::Uuid;

/// A `since` or `until` that cannot be a window (the API answers 422 naming `field`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{field} {message}")]
pub struct WindowError {
    /// `since` or `until`.
    pub field: &'static str,
    /// What is wrong with it.
    pub message: &'static str,
}

/// Largest millisecond a UUID v7 can carry (48 bits).
const MAX_MILLIS: i64 = (1 << 48) - 1;

/// A validated time window as id bounds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IdWindow {
    /// Ids at or above this one (from `since`).
    pub from: Option<Uuid>,
    /// Ids strictly below this one (from `until`: the first id of the next millisecond).
    pub below: Option<Uuid>,
}

impl IdWindow {
    /// Validates `since` and `until` (RFC 3339, `since` not after `until`; 422 naming the field).
    pub fn parse(since: Option<&str>, until: Option<&str>) -> Result<Self, WindowError> {
        let since = since.map(|s| instant_of("since", s)).transpose()?;
        let until = until.map(|s| instant_of("until", s)).transpose()?;
        // Compared at full precision, although the bounds keep milliseconds only.
        if let (Some(since), Some(until)) = (since, until)
            && since > until
        {
            return Err(WindowError {
                field: "until",
                message: "must not be before since",
            });
        }
        Ok(Self {
            from: since.map(|at| first_id_of(at.timestamp_millis())),
            below: until.map(|at| first_id_of(at.timestamp_millis() + 1)),
        })
    }
}

/// A condition on `id` (a window bound or the cursor) as the planner should weigh it. SQLite has no
/// statistics unless `ANALYZE` ran, and guesses that a range on `id` keeps few rows: with a window
/// it would walk the org's `(org_id, id)` index and check the filter row by row rather than use the
/// filter's `(org_id, <filter>, id)` index, which holds the same range. `likelihood` (a no-op at
/// run time) says the bound keeps most rows, so it picks the index with the most equality columns.
pub fn id_bound(backend: DbBackend, bound: Expr) -> Expr {
    match backend {
        DbBackend::Sqlite => Expr::cust_with_expr("likelihood(?, 0.9)", bound),
        _ => bound,
    }
}

/// An RFC 3339 timestamp whose millisecond an id can carry.
fn instant_of(field: &'static str, text: &str) -> Result<DateTime<Utc>, WindowError> {
    let at = DateTime::parse_from_rfc3339(text)
        .map_err(|_| WindowError {
            field,
            message: "must be an RFC 3339 timestamp, e.g. 2026-12-03T04:05:06Z",
        })?
        .with_timezone(&Utc);
    if !(0..MAX_MILLIS).contains(&at.timestamp_millis()) {
        return Err(WindowError {
            field,
            message: "must be after 1970-01-01T00:00:00Z",
        });
    }
    Ok(at)
}

/// The smallest id of rows received at `at` or later (ids of that millisecond included).
pub fn first_id_at(at: DateTime<Utc>) -> Uuid {
    first_id_of(at.timestamp_millis().clamp(0, MAX_MILLIS))
}

/// The smallest id of a millisecond: its time bits, every other bit zero.
fn first_id_of(ms: i64) -> Uuid {
    let mut bytes = [0u8; 16];
    let time = ms.to_be_bytes();
    bytes[..6].copy_from_slice(&time[2..]);
    Uuid::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn window(since: Option<&str>, until: Option<&str>) -> IdWindow {
        IdWindow::parse(since, until).unwrap()
    }

    #[test]
    fn ids_of_the_bounding_milliseconds_are_inside() {
        let at = DateTime::parse_from_rfc3339("2026-12-03T04:05:06.789Z").unwrap();
        let ms = u64::try_from(at.timestamp_millis()).unwrap();
        let id = uuid::Builder::from_unix_timestamp_millis(ms, &[0xff; 10]).into_uuid();
        let w = window(
            Some("2026-12-03T04:05:06.789Z"),
            Some("2026-12-03T05:05:06.789+01:00"),
        );
        assert!(w.from.unwrap() <= id && id < w.below.unwrap());
        let next = uuid::Builder::from_unix_timestamp_millis(ms + 1, &[0; 10]).into_uuid();
        assert!(next >= w.below.unwrap());
        let before = uuid::Builder::from_unix_timestamp_millis(ms - 1, &[0xff; 10]).into_uuid();
        assert!(before < w.from.unwrap());
    }

    #[test]
    fn open_ends_and_bad_input() {
        assert_eq!(window(None, None), IdWindow::default());
        assert!(window(Some("2026-01-01T00:00:00Z"), None).below.is_none());
        for (since, until, field) in [
            (Some("yesterday"), None, "since"),
            (None, Some("2026-13-01T00:00:00Z"), "until"),
            (Some("1969-12-31T23:59:59Z"), None, "since"),
            (
                Some("2026-02-01T00:00:00Z"),
                Some("2026-01-01T00:00:00Z"),
                "until",
            ),
            // Within one millisecond, still the wrong way round.
            (
                Some("2026-01-01T00:00:00.0009Z"),
                Some("2026-01-01T00:00:00.0001Z"),
                "until",
            ),
        ] {
            let err = IdWindow::parse(since, until).unwrap_err();
            assert!(format!("{err:?}").contains(field), "{err:?}");
        }
    }
}
