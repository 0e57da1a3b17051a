//! `Body<T>`: the JSON extractor of every endpoint. Malformed JSON answers 400 with the parser's
//! message; a well-formed body that does not fit (unknown field, wrong type, missing field) answers
//! 422 naming the field; a body over the limit answers 413. `OptionalBody<T>` is the same for
//! endpoints whose body may be absent: an empty body is `None`, any other body must be valid (a
//! malformed optional body is never silently replaced by defaults). [`NoBody`] is the body of an
//! action that takes none: absent, `null` or `{}`, anything else refused as any body would be.
//! A body sent as something other than JSON (`Content-Type`) answers 415, as does one compressed
//! (`Content-Encoding`); without a `Content-Type` it is read as JSON.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use futures_util::StreamExt as _;
use serde::de::DeserializeOwned;

use crate::api::state::AppState;
use crate::error::ApiError;

/// A JSON request body, deserialized strictly.
#[derive(Debug)]
pub struct Body<T>(pub T);

/// Parses `bytes` as `T`, classifying failures as 400 (syntax) or 422 (shape, with the path).
/// Every body is a JSON object: serde would also build a struct from an array of its fields
/// (`[]` for a struct whose fields all have defaults), which the schema does not allow.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Ok(_) => Err(ApiError::field("body", "must be a JSON object")),
            Err(err) => Err(ApiError::MalformedJson(err.to_string())),
        };
    }
    // JSON can carry U+0000 only as the escape `\u0000`: look closer only when that text is there.
    if bytes.windows(6).any(|w| w == b"\\u0000")
        && let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes)
        && let Some(field) = nul_at(&value, "")
    {
        return Err(ApiError::field(field, "must not contain U+0000"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let direct = serde_path_to_error::deserialize(&mut de)
        .map_err(classify)
        .and_then(|value: T| {
            de.end()
                .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
            Ok(value)
        });
    match direct {
        Err(err @ ApiError::Validation(_)) => integral_floats_as_integers(bytes)
            .map_or(Err(err), |value| {
                serde_path_to_error::deserialize(value).map_err(classify)
            }),
        other => other,
    }
}

/// The path of the first string or key holding U+0000 (which neither engine can store or compare).
fn nul_at(value: &serde_json::Value, path: &str) -> Option<String> {
    let here = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        serde_json::Value::String(text) if text.contains('\0') => Some(if path.is_empty() {
            "body".to_owned()
        } else {
            path.to_owned()
        }),
        serde_json::Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            nul_at(
                item,
                &format!("{}[{i}]", if path.is_empty() { "body" } else { path }),
            )
        }),
        serde_json::Value::Object(map) => map.iter().find_map(|(key, item)| {
            if key.contains('\0') {
                Some(here(&key.replace('\0', "")))
            } else {
                nul_at(item, &here(key))
            }
        }),
        _ => None,
    }
}

/// A serde failure as 422 naming the field (shape) or 400 (syntax).
fn classify(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    match inner.classify() {
        serde_json::error::Category::Data => {
            let message = strip_position(&inner.to_string());
            ApiError::field(crate::validation::field_of(&path, &message), message)
        }
        _ => ApiError::MalformedJson(inner.to_string()),
    }
}

/// JSON Schema counts `3.0` as an integer, serde does not: the body with every integral float
/// (within ±2^53) written as an integer, when it holds one; `None` when nothing would change.
fn integral_floats_as_integers(bytes: &[u8]) -> Option<serde_json::Value> {
    fn rewrite(value: &mut serde_json::Value) -> bool {
        match value {
            serde_json::Value::Number(n) => match n.as_f64() {
                Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 => {
                    // In range and integral: the conversion is exact.
                    #[allow(clippy::cast_possible_truncation)]
                    let int = f as i64;
                    *value = serde_json::Value::from(int);
                    true
                }
                _ => false,
            },
            serde_json::Value::Array(items) => items.iter_mut().fold(false, |c, v| rewrite(v) | c),
            serde_json::Value::Object(map) => map.values_mut().fold(false, |c, v| rewrite(v) | c),
            _ => false,
        }
    }
    let mut value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    rewrite(&mut value).then_some(value)
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
    let media = media_problem(req);
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
        // An empty body has no type to check (an action's, or an optional one left out).
        match media {
            Some(problem) if !bytes.trim_ascii().is_empty() => {
                Err(ApiError::UnsupportedMediaType(problem))
            }
            _ => Ok(bytes),
        }
    }
}

