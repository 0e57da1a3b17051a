//! The page window of offset-paginated repository queries. Reading it from a request (and
//! answering a bad one) is the API's business: see `api::pagination`.

/// A validated `limit` + `offset`.
#[derive(Debug, Clone, Copy)]
pub struct OffsetPage {
    /// Page size.
    pub limit: u64,
    /// Items skipped.
    pub offset: u64,
}
