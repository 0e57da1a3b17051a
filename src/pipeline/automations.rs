//! One compiled automation (its `on` globs and filter) and how it judges an event. The index of
//! every enabled automation by source is `automation_index`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::expr::{CompiledExpr, Value, is_truthy};
use super::glob::{GlobInterner, OnPatterns};

/// One automation as the matcher needs it.
#[derive(Debug, Clone)]
pub struct CompiledAutomation {
    /// Automation id.
    pub id: Uuid,
    /// The `on` patterns.
    pub on: OnPatterns,
    /// The filter over the payload.
    pub filter: Option<CompiledExpr>,
}

/// The stored trigger shape this module reads.
#[derive(Debug, Deserialize)]
struct TriggerDef {
    source: String,
    on: OnDef,
    #[serde(default)]
    filter: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OnDef {
    One(String),
    Many(Vec<String>),
}

/// How one automation judged one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum MatchResult {
    /// A run is due.
    Matched,
    /// The event key matched no `on` pattern.
    OnMismatch,
    /// The filter was falsy.
    FilterFalse,
    /// The filter failed at run time (no match).
    FilterError {
        /// The error.
        message: String,
    },
}

/// One automation's verdict, as recorded in the event's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Automation id.
    pub automation_id: Uuid,
    /// The verdict.
    #[serde(flatten)]
    pub result: MatchResult,
    /// The run created (or already existing) for a match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<Uuid>,
}

/// Judges an event against `automations` (those of its org and source), in their order. Events
/// without a key match nothing (and produce no outcome rows).
pub fn evaluate(
    automations: &[Arc<CompiledAutomation>],
    event_key: Option<&str>,
    payload: &Value,
) -> Vec<Outcome> {
    let Some(key) = event_key else {
        return Vec::new();
    };
    automations
        .iter()
        .map(|a| Outcome {
            automation_id: a.id,
            result: judge(a, key, payload),
            run_id: None,
        })
        .collect()
}

fn judge(a: &CompiledAutomation, key: &str, payload: &Value) -> MatchResult {
    if !a.on.matches(key) {
        return MatchResult::OnMismatch;
    }
    match &a.filter {
        None => MatchResult::Matched,
        Some(filter) => match filter.search(payload) {
            Ok(v) if is_truthy(&v) => MatchResult::Matched,
            Ok(_) => MatchResult::FilterFalse,
            Err(e) => MatchResult::FilterError {
                message: e.to_string(),
            },
        },
    }
}

/// Compiles one event trigger into its source slug and matcher; the `on` globs come from `globs`
/// when given (the index), else are compiled on their own (a dry run). Says why it cannot.
pub fn compile(
    id: Uuid,
    trigger: &serde_json::Value,
    globs: Option<&mut GlobInterner>,
) -> Result<(String, CompiledAutomation), String> {
    let def = TriggerDef::deserialize(trigger).map_err(|e| e.to_string())?;
    let patterns = match def.on {
        OnDef::One(p) => vec![p],
        OnDef::Many(ps) => ps,
    };
    let filter = def
        .filter
        .as_deref()
        .map(CompiledExpr::compile)
        .transpose()
        .map_err(|e| e.to_string())?;
    let on = match globs {
        Some(globs) => globs.acquire(&patterns),
        None => OnPatterns::compile(&patterns),
    }
    .map_err(|e| e.to_string())?;
    Ok((def.source, CompiledAutomation { id, on, filter }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;
    use crate::pipeline::expr::to_value;

    fn compiled(trigger: serde_json::Value) -> Arc<CompiledAutomation> {
        Arc::new(compile(Uuid::now_v7(), &trigger, None).unwrap().1)
    }

    #[test]
    fn judges_on_and_filter() {
        let automations = [
            compiled(json!({"type": "event", "source": "s", "on": "order.*"})),
            compiled(
                json!({"type": "event", "source": "s", "on": ["x", "order.created"], "filter": "amount > `100`"}),
            ),
            compiled(
                json!({"type": "event", "source": "s", "on": "*", "filter": "length(amount)"}),
            ),
        ];
        let payload = to_value(&json!({"amount": 50}));
        let outcomes = evaluate(&automations, Some("order.created"), &payload);
        let results: Vec<_> = outcomes
            .iter()
            .map(|o| (o.automation_id, o.result.clone()))
            .collect();
        assert_eq!(results[0], (automations[0].id, MatchResult::Matched));
        assert_eq!(results[1], (automations[1].id, MatchResult::FilterFalse));
        assert!(matches!(results[2].1, MatchResult::FilterError { .. }));
        assert_eq!(
            evaluate(&automations, Some("user.created"), &payload)[0].result,
            MatchResult::OnMismatch
        );
        assert!(evaluate(&automations, None, &payload).is_empty());
    }

    #[test]
    fn refuses_what_does_not_compile() {
        let mut globs = GlobInterner::default();
        for trigger in [
            json!({"type": "event", "source": "s", "on": []}),
            json!({"type": "event", "source": "s", "on": "a", "filter": "a +"}),
            json!({"type": "event", "on": "a"}),
        ] {
            assert!(compile(Uuid::nil(), &trigger, Some(&mut globs)).is_err());
        }
        assert!(globs.is_empty(), "a refused trigger holds no glob");
    }

    #[test]
    fn outcomes_serialize_flat() {
        let o = Outcome {
            automation_id: Uuid::nil(),
            result: MatchResult::FilterError {
                message: "m".into(),
            },
            run_id: None,
        };
        assert_eq!(
            serde_json::to_value(&o).unwrap(),
            json!({"automation_id": Uuid::nil(), "result": "filter_error", "message": "m"})
        );
    }
}
