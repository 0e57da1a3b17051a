//! From a raw message to an event row's contents (DESIGN §3): pre-filter, event key, payload and
//! dedup key, all evaluated over one shared expression value converted once per message. The same
//! code serves WebSocket sources and webhooks.

use serde_json::Value as Json;

use jmespath::Variable;

use super::expr::{CompiledExpr, ExprError, Limits, Value, integral, is_truthy, to_json_within};
use super::json;
use crate::db::statuses::EventStatus;

/// The four per-source expressions, compiled once per source revision.
#[derive(Debug, Clone, Default)]
pub struct SourceExprs {
    /// Event key (absent: every event has status `no_key`).
    pub event_key: Option<CompiledExpr>,
    /// Payload (absent: the raw message).
    pub payload: Option<CompiledExpr>,
    /// Pre-filter (absent: keep everything).
    pub filter: Option<CompiledExpr>,
    /// Dedup key (absent: every message is distinct).
    pub dedup_key: Option<CompiledExpr>,
}

impl SourceExprs {
    /// Compiles the optional expressions; the error names the field.
    pub fn compile(
        event_key: Option<&str>,
        payload: Option<&str>,
        filter: Option<&str>,
        dedup_key: Option<&str>,
    ) -> Result<SourceExprs, (&'static str, ExprError)> {
        let one = |field: &'static str, src: Option<&str>| {
            src.map(CompiledExpr::compile)
                .transpose()
                .map_err(|e| (field, e))
        };
        Ok(SourceExprs {
            event_key: one("event_key_expr", event_key)?,
            payload: one("payload_expr", payload)?,
            filter: one("filter_expr", filter)?,
            dedup_key: one("dedup_key_expr", dedup_key)?,
        })
    }
}

/// What to store for one message.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedEvent {
    /// The message as received.
    pub raw: Json,
    /// The event key, when there is one.
    pub event_key: Option<String>,
    /// The payload runs carry when it is not the raw message (no payload expression); absent
    /// with status `error` means there is none. See [`PreparedEvent::payload`].
    pub payload: Option<Json>,
    /// The dedup key (absent: distinct).
    pub dedup_key: Option<String>,
    /// Status at insert.
    pub status: EventStatus,
    /// Why the status is `error` (or a dedup/key evaluation problem worth showing).
    pub error: Option<String>,
}

impl PreparedEvent {
    /// The payload runs carry: the built one, else the raw message (none for an `error` event
    /// whose payload could not be built).
    pub fn payload(&self) -> Option<&Json> {
        match (&self.payload, self.status) {
            (Some(payload), _) => Some(payload),
            (None, EventStatus::Error) => None,
            (None, _) => Some(&self.raw),
        }
    }
}

/// The pipeline's verdict on one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Prepared {
    /// The pre-filter rejected it: count it, store nothing.
    Filtered,
    /// Store it.
    Event(Box<PreparedEvent>),
}

/// Runs the pipeline over one message (`value` is `raw` converted once by the caller), each
/// expression within `limits` (see [`Limits::for_input`] with the message's size). A payload is
/// held to the limits of [`json`] like the message itself; keys holding U+0000 are refused.
pub fn prepare(exprs: &SourceExprs, raw: Json, value: &Value, limits: Limits) -> Prepared {
    let mut error = None;
    if let Some(filter) = &exprs.filter {
        match filter.search_within(value, limits) {
            Ok(v) if !is_truthy(&v) => return Prepared::Filtered,
            Ok(_) => {}
            // A broken pre-filter must not silently drop: keep the event and say why.
            Err(e) => error = Some(format!("filter_expr: {e}")),
        }
    }
    let (event_key, key_error) = event_key(exprs.event_key.as_ref(), value, limits);
    // `None`: the payload is the raw message, not copied.
    let payload = match &exprs.payload {
        None => Ok(None),
        Some(expr) => payload(expr, value, limits),
    };
    let dedup_key = match &exprs.dedup_key {
        None => None,
        Some(expr) => match expr.search_within(value, limits) {
            Ok(v) if is_nul_string(&v) => {
                error.get_or_insert(format!("dedup_key_expr gave {}", type_name(&v)));
                None
            }
            Ok(v) => scalar_string(&v).map(bounded_dedup_key),
            Err(e) => {
                error.get_or_insert(format!("dedup_key_expr: {e}"));
                None
            }
        },
    };
    let (status, payload) = match payload {
        Err(message) => {
            error = Some(message);
            (EventStatus::Error, None)
        }
        // An `error` event has no payload unless it is stored: keep the raw one visible.
        Ok(payload) if error.is_some() => {
            (EventStatus::Error, payload.or_else(|| Some(raw.clone())))
        }
        Ok(payload) if event_key.is_none() => {
            error = key_error;
            (EventStatus::NoKey, payload)
        }
        Ok(payload) => (EventStatus::Received, payload),
    };
    Prepared::Event(Box::new(PreparedEvent {
        raw,
        event_key,
        payload,
        dedup_key,
        status,
        error,
    }))
}

