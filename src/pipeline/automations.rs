//! The compiled automation set: every enabled automation's `on` globs and filter, compiled once per
//! change and shared read-only with the dispatch actors; and matching one event against it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::expr::{CompiledExpr, Value, is_truthy};
use super::glob::OnPatterns;

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

/// Every enabled automation, indexed by (org, source slug).
#[derive(Debug, Default)]
pub struct AutomationSet {
    by_source: HashMap<(Uuid, String), Vec<CompiledAutomation>>,
    /// Automations that could not be compiled (skipped), with why.
    pub skipped: Vec<(Uuid, String)>,
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

impl AutomationSet {
    /// Compiles `(id, org, trigger JSON)` rows; rows that do not compile are skipped and listed.
    pub fn build(rows: impl IntoIterator<Item = (Uuid, Uuid, serde_json::Value)>) -> AutomationSet {
        let mut set = AutomationSet::default();
        for (id, org_id, trigger) in rows {
            match compile(id, trigger) {
                Ok((source, automation)) => set
                    .by_source
                    .entry((org_id, source))
                    .or_default()
                    .push(automation),
                Err(why) => set.skipped.push((id, why)),
            }
        }
        set
    }

    /// Number of compiled automations.
    pub fn len(&self) -> usize {
        self.by_source.values().map(Vec::len).sum()
    }

    /// Whether no automation is compiled.
    pub fn is_empty(&self) -> bool {
        self.by_source.is_empty()
    }

    /// Judges an event against every automation of its org and source. Events without a key
    /// match nothing (and produce no outcome rows).
    pub fn evaluate(
        &self,
        org_id: Uuid,
        source: &str,
        event_key: Option<&str>,
        payload: &Value,
    ) -> Vec<Outcome> {
        let (Some(key), Some(automations)) =
            (event_key, self.by_source.get(&(org_id, source.to_owned())))
        else {
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

fn compile(id: Uuid, trigger: serde_json::Value) -> Result<(String, CompiledAutomation), String> {
    let def: TriggerDef = serde_json::from_value(trigger).map_err(|e| e.to_string())?;
    let patterns = match def.on {
        OnDef::One(p) => vec![p],
        OnDef::Many(ps) => ps,
    };
    let on = OnPatterns::compile(&patterns).map_err(|e| e.to_string())?;
    let filter = def
        .filter
        .as_deref()
        .map(CompiledExpr::compile)
        .transpose()
        .map_err(|e| e.to_string())?;
    Ok((def.source, CompiledAutomation { id, on, filter }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;
    use crate::pipeline::expr::to_value;

    #[test]
    fn judges_on_and_filter() {
        let org = Uuid::now_v7();
        let (a, b, c, d) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        let set = AutomationSet::build([
            (
                a,
                org,
                json!({"type": "event", "source": "s", "on": "order.*"}),
            ),
            (
                b,
                org,
                json!({"type": "event", "source": "s", "on": ["x", "order.created"], "filter": "amount > `100`"}),
            ),
            (
                c,
                org,
                json!({"type": "event", "source": "s", "on": "*", "filter": "length(amount)"}),
            ),
            (
                d,
                org,
                json!({"type": "event", "source": "other", "on": "*"}),
            ),
        ]);
        assert_eq!(set.len(), 4);
        let payload = to_value(&json!({"amount": 50}));
        let outcomes = set.evaluate(org, "s", Some("order.created"), &payload);
        let results: Vec<_> = outcomes
            .iter()
            .map(|o| (o.automation_id, o.result.clone()))
            .collect();
        assert_eq!(results[0], (a, MatchResult::Matched));
        assert_eq!(results[1], (b, MatchResult::FilterFalse));
        assert!(matches!(results[2].1, MatchResult::FilterError { .. }));
        assert_eq!(
            set.evaluate(org, "s", Some("user.created"), &payload)[0].result,
            MatchResult::OnMismatch
        );
        assert!(set.evaluate(org, "s", None, &payload).is_empty());
        assert!(
            set.evaluate(Uuid::now_v7(), "s", Some("order.created"), &payload)
                .is_empty()
        );
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
