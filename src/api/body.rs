//! `Body<T>`: the JSON extractor of every endpoint. Malformed JSON answers 400 with the parser's
//! message; a well-formed body that does not fit (unknown field, wrong type, missing field) answers
//! 422 naming the field; a body over the limit answers 413. `OptionalBody<T>` is the same for
//! endpoints whose body may be absent: an empty body is `None`, any other body must be valid (a
//! malformed optional body is never silently replaced by defaults).

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use futures_util::StreamExt as _;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON request body, deserialized strictly.
#[derive(Debug)]
pub struct Body<T>(pub T);

/// Parses `bytes` as `T`, classifying failures as 400 (syntax) or 422 (shape, with the path).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let message = strip_position(&inner.to_string());
                ApiError::field(crate::validation::field_of(&path, &message), message)
            }
            _ => ApiError::MalformedJson(inner.to_string()),
        }
    })?;
    de.end()
        .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    Ok(value)
}

/// Drops serde_json's " at line 1 column 17" suffix from data errors, which points into the body
/// rather than naming the field.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// Reads the request body, refusing one over `max_body_bytes` (declared or actual) with 413.
fn read_limited(
    req: &HttpRequest,
    payload: &mut Payload,
) -> impl Future<Output = Result<web::BytesMut, ApiError>> + 'static {
    let limit = req
        .app_data::<web::Data<AppState>>()
        .map_or(1024 * 1024, |state| state.settings.max_body_bytes);
    let mut payload = payload.take();
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    async move {
        if declared.is_some_and(|len| len > limit) {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        let mut bytes = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| ApiError::MalformedJson(e.to_string()))?;
            if bytes.len() + chunk.len() > limit {
                return Err(ApiError::PayloadTooLarge(limit));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Body<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let read = read_limited(req, payload);
        Box::pin(async move { parse_json(&read.await?).map(Body) })
    }
}

/// A JSON request body that may be absent (no bytes, or only whitespace); when present it is
/// parsed as strictly as [`Body`].
#[derive(Debug)]
pub struct OptionalBody<T>(pub Option<T>);

impl<T: DeserializeOwned + 'static> FromRequest for OptionalBody<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let read = read_limited(req, payload);
        Box::pin(async move {
            let bytes = read.await?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(OptionalBody(None));
            }
            parse_json(&bytes).map(|value| OptionalBody(Some(value)))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        url: String,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        config: Inner,
    }

    fn field_of(err: ApiError) -> String {
        match err {
            ApiError::Validation(errors) => errors[0].field.clone(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn classifies_errors() {
        assert!(matches!(
            parse_json::<Outer>(b"{"),
            Err(ApiError::MalformedJson(_))
        ));
        assert!(matches!(
            parse_json::<Outer>(br#"{"name":"a","config":{"url":"x"}} x"#),
            Err(ApiError::MalformedJson(_))
        ));
        let unknown = parse_json::<Outer>(br#"{"name":"a","config":{"url":"x","bogus":1}}"#);
        assert_eq!(field_of(unknown.unwrap_err()), "config.bogus");
        let wrong = parse_json::<Outer>(br#"{"name":1,"config":{"url":"x"}}"#);
        assert_eq!(field_of(wrong.unwrap_err()), "name");
        assert!(parse_json::<Outer>(br#"{"name":"a","config":{"url":"x"}}"#).is_ok());
    }
}
