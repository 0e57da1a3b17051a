//! Refuses U+0000 in a request's path or query before any handler runs: neither engine can store
//! or compare it (PostgreSQL refuses it in text, so a filter holding one would fail the query),
//! and no id, slug, key or status contains one. 422 naming the parameter (`path` for the path).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use percent_encoding::percent_decode_str;

use crate::error::ApiError;

/// The first part of `path` and `query` that decodes to something holding a NUL byte: the query
/// parameter's name, or `path`.
pub fn nul_in(path: &str, query: &str) -> Option<String> {
    let has_nul = |s: &str| percent_decode_str(s).any(|b| b == 0);
    if has_nul(path) {
        return Some("path".to_owned());
    }
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (has_nul(name) || has_nul(value)).then(|| {
            let name = percent_decode_str(name)
                .decode_utf8_lossy()
                .replace('\0', "");
            if name.is_empty() {
                "query".to_owned()
            } else {
                name
            }
        })
    })
}

/// Middleware on `/v1`: [`nul_in`] answered as a 422.
pub async fn refuse_nul(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if let Some(field) = nul_in(req.path(), req.query_string()) {
        return Err(ApiError::field(field, "must not contain U+0000").into());
    }
    next.call(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_parameter_holding_a_nul() {
        assert_eq!(
            nul_in("/v1/events", "source=a%00b&limit=2").as_deref(),
            Some("source")
        );
        assert_eq!(
            nul_in("/v1/events", "limit=2&event_key=%00").as_deref(),
            Some("event_key")
        );
        assert_eq!(nul_in("/v1/events/x%00/y", "").as_deref(), Some("path"));
        assert_eq!(nul_in("/v1/events", "%00=1").as_deref(), Some("query"));
        assert_eq!(
            nul_in("/v1/events", "source=a%01b&x=%2500").as_deref(),
            None
        );
    }
}