/// The payload `expr` builds, rendered within the limits; why not, as the event's error.
fn payload(expr: &CompiledExpr, value: &Value, limits: Limits) -> Result<Option<Json>, String> {
    let built = expr
        .search_within(value, limits)
        .map_err(|e| format!("payload_expr: {e}"))?;
    if built.is_null() {
        return Err("payload_expr gave null".to_owned());
    }
    let rendered = to_json_within(&built, limits.result_bytes, json::MAX_DEPTH)
        .map_err(|exceeded| format!("payload_expr: {}", exceeded.message()))?;
    json::check(&rendered).map_err(|refusal| format!("payload_expr gave {refusal}"))?;
    Ok(Some(rendered))
}

fn event_key(
    expr: Option<&CompiledExpr>,
    value: &Value,
    limits: Limits,
) -> (Option<String>, Option<String>) {
    let Some(expr) = expr else {
        return (None, Some("no event_key_expr".to_owned()));
    };
    match expr.search_within(value, limits) {
        Ok(v) => match scalar_string(&v) {
            Some(key) if key.len() > MAX_EVENT_KEY_BYTES => (
                None,
                Some(format!(
                    "event_key_expr gave a key longer than {MAX_EVENT_KEY_BYTES} bytes"
                )),
            ),
            Some(key) => (Some(key), None),
            None => (None, Some(format!("event_key_expr gave {}", type_name(&v)))),
        },
        Err(e) => (None, Some(format!("event_key_expr: {e}"))),
    }
}

/// Longest event key kept (longer: the event has no key, and says why).
pub const MAX_EVENT_KEY_BYTES: usize = 1024;
/// Longest dedup key stored as it is; a longer one is stored as `sha256:` and its hex digest, so
/// it still deduplicates exactly and every storage engine can index it.
pub const MAX_DEDUP_KEY_BYTES: usize = 512;

fn bounded_dedup_key(key: String) -> String {
    use sha2::{Digest as _, Sha256};
    if key.len() <= MAX_DEDUP_KEY_BYTES {
        return key;
    }
    format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
}

