//! The secret parts of a source request's `config` (`headers`, `secrets`, `app_token`,
//! `tls.client_key`), split off before the settings are parsed, and how they change what is
//! stored. A create gives them whole; a PATCH is a JSON merge patch (RFC 7396) on them too: a map
//! given merges into the stored one entry by entry (`null` removes an entry), `null` for a whole
//! map, for `app_token` or for `tls.client_key` removes it, and a key left out keeps what is
//! stored. Pure.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::config::SourceSecrets;
use crate::validation::Errors;

/// What a request does to one stored secret map.
#[derive(Debug, Clone, PartialEq)]
pub enum MapChange {
    /// Given whole (a create): the map becomes this.
    Replace(BTreeMap<String, String>),
    /// A PATCH's map: each entry set, or removed where `None`.
    Merge(BTreeMap<String, Option<String>>),
    /// A PATCH's `null`: the map is emptied.
    Clear,
}

/// The secret parts of a request's `config`; `None` means "not given" (keep what is stored).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SecretsIn {
    /// `config.headers` (names compared without regard to case, as HTTP does).
    pub headers: Option<MapChange>,
    /// `config.secrets`.
    pub values: Option<MapChange>,
    /// `config.app_token`: `Some(None)` removes it (a PATCH's `null`).
    pub app_token: Option<Option<String>>,
    /// `config.tls.client_key`: `Some(None)` removes it (a PATCH's `null`).
    pub client_key: Option<Option<String>>,
}

impl SecretsIn {
    /// Applies given parts over `stored`.
    pub fn merge_into(self, mut stored: SourceSecrets) -> SourceSecrets {
        if let Some(change) = self.headers {
            apply(&mut stored.headers, change, true);
        }
        if let Some(change) = self.values {
            apply(&mut stored.values, change, false);
        }
        if let Some(token) = self.app_token {
            stored.app_token = token;
        }
        if let Some(key) = self.client_key {
            stored.client_key = key;
        }
        stored
    }
}

/// Applies `change` to `map`; `any_case`: keys equal but for ASCII case are the same entry (the
/// one given replaces the stored spelling).
fn apply(map: &mut BTreeMap<String, String>, change: MapChange, any_case: bool) {
    match change {
        MapChange::Replace(whole) => *map = whole,
        MapChange::Clear => map.clear(),
        MapChange::Merge(entries) => {
            for (key, value) in entries {
                if any_case {
                    map.retain(|stored, _| !stored.eq_ignore_ascii_case(&key));
                } else {
                    map.remove(&key);
                }
                if let Some(value) = value {
                    map.insert(key, value);
                }
            }
        }
    }
}

/// A header name that `change` gives twice, spelled in two cases (`X-A` and `x-a`): which one
/// wins would depend on the order of the JSON object's keys, so it is refused.
fn repeated_name(change: &MapChange) -> Option<String> {
    let names: Vec<&String> = match change {
        MapChange::Replace(whole) => whole.keys().collect(),
        MapChange::Merge(entries) => entries.keys().collect(),
        MapChange::Clear => return None,
    };
    let mut seen = std::collections::HashSet::new();
    names
        .into_iter()
        .find(|name| !seen.insert(name.to_ascii_lowercase()))
        .cloned()
}

