//! The one API error type and its HTTP mapping: every failure leaves as RFC 9457
//! `application/problem+json` with the offending fields named.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

pub use crate::validation::FieldError;

/// The body of every error response (RFC 9457).
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type (`about:blank` style tags under `/problems/`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the problem type.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// What happened in this case.
    pub detail: String,
    /// The fields at fault, when the input was invalid.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// Every error an API handler can return.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON at all (400).
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// The request is not what the endpoint speaks, e.g. a plain GET of the WebSocket stream (400).
    #[error("{0}")]
    BadRequest(String),
    /// The input is well-formed but invalid (422).
    #[error("{}", summarize(.0))]
    Validation(Vec<FieldError>),
    /// Missing, unknown or revoked API key (401).
    #[error("missing or invalid API key")]
    Unauthorized,
    /// An inbound webhook's signature was missing, wrong or stale (401).
    #[error("webhook signature rejected: {detail}")]
    SignatureRejected {
        /// Why, for the caller.
        detail: String,
        /// The timestamp was outside the tolerance (a replay or a skewed clock).
        stale: bool,
    },
    /// The body's content type is not accepted (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Too many requests; retry after the given time (429).
    #[error("rate limit exceeded, retry later")]
    RateLimited(std::time::Duration),
    /// A capacity limit is reached (429, `Retry-After: 5`); the message names the limit.
    #[error("{0}")]
    AtCapacity(String),
    /// The key's role may not do this (403).
    #[error("this API key's role ({0}) may not do this")]
    Forbidden(String),
    /// No such resource in the caller's org (404).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request conflicts with the current state (409).
    #[error("{detail}")]
    Conflict {
        /// The field at fault, if any.
        field: Option<String>,
        /// What conflicts.
        detail: String,
    },
    /// The path exists but not with this method (405, `Allow` lists the methods it has).
    #[error("method not allowed here; allowed: {0}")]
    MethodNotAllowed(String),
    /// The body is larger than allowed (413).
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// Storage is unavailable (503, with `Retry-After`).
    #[error("storage is unavailable, retry later")]
    Unavailable,
    /// Anything else (500); the cause is logged, never sent.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

fn summarize(errors: &[FieldError]) -> String {
    match errors {
        [one] => format!("{}: {}", one.field, one.message),
        many => format!("{} fields are invalid", many.len()),
    }
}

impl ApiError {
    /// A 422 for a single field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    fn title(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "Malformed JSON",
            Self::BadRequest(_) => "Bad request",
            Self::Validation(_) => "Invalid input",
            Self::Unauthorized | Self::SignatureRejected { .. } => "Unauthorized",
            Self::UnsupportedMediaType(_) => "Unsupported media type",
            Self::RateLimited(_) | Self::AtCapacity(_) => "Too many requests",
            Self::Forbidden(_) => "Forbidden",
            Self::NotFound(_) => "Not found",
            Self::Conflict { .. } => "Conflict",
            Self::MethodNotAllowed(_) => "Method not allowed",
            Self::PayloadTooLarge(_) => "Payload too large",
            Self::Unavailable => "Service unavailable",
            Self::Internal(_) => "Internal error",
        }
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(err: sea_orm::DbErr) -> Self {
        crate::db::pool_check::note_error(&err);
        if crate::db::is_unavailable(&err) {
            tracing::warn!(error = %err, "storage unavailable");
            Self::Unavailable
        } else {
            Self::Internal(err.into())
        }
    }
}

impl From<crate::db::window::WindowError> for ApiError {
    fn from(err: crate::db::window::WindowError) -> Self {
        Self::field(err.field, err.message)
    }
}

impl From<crate::db::slugs::ClaimError> for ApiError {
    fn from(err: crate::db::slugs::ClaimError) -> Self {
        match err {
            crate::db::slugs::ClaimError::Taken(owner) => Self::Conflict {
                field: Some("source".to_owned()),
                detail: format!("slug is already used by a {owner} of this org"),
            },
            crate::db::slugs::ClaimError::Db(err) => err.into(),
        }
    }
}

impl From<sea_orm::TransactionError<ApiError>> for ApiError {
    fn from(err: sea_orm::TransactionError<ApiError>) -> Self {
        match err {
            sea_orm::TransactionError::Connection(db) => db.into(),
            sea_orm::TransactionError::Transaction(api) => api,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::MalformedJson(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized | Self::SignatureRejected { .. } => StatusCode::UNAUTHORIZED,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited(_) | Self::AtCapacity(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(cause) = self {
            tracing::error!(error = ?cause, "request failed");
        }
        let status = self.status_code();
        let errors = match self {
            Self::Validation(errors) => errors.clone(),
            Self::Conflict {
                field: Some(field),
                detail,
            } => vec![FieldError::new(field.clone(), detail.clone())],
            _ => Vec::new(),
        };
        let problem = Problem {
            kind: format!("/problems/{}", status.as_u16()),
            title: self.title().to_owned(),
            status: status.as_u16(),
            detail: self.to_string(),
            errors,
        };
        let mut response = HttpResponse::build(status);
        response.content_type("application/problem+json");
        if matches!(self, Self::Unavailable | Self::AtCapacity(_)) {
            response.insert_header((header::RETRY_AFTER, "5"));
        }
        if let Self::RateLimited(wait) = self {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response.insert_header((header::RETRY_AFTER, seconds.max(1).to_string()));
        }
        if let Self::MethodNotAllowed(allow) = self {
            response.insert_header((header::ALLOW, allow.clone()));
        }
        if matches!(self, Self::Unauthorized) {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.json(problem)
    }
}
