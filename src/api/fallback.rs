//! What answers a request no route took: 405 with `Allow` when the path is one the API documents
//! (under another method), else 404. The documented paths come from the OpenAPI document, so the
//! two cannot drift apart. And `HEAD`, answered wherever `GET` is, as RFC 9110 asks.

use std::sync::OnceLock;

use actix_web::{HttpRequest, HttpResponse};
use utoipa::OpenApi;
use utoipa::openapi::path::PathItem;

use super::openapi::ApiDoc;
use crate::error::ApiError;

/// One documented path: its segments (`None` for a `{parameter}`) and the methods it has.
struct KnownPath {
    segments: Vec<Option<String>>,
    allow: String,
}

impl KnownPath {
    fn matches(&self, path: &str) -> bool {
        let mut parts = path.trim_start_matches('/').split('/');
        let all_matched = self.segments.iter().all(|segment| match parts.next() {
            Some(part) if !part.is_empty() => segment.as_deref().is_none_or(|s| s == part),
            _ => false,
        });
        all_matched && parts.next().is_none()
    }
}

fn methods(item: &PathItem) -> Vec<&'static str> {
    [
        ("GET", item.get.is_some()),
        ("HEAD", item.get.is_some()),
        ("POST", item.post.is_some()),
        ("PUT", item.put.is_some()),
        ("PATCH", item.patch.is_some()),
        ("DELETE", item.delete.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, present)| present.then_some(name))
    .collect()
}

fn known_paths() -> &'static [KnownPath] {
    static KNOWN: OnceLock<Vec<KnownPath>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        ApiDoc::openapi()
            .paths
            .paths
            .iter()
            .map(|(template, item)| KnownPath {
                segments: template
                    .trim_start_matches('/')
                    .split('/')
                    .map(|s| (!s.starts_with('{')).then(|| s.to_owned()))
                    .collect(),
                allow: methods(item).join(", "),
            })
            .collect()
    })
}

/// The answer for a request to `path` with `method` that no handler took: 405 (with `Allow`)
/// when the most specific documented path it matches (the one with the most literal segments:
/// `/v1/automations/test` over `/v1/automations/{id}`) has other methods only, else 404.
pub fn unrouted_error(method: &str, path: &str) -> ApiError {
    let best = known_paths()
        .iter()
        .filter(|known| known.matches(path))
        .max_by_key(|known| known.segments.iter().filter(|s| s.is_some()).count());
    match best {
        Some(known) if !known.allow.split(", ").any(|m| m == method) => {
            ApiError::MethodNotAllowed(known.allow.clone())
        }
        _ => ApiError::NotFound("route"),
    }
}

/// The default service: [`unrouted_error`] as a problem document.
pub async fn unrouted(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(unrouted_error(req.method().as_str(), req.path()))
}

/// Middleware: a `HEAD` request is routed as the `GET` it asks about; the server sends the
/// response's head only (the HTTP codec remembers the request was a `HEAD`).
pub async fn head_as_get(
    mut req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    // An upgrade (the live stream's WebSocket) is a GET or nothing: a HEAD must not open one.
    let upgrade = req.headers().contains_key(actix_web::http::header::UPGRADE);
    if req.method() == actix_web::http::Method::HEAD && !upgrade {
        req.head_mut().method = actix_web::http::Method::GET;
    }
    next.call(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_paths_match_with_parameters_and_nothing_else() {
        let known = KnownPath {
            segments: vec![
                Some("v1".into()),
                Some("runs".into()),
                None,
                Some("cancel".into()),
            ],
            allow: "POST".into(),
        };
        assert!(known.matches("/v1/runs/abc/cancel"));
        assert!(!known.matches("/v1/runs//cancel"));
        assert!(!known.matches("/v1/runs/abc/cancel/more"));
        assert!(!known.matches("/v1/runs/abc"));
        assert!(!known.matches("/v1/jobs/abc/cancel"));
    }

    #[test]
    fn the_most_specific_documented_path_decides() {
        let allow = |err: ApiError| match err {
            ApiError::MethodNotAllowed(allow) => allow,
            other => panic!("expected 405, got {other:?}"),
        };
        assert_eq!(
            allow(unrouted_error("PATCH", "/v1/automations/test")),
            "POST"
        );
        assert_eq!(allow(unrouted_error("TRACE", "/healthz")), "GET, HEAD");
        assert!(matches!(
            unrouted_error("GET", "/v1/nothing-here"),
            ApiError::NotFound(_)
        ));
        // A documented method on a matching path that no handler took (a malformed id): 404.
        assert!(matches!(
            unrouted_error("PATCH", "/v1/automations/not-a-uuid"),
            ApiError::NotFound(_)
        ));
    }

    #[test]
    fn every_documented_path_is_known_with_its_methods() {
        let healthz = known_paths()
            .iter()
            .find(|k| k.matches("/healthz"))
            .map(|k| k.allow.as_str());
        assert_eq!(healthz, Some("GET, HEAD"));
        let sources = known_paths()
            .iter()
            .find(|k| k.matches("/v1/websocket-sources"))
            .map(|k| k.allow.as_str());
        assert_eq!(sources, Some("GET, HEAD, POST"));
    }
}