/// Removes the secret fields from a `config` object (reporting wrongly typed ones). `patching`:
/// the request is a PATCH, read as a merge patch (see the module).
pub fn split_secrets(
    config: &mut Map<String, Value>,
    errors: &mut Errors,
    patching: bool,
) -> SecretsIn {
    let mut take_map = |key: &str, errors: &mut Errors| {
        let value = config.remove(key)?;
        let change = match value {
            Value::Null if patching => Some(MapChange::Clear),
            Value::Null => None,
            Value::Object(entries) if patching => entries
                .into_iter()
                .map(|(name, value)| match value {
                    Value::String(text) => Some((name, Some(text))),
                    Value::Null => Some((name, None)),
                    _ => None,
                })
                .collect::<Option<BTreeMap<_, _>>>()
                .map(MapChange::Merge),
            Value::Object(entries) => entries
                .into_iter()
                .map(|(name, value)| match value {
                    Value::String(text) => Some((name, text)),
                    _ => None,
                })
                .collect::<Option<BTreeMap<_, _>>>()
                .map(MapChange::Replace),
            _ => None,
        };
        if change.is_none() {
            let message = if patching {
                "must be an object of string values (`null` removes one)"
            } else {
                "must be an object of string values"
            };
            errors.add(format!("config.{key}"), message);
        }
        change
    };
    let headers = take_map("headers", errors);
    if let Some(name) = headers.as_ref().and_then(repeated_name) {
        errors.add(
            format!("config.headers.{name}"),
            "is given twice (header names are compared without regard to case)",
        );
    }
    let values = take_map("secrets", errors);
    let app_token = match config.remove("app_token") {
        None => None,
        Some(Value::Null) => patching.then_some(None),
        Some(Value::String(token)) => Some(Some(token)),
        Some(_) => {
            errors.add("config.app_token", "must be a string");
            None
        }
    };
    let client_key = super::validate_tls::take_client_key(config, errors, patching);
    SecretsIn {
        headers,
        values,
        app_token,
        client_key,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn stored() -> SourceSecrets {
        SourceSecrets {
            headers: BTreeMap::from([
                ("X-Api-Key".to_owned(), "k".to_owned()),
                ("X-Old".to_owned(), "o".to_owned()),
            ]),
            values: BTreeMap::from([("s1".to_owned(), "1".to_owned())]),
            app_token: Some("xapp-1".to_owned()),
            ..SourceSecrets::default()
        }
    }

    fn patched(config: Value) -> SourceSecrets {
        let mut config = config.as_object().unwrap().clone();
        let mut errors = Errors::default();
        let given = split_secrets(&mut config, &mut errors, true);
        assert!(errors.0.is_empty(), "{:?}", errors.0);
        given.merge_into(stored())
    }

    #[test]
    fn a_patch_merges_into_the_stored_maps() {
        let merged =
            patched(json!({"headers": {"x-old": null, "X-New": "n"}, "secrets": {"s2": "2"}}));
        let names: Vec<&str> = merged.headers.keys().map(String::as_str).collect();
        assert_eq!(names, ["X-Api-Key", "X-New"]);
        assert_eq!(merged.values.len(), 2);
        let cleared = patched(json!({"headers": null, "secrets": null, "app_token": null}));
        assert!(cleared.headers.is_empty() && cleared.values.is_empty());
        assert_eq!(cleared.app_token, None);
        let kept = patched(json!({"url": "ws://x"}));
        assert_eq!(kept, stored());
    }

    #[test]
    fn a_header_named_twice_in_two_cases_is_refused() {
        for patching in [true, false] {
            let mut config = json!({"headers": {"X-A": "1", "x-a": "2"}})
                .as_object()
                .unwrap()
                .clone();
            let mut errors = Errors::default();
            split_secrets(&mut config, &mut errors, patching);
            assert_eq!(errors.0.len(), 1, "patching {patching}");
            assert!(errors.0[0].field.starts_with("config.headers."));
        }
    }

    #[test]
    fn a_create_gives_maps_whole_and_refuses_nulls_inside() {
        let mut config = json!({"headers": {"A": "1"}, "secrets": {"s": null}})
            .as_object()
            .unwrap()
            .clone();
        let mut errors = Errors::default();
        let given = split_secrets(&mut config, &mut errors, false);
        assert_eq!(errors.0.len(), 1);
        assert_eq!(errors.0[0].field, "config.secrets");
        let created = given.merge_into(SourceSecrets::default());
        assert_eq!(created.headers.len(), 1);
    }
}
