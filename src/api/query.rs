//! The query-string extractor of every list route: like `actix_web::web::Query`, but a value
//! that does not parse is answered 422 naming its parameter (`limit`, `automation_id`), which
//! the deserializer's own message does not say ("invalid digit found in string").

use actix_web::{FromRequest, HttpRequest, dev::Payload};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A request's query string, deserialized into `T`.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T> Query<T> {
    /// The deserialized query.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Query<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(parse(req.query_string()).map(Query))
    }
}

/// Deserializes `query`; a refusal names the parameter at fault.
pub fn parse<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let pairs = form_urlencoded::parse(query.as_bytes());
    serde_path_to_error::deserialize(serde_urlencoded::Deserializer::new(pairs)).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner().to_string();
        // Unknown and repeated parameters fail at the level of the whole query: their name is
        // the first quoted word of the message.
        let field = if path.is_empty() || path == "." {
            inner
                .split('`')
                .nth(1)
                .map_or_else(|| "query".to_owned(), str::to_owned)
        } else {
            path
        };
        ApiError::field(field, inner)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Q {
        limit: Option<u64>,
        automation_id: Option<uuid::Uuid>,
        source: Option<String>,
    }

    fn field_of(query: &str) -> String {
        match parse::<Q>(query) {
            Err(ApiError::Validation(errors)) => errors[0].field.clone(),
            other => panic!("{query}: {other:?}"),
        }
    }

    #[test]
    fn a_bad_value_names_its_parameter() {
        for query in [
            "limit=-1",
            "limit=abc",
            "limit=",
            "limit=99999999999999999999",
            "limit=+5",
        ] {
            assert_eq!(field_of(query), "limit", "{query}");
        }
        for query in [
            "automation_id=xyz",
            "automation_id=abc",
            "source=a&automation_id=zzzzzzzz-0000-0000-0000-000000000000",
        ] {
            assert_eq!(field_of(query), "automation_id", "{query}");
        }
    }

    #[test]
    fn unknown_and_repeated_parameters_are_named() {
        assert_eq!(field_of("color=red"), "color");
        assert_eq!(field_of("limit=1&limit=2"), "limit");
    }

    #[test]
    fn good_queries_parse() {
        let q = parse::<Q>("limit=5&source=github").unwrap();
        assert_eq!((q.limit, q.source.as_deref()), (Some(5), Some("github")));
        assert!(parse::<Q>("").unwrap().limit.is_none());
    }
}
