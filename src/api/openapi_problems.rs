//! Documents the error answers every operation can give, as RFC 9457 problem documents: the
//! handlers' annotations name their own errors, and this adds the ones that come from the shared
//! extractors and middleware (authentication, body and query parsing, storage outages) and gives
//! every error answer the `application/problem+json` content type the API actually sends.

use utoipa::Modify;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::{Content, OpenApi, RefOr, Response};

/// The modifier applied to [`super::openapi::ApiDoc`].
pub struct ProblemResponses;

const PROBLEM: &str = "application/problem+json";

/// Errors that may answer `operation` at `path`, from what it takes.
fn shared_errors(path: &str, operation: &Operation) -> Vec<(&'static str, &'static str)> {
    let mut errors = Vec::new();
    if !path.starts_with("/v1/") {
        if path == "/readyz" {
            errors.push(("503", "Storage is unreachable"));
        }
        return errors;
    }
    let params = operation.parameters.as_deref().unwrap_or_default();
    let has_body = operation.request_body.is_some();
    if has_body || !params.is_empty() {
        errors.push(("400", "Malformed request (body or query)"));
        errors.push(("422", "Invalid input; `errors` names each field"));
    }
    if has_body {
        errors.push(("413", "The body is larger than allowed"));
        errors.push(("415", "The body's content type is not accepted"));
    }
    if params
        .iter()
        .any(|p| matches!(p.parameter_in, ParameterIn::Path))
    {
        errors.push(("404", "No such resource in the caller's org"));
    }
    if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
        errors.push(("401", "Missing, unknown or revoked API key"));
        errors.push(("403", "The key's role may not do this"));
    }
    errors.push(("503", "Storage is unavailable; retry after `Retry-After`"));
    errors
}

fn problem_content() -> Content {
    Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
        "Problem",
    ))))
}

fn document(path: &str, operation: &mut Operation) {
    for (status, description) in shared_errors(path, operation) {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(Response::new(description)));
    }
    for (status, response) in &mut operation.responses.responses {
        let is_error = status.starts_with('4') || status.starts_with('5');
        if let (true, RefOr::T(response)) = (is_error, response) {
            response.content.clear();
            response
                .content
                .insert(PROBLEM.to_owned(), problem_content());
        }
    }
}

impl Modify for ProblemResponses {
    fn modify(&self, openapi: &mut OpenApi) {
        for (path, item) in &mut openapi.paths.paths {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                document(path, operation);
            }
        }
    }
}
