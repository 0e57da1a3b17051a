//! Pure input-validation helpers shared by every resource: field errors, slugs, names and
//! expressions. Handlers collect every problem of a body and answer them together (422).

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;
use utoipa::ToSchema;

use crate::pipeline::expr::CompiledExpr;

/// One invalid input: `field` is a dotted path into the request body (or a query parameter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// Dotted path of the field, e.g. `config.url` or `trigger.on[1]`.
    pub field: String,
    /// What is wrong with it, in words a user can act on.
    pub message: String,
}

impl FieldError {
    /// A field error from anything printable.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Collects field errors while a body is checked.
#[derive(Debug, Default)]
pub struct Errors(pub Vec<FieldError>);

impl Errors {
    /// Records one problem.
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    /// `Ok(value)` when nothing was recorded.
    pub fn finish<T>(self, value: T) -> Result<T, Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self.0)
        }
    }

    /// Compiles an optional expression, recording a problem (with its position) when it is bad.
    pub fn expr(&mut self, field: &str, source: Option<&str>) -> Option<CompiledExpr> {
        let source = source?;
        match CompiledExpr::compile(source) {
            Ok(expr) => Some(expr),
            Err(err) => {
                self.add(field, format!("{}: {err}", err.kind));
                None
            }
        }
    }

    /// Checks a display name: 1..=200 characters, not blank.
    pub fn name(&mut self, field: &str, name: &str) {
        if name.trim().is_empty() {
            self.add(field, "must not be blank");
        } else if name.chars().count() > 200 {
            self.add(field, "must be at most 200 characters");
        } else if name.chars().any(is_hidden_char) {
            self.add(
                field,
                "must not contain control characters or bidirectional overrides",
            );
        }
    }

    /// Checks a source slug (DESIGN §2).
    pub fn slug(&mut self, field: &str, slug: &str) {
        if !is_valid_slug(slug) {
            self.add(field, SLUG_RULE);
        }
    }

    /// Checks the slug a new source or webhook takes: valid, and not reserved.
    pub fn new_slug(&mut self, field: &str, slug: &str) {
        if is_valid_slug(slug) && RESERVED_SLUGS.contains(&slug) {
            let why = if slug == "schedule" {
                "the source of schedule triggers' ticks".to_owned()
            } else {
                format!("`POST /v1/events/{{id}}/{slug}` is another endpoint")
            };
            self.add(field, format!("`{slug}` is reserved ({why})"));
        } else {
            self.slug(field, slug);
        }
    }

    /// Checks that a number lies in `range`.
    pub fn range(&mut self, field: &str, value: u64, range: std::ops::RangeInclusive<u64>) {
        if !range.contains(&value) {
            self.add(
                field,
                format!("must be between {} and {}", range.start(), range.end()),
            );
        }
    }
}

/// A character that shows as nothing, or rearranges what is shown around it (a name holding one
/// can pass for another on the operator page): control characters and the bidirectional
/// embeddings, overrides and isolates.
fn is_hidden_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The field a data error is about: serde reports a missing field at its parent's path, so the
/// name is taken from the message.
pub fn field_of(path: &str, message: &str) -> String {
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|prefix| {
            message
                .strip_prefix(prefix)
                .and_then(|rest| rest.split('`').next())
        });
    match (path, named) {
        (".", Some(name)) => name.to_owned(),
        (".", None) => "body".to_owned(),
        // An unknown field's path already ends with it, except inside a tagged enum (buffered).
        (path, Some(name)) if path == name || path.ends_with(&format!(".{name}")) => {
            path.to_owned()
        }
        (parent, Some(name)) => format!("{parent}.{name}"),
        (path, None) => path.to_owned(),
    }
}

static SLUG: LazyLock<Regex> = LazyLock::new(|| {
    #[allow(clippy::expect_used)] // a literal pattern, checked by tests
    Regex::new(r"^[a-z0-9]([a-z0-9-]{0,48}[a-z0-9])?$").expect("slug pattern compiles")
});

/// Slugs no source or webhook may take: `replay` (an inbound URL `/v1/events/{org_id}/replay`
/// would be another endpoint's path) and `schedule` (the source of schedule ticks, whose dedup
/// keys must stay theirs alone: a webhook event with a tick's key would take that tick's place).
pub const RESERVED_SLUGS: [&str; 2] = ["replay", "schedule"];

/// Whether `slug` is a valid source slug.
pub fn is_valid_slug(slug: &str) -> bool {
    SLUG.is_match(slug)
}

/// What a slug must look like, said to the user who sent something else.
pub const SLUG_RULE: &str =
    "must be 1-50 lowercase letters, digits or '-', starting and ending with a letter or digit";

/// Deserializes an optional source-slug query parameter (`?source=`), refusing a value no source
/// or webhook could have: such a filter would match nothing, and an empty page would hide the
/// typo (a capital letter, a name instead of the slug). Use with `#[serde(default)]`.
pub fn optional_slug<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let slug = <Option<String> as serde::Deserialize>::deserialize(deserializer)?;
    match slug {
        Some(slug) if !is_valid_slug(&slug) => Err(serde::de::Error::custom(SLUG_RULE)),
        slug => Ok(slug),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for ok in ["a", "orders", "a-b", "0", "x".repeat(50).as_str()] {
            assert!(is_valid_slug(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a b", "x".repeat(51).as_str()] {
            assert!(!is_valid_slug(bad), "{bad}");
        }
    }
}