/// Why the request's body cannot be read as JSON by its headers: a `Content-Type` that is not
/// JSON (`application/json`, `application/*+json`) or any `Content-Encoding` but `identity`.
fn media_problem(req: &HttpRequest) -> Option<String> {
    use actix_web::http::header::{CONTENT_ENCODING, CONTENT_TYPE};
    let headers = req.headers();
    if let Some(encoding) = headers.get(CONTENT_ENCODING) {
        let encoding = encoding.to_str().unwrap_or("?").trim();
        if !encoding.eq_ignore_ascii_case("identity") {
            return Some(format!(
                "Content-Encoding `{encoding}` is not accepted; send the body uncompressed"
            ));
        }
    }
    let content_type = headers.get(CONTENT_TYPE)?;
    let text = content_type.to_str().unwrap_or("?");
    let essence = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let json = essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"));
    (!json).then(|| {
        format!(
            "Content-Type `{text}` is not accepted; send JSON with `Content-Type: application/json`"
        )
    })
}

impl<T: DeserializeOwned + 'static> FromRequest for Body<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let read = read_limited(req, payload);
        Box::pin(async move { parse_json(&read.await?).map(Body) })
    }
}

/// A JSON request body that may be absent (no bytes, only whitespace, or the JSON `null`); when
/// present it is parsed as strictly as [`Body`].
#[derive(Debug)]
pub struct OptionalBody<T>(pub Option<T>);

impl<T: DeserializeOwned + 'static> FromRequest for OptionalBody<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let read = read_limited(req, payload);
        Box::pin(async move {
            let bytes = read.await?;
            let text = bytes.trim_ascii();
            if text.is_empty() || text == b"null" {
                return Ok(OptionalBody(None));
            }
            parse_json(&bytes).map(|value| OptionalBody(Some(value)))
        })
    }
}

/// The body of an action that takes none: absent, `null` or `{}`. A malformed body is a 400 and
/// any field a 422 naming it, as for every body; nothing sent is silently ignored.
#[derive(Debug)]
pub struct NoBody;

/// The empty object [`NoBody`] accepts.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoFields {}

impl FromRequest for NoBody {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let read = OptionalBody::<NoFields>::from_request(req, payload);
        Box::pin(async move { read.await.map(|_| NoBody) })
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

    #[test]
    fn an_integral_float_is_an_integer_as_json_schema_says() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Ttl {
            ttl_s: u32,
        }
        assert_eq!(parse_json::<Ttl>(br#"{"ttl_s": 30.0}"#).unwrap().ttl_s, 30);
        assert_eq!(parse_json::<Ttl>(br#"{"ttl_s": 3e1}"#).unwrap().ttl_s, 30);
        assert_eq!(
            field_of(parse_json::<Ttl>(br#"{"ttl_s": 30.5}"#).unwrap_err()),
            "ttl_s"
        );
        assert_eq!(
            field_of(parse_json::<Ttl>(br#"{"ttl_s": -1.0}"#).unwrap_err()),
            "ttl_s"
        );
        // Anything else wrong is still reported as it was.
        assert_eq!(
            field_of(parse_json::<Ttl>(br#"{"ttl_s": 30.0, "x": 1}"#).unwrap_err()),
            "x"
        );
    }

    #[test]
    fn nul_is_refused_naming_where_it_is() {
        let nul = parse_json::<Outer>(br#"{"name":"a\u0000","config":{"url":"x"}}"#);
        assert_eq!(field_of(nul.unwrap_err()), "name");
        let deep = parse_json::<Outer>(br#"{"name":"a","config":{"url":"x\u0000"}}"#);
        assert_eq!(field_of(deep.unwrap_err()), "config.url");
        // An escaped backslash followed by `u0000` is no NUL.
        assert!(parse_json::<Outer>(br#"{"name":"a\\u0000","config":{"url":"x"}}"#).is_ok());
    }

    #[test]
    fn a_body_is_an_object_not_an_array_of_fields() {
        let array = parse_json::<Outer>(br#"["a", {"url": "x"}]"#);
        assert_eq!(field_of(array.unwrap_err()), "body");
        assert_eq!(field_of(parse_json::<Outer>(b" 3").unwrap_err()), "body");
        assert!(matches!(
            parse_json::<Outer>(b"[1,"),
            Err(ApiError::MalformedJson(_))
        ));
    }
}