/// A non-empty string without U+0000 as itself, a number or boolean as its string, anything else
/// none. Reads the value's top level only: a key never renders a whole document.
pub fn scalar_string(v: &Value) -> Option<String> {
    match &**v {
        Variable::String(s) if !s.is_empty() && !json::has_nul(s) => Some(s.clone()),
        Variable::Number(n) => Some(integral(n).to_string()),
        Variable::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn is_nul_string(v: &Value) -> bool {
    matches!(&**v, Variable::String(s) if json::has_nul(s))
}

fn type_name(v: &Value) -> &'static str {
    match &**v {
        Variable::Null | Variable::Expref(_) => "null",
        Variable::String(s) if json::has_nul(s) => "a string containing U+0000",
        Variable::String(_) => "an empty string",
        Variable::Array(_) => "an array",
        Variable::Object(_) => "an object",
        _ => "a scalar",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;
    use crate::pipeline::expr::to_value;

    fn run(exprs: &SourceExprs, raw: Json) -> Prepared {
        let value = to_value(&raw);
        prepare(exprs, raw, &value, Limits::default())
    }

    fn event(p: Prepared) -> PreparedEvent {
        match p {
            Prepared::Event(e) => *e,
            Prepared::Filtered => panic!("filtered"),
        }
    }

    #[test]
    fn keys_payloads_and_dedup() {
        let exprs = SourceExprs::compile(
            Some("type"),
            Some("data"),
            Some("type != 'noise'"),
            Some("id"),
        )
        .unwrap();
        let e = event(run(
            &exprs,
            json!({"type": "order.created", "id": 7, "data": {"amount": 5}}),
        ));
        assert_eq!(e.event_key.as_deref(), Some("order.created"));
        assert_eq!(e.payload, Some(json!({"amount": 5})));
        assert_eq!(e.dedup_key.as_deref(), Some("7"));
        assert_eq!(e.status, EventStatus::Received);
        assert_eq!(run(&exprs, json!({"type": "noise"})), Prepared::Filtered);
    }

    #[test]
    fn numbers_and_booleans_are_keys_other_values_are_not() {
        let exprs = SourceExprs::compile(Some("k"), None, None, None).unwrap();
        assert_eq!(
            event(run(&exprs, json!({"k": 12}))).event_key.as_deref(),
            Some("12")
        );
        assert_eq!(
            event(run(&exprs, json!({"k": true}))).event_key.as_deref(),
            Some("true")
        );
        for bad in [
            json!({"k": ""}),
            json!({"k": null}),
            json!({"k": [1]}),
            json!({}),
        ] {
            let e = event(run(&exprs, bad));
            assert_eq!(e.status, EventStatus::NoKey);
            assert!(e.error.is_some());
            assert!(e.payload().is_some(), "a no_key event keeps its payload");
        }
    }

    #[test]
    fn payload_errors_and_nulls_are_kept_visible() {
        let exprs = SourceExprs::compile(Some("type"), Some("data"), None, None).unwrap();
        let e = event(run(&exprs, json!({"type": "x"})));
        assert_eq!(e.status, EventStatus::Error);
        assert_eq!(e.payload(), None);
        assert!(e.error.unwrap().contains("null"));
        let exprs = SourceExprs::compile(Some("type"), Some("length(data)"), None, None).unwrap();
        let e = event(run(&exprs, json!({"type": "x", "data": 5})));
        assert_eq!(e.status, EventStatus::Error);
        assert!(e.error.unwrap().starts_with("payload_expr"));
    }

    #[test]
    fn absent_payload_is_the_raw_message_and_broken_filters_keep_events() {
        let exprs = SourceExprs::compile(Some("type"), None, Some("length(n)"), None).unwrap();
        let raw = json!({"type": "x", "n": 5});
        let e = event(run(&exprs, raw.clone()));
        assert_eq!(e.payload(), Some(&raw));
        assert_eq!(e.status, EventStatus::Error);
        assert!(e.error.unwrap().starts_with("filter_expr"));
    }

    #[test]
    fn long_keys_are_bounded_and_nul_is_never_a_key() {
        let exprs = SourceExprs::compile(Some("k"), Some("p"), None, Some("d")).unwrap();
        let long = "k".repeat(MAX_EVENT_KEY_BYTES + 1);
        let e = event(run(&exprs, json!({"k": long, "p": 1, "d": "x"})));
        assert_eq!(e.status, EventStatus::NoKey);
        assert!(e.error.unwrap().contains("longer than 1024 bytes"));
        let e = event(run(&exprs, json!({"k": "a", "p": 1, "d": "d".repeat(600)})));
        let dedup = e.dedup_key.unwrap();
        assert!(dedup.starts_with("sha256:") && dedup.len() == 71, "{dedup}");
        let e = event(run(&exprs, json!({"k": "a\u{0}b", "p": 1, "d": "x"})));
        assert_eq!(e.status, EventStatus::NoKey);
        let e = event(run(&exprs, json!({"k": "a", "p": 1, "d": "x\u{0}"})));
        assert_eq!(e.status, EventStatus::Error);
        assert!(e.error.unwrap().contains("U+0000"));
    }

    #[test]
    fn payloads_are_held_to_the_document_limits() {
        let exprs = SourceExprs::compile(Some("k"), Some("{data: @}"), None, None).unwrap();
        let mut deep = json!(1);
        for _ in 0..crate::pipeline::json::MAX_DEPTH {
            deep = json!([deep]);
        }
        let e = event(run(&exprs, json!({"k": "a", "v": deep})));
        assert_eq!(e.status, EventStatus::Error);
        assert!(e.error.unwrap().contains("64 levels"));
        let exprs = SourceExprs::compile(Some("k"), Some("`\"a\\u0000\"`"), None, None).unwrap();
        let e = event(run(&exprs, json!({"k": "a"})));
        assert_eq!(e.status, EventStatus::Error);
        assert!(e.error.unwrap().contains("U+0000"));
    }

    #[test]
    fn expressions_over_budget_make_error_events() {
        let doubling = format!("{}@", "[@,@]|".repeat(16));
        let exprs = SourceExprs::compile(Some("k"), Some(&doubling), None, None).unwrap();
        let e = event(run(&exprs, json!({"k": "a", "s": "x".repeat(100)})));
        assert_eq!(e.status, EventStatus::Error);
        assert!(e.error.unwrap().contains("result size limit"));
    }
}
