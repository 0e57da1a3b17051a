//! The limits every JSON document Switchboard stores is held to, whatever its origin (a WebSocket
//! message, a webhook body, a payload an expression builds): at most [`MAX_DEPTH`] levels of
//! nesting, and no U+0000 (NUL) anywhere in a string or key. PostgreSQL's `jsonb` and `text`
//! cannot hold NUL, and a document nested near serde_json's recursion limit (128) could be
//! written but not read back; refusing both at the door keeps every stored row readable, the same
//! way on both engines.

use serde_json::Value as Json;

/// Deepest nesting accepted in a stored document (an array or object counts one level).
pub const MAX_DEPTH: usize = 64;

/// Why a document is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Nested more than [`MAX_DEPTH`] levels.
    #[error("JSON nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// Holds U+0000 in a string or key.
    #[error("JSON containing U+0000 (NUL), which Switchboard does not store")]
    Nul,
}

/// Checks `json` against the limits (iteratively: any depth is safe to check).
pub fn check(json: &Json) -> Result<(), Refusal> {
    let mut stack: Vec<(&Json, usize)> = vec![(json, 0)];
    while let Some((value, depth)) = stack.pop() {
        match value {
            Json::String(s) if s.contains('\0') => return Err(Refusal::Nul),
            Json::Array(items) => {
                if depth >= MAX_DEPTH {
                    return Err(Refusal::TooDeep);
                }
                stack.extend(items.iter().map(|item| (item, depth + 1)));
            }
            Json::Object(map) => {
                if depth >= MAX_DEPTH {
                    return Err(Refusal::TooDeep);
                }
                if map.keys().any(|key| key.contains('\0')) {
                    return Err(Refusal::Nul);
                }
                stack.extend(map.values().map(|item| (item, depth + 1)));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether `text` holds U+0000 (for keys and errors derived from a document).
pub fn has_nul(text: &str) -> bool {
    text.contains('\0')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn nested(levels: usize) -> Json {
        let text = format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn depth_is_counted_in_levels_of_arrays_and_objects() {
        assert_eq!(check(&json!(1)), Ok(()));
        assert_eq!(check(&nested(MAX_DEPTH)), Ok(()));
        assert_eq!(check(&nested(MAX_DEPTH + 1)), Err(Refusal::TooDeep));
        let mut object = json!(1);
        for _ in 0..MAX_DEPTH {
            object = json!({ "a": object });
        }
        assert_eq!(check(&object), Ok(()));
        assert_eq!(check(&json!({ "a": object })), Err(Refusal::TooDeep));
    }

    #[test]
    fn nul_is_refused_in_strings_and_keys_anywhere() {
        assert_eq!(check(&json!({"a": ["x\u{0}y"]})), Err(Refusal::Nul));
        assert_eq!(check(&json!({"a\u{0}": 1})), Err(Refusal::Nul));
        assert_eq!(check(&json!({"a": "\u{1}"})), Ok(()));
        assert!(has_nul("a\u{0}"));
        assert!(!has_nul("a"));
    }
}
