//! Compiled JMESPath expressions: checked once when saved, evaluated many times over one shared
//! [`Value`] per event, with JMESPath truthiness for filters.
//!
//! [`CompiledExpr::compile`] rejects everything that can be known before evaluation: syntax errors,
//! unknown functions, wrong argument counts (inside `&expref` arguments too), invalid literal
//! `regex()` patterns, expressions nested deeply enough to exhaust the stack when parsed or
//! evaluated, and expressions whose result grows so fast with the input that no input could be
//! evaluated within the limits. Evaluation runs the budgeted interpreter of `eval` over a value
//! converted once per event ([`to_value`]) and never again per expression; every evaluation has a
//! work limit and every rendered result a size limit ([`budget`], [`Limits`]), checked while it
//! runs.

use std::fmt;
use std::sync::Arc;

use jmespath::ast::Ast;
use jmespath::{Context, ErrorReason, JmespathError, RuntimeError, Variable};

use super::functions::RUNTIME;

pub mod budget;
mod check;
pub(crate) mod eval;
mod render;

pub use budget::{Exceeded, Limits};
pub use render::to_json_within;

/// A value expressions are evaluated over: shared, converted once per event.
pub type Value = jmespath::Rcvar;

/// Converts JSON into a [`Value`] (do it once per event, then share the result).
pub fn to_value(json: &serde_json::Value) -> Value {
    use serde_json::Value as Json;
    Value::new(match json {
        Json::Null => Variable::Null,
        Json::Bool(b) => Variable::Bool(*b),
        Json::Number(n) => Variable::Number(n.clone()),
        Json::String(s) => Variable::String(s.clone()),
        Json::Array(items) => Variable::Array(items.iter().map(to_value).collect()),
        Json::Object(map) => {
            Variable::Object(map.iter().map(|(k, v)| (k.clone(), to_value(v))).collect())
        }
    })
}

/// Converts a [`Value`] back to JSON within the default limits ([`Limits::default`]): at most
/// [`budget::BASE_RESULT_BYTES`] of JSON, [`RENDER_MAX_DEPTH`] levels. Numbers that are integral
/// and in `i64`/`u64` range come back as integers (JMESPath computes in `f64`: `sum([1, 2])` is
/// `3`, not `3.0`); an expression reference (the result of a bare `&expr`) becomes null.
pub fn to_json(value: &Value) -> Result<serde_json::Value, ExprError> {
    to_json_within(value, Limits::default().result_bytes, RENDER_MAX_DEPTH)
        .map_err(ExprError::limit)
}

/// Deepest result rendered when no tighter limit applies (what is stored is held to
/// [`crate::pipeline::json::MAX_DEPTH`]).
pub const RENDER_MAX_DEPTH: usize = 256;

/// A number as JSON shows it: integral values in `i64`/`u64` range as integers.
pub(crate) fn integral(n: &serde_json::Number) -> serde_json::Number {
    // 2^63 and 2^64 are exact in f64; the ranges below are exactly those of i64 and u64.
    const I64_END: f64 = 9_223_372_036_854_775_808.0;
    const U64_END: f64 = 18_446_744_073_709_551_616.0;
    match n.as_f64() {
        Some(f) if n.is_f64() && f.fract() == 0.0 && (-I64_END..I64_END).contains(&f) => {
            serde_json::Number::from(f as i64)
        }
        Some(f) if n.is_f64() && f.fract() == 0.0 && (0.0..U64_END).contains(&f) => {
            serde_json::Number::from(f as u64)
        }
        _ => n.clone(),
    }
}

/// JMESPath truthiness: `false`, `null`, `""`, `[]` and `{}` are false; everything else, `0`
/// included, is true.
pub fn is_truthy(value: &Value) -> bool {
    value.is_truthy()
}

/// Why an expression was refused or failed, and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} (at position {position})")]
pub struct ExprError {
    /// The class of error, as named by the JMESPath compliance suite.
    pub kind: ExprErrorKind,
    /// What went wrong, in one line.
    pub message: String,
    /// Offset in characters (not bytes) into the expression; a function's name for call errors.
    pub position: usize,
}

/// The error classes of the JMESPath compliance suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExprErrorKind {
    /// `syntax`: the text is not an expression (also: nested too deeply to be evaluated safely).
    Syntax,
    /// `unknown-function`: no function has that name.
    UnknownFunction,
    /// `invalid-arity`: a function called with the wrong number of arguments.
    InvalidArity,
    /// `invalid-type`: an argument, or an `&expr` result, of the wrong type.
    InvalidType,
    /// `invalid-value`: a value no function accepts (zero slice step, invalid regex, ...).
    InvalidValue,
    /// `limit-exceeded`: the evaluation ran out of work or its result out of size (not a kind of
    /// the compliance suite: Switchboard's own).
    LimitExceeded,
}

impl ExprErrorKind {
    /// The compliance suite's name of the kind (`syntax`, `unknown-function`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ExprErrorKind::Syntax => "syntax",
            ExprErrorKind::UnknownFunction => "unknown-function",
            ExprErrorKind::InvalidArity => "invalid-arity",
            ExprErrorKind::InvalidType => "invalid-type",
            ExprErrorKind::InvalidValue => "invalid-value",
            ExprErrorKind::LimitExceeded => "limit-exceeded",
        }
    }
}

impl fmt::Display for ExprErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A checked expression: its source text and AST, cheap to clone, Send + Sync.
#[derive(Clone)]
pub struct CompiledExpr {
    source: Arc<str>,
    ast: Arc<Ast>,
}

const _: () = {
    const fn shareable<T: Send + Sync>() {}
    // Fails to build unless jmespath's `sync` feature makes `Rcvar` an `Arc`.
    shareable::<CompiledExpr>();
};

impl CompiledExpr {
    /// Parses and checks `source`; see the module documentation for what is refused.
    pub fn compile(source: &str) -> Result<CompiledExpr, ExprError> {
        let refused = |(kind, message, offset)| error(source, kind, message, offset);
        check::check_source(source).map_err(refused)?;
        let ast = jmespath::parse(source).map_err(|err| from_jmespath(source, err, false))?;
        check::check_ast(&ast).map_err(refused)?;
        Ok(CompiledExpr {
            source: Arc::from(source),
            ast: Arc::new(ast),
        })
    }

    /// The source text.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The parsed expression.
    pub fn as_ast(&self) -> &Ast {
        &self.ast
    }

    /// Evaluates the expression over `data`, without converting it, within the default work
    /// limit ([`Limits::default`]).
    pub fn search(&self, data: &Value) -> Result<Value, ExprError> {
        self.search_within(data, Limits::default())
    }

    /// Evaluates the expression over `data` within `limits.steps` of work.
    pub fn search_within(&self, data: &Value, limits: Limits) -> Result<Value, ExprError> {
        let guard = budget::enter(limits.steps);
        let mut ctx = Context::new(&self.source, &RUNTIME);
        let result = eval::interpret(data, &self.ast, &mut ctx);
        let exceeded = guard.exceeded();
        drop(guard);
        result.map_err(|err| match exceeded {
            Some(exceeded) => ExprError::limit(exceeded),
            None => from_jmespath(&self.source, err, true),
        })
    }

    /// Converts `data`, evaluates, renders the result: for one-off evaluations only. `limits`
    /// bounds the work and the rendered result.
    pub fn evaluate_json(
        &self,
        data: &serde_json::Value,
        limits: Limits,
    ) -> Result<serde_json::Value, ExprError> {
        let value = self.search_within(&to_value(data), limits)?;
        to_json_within(&value, limits.result_bytes, RENDER_MAX_DEPTH).map_err(ExprError::limit)
    }
}

impl fmt::Debug for CompiledExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.source, f)
    }
}

impl PartialEq for CompiledExpr {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl serde::Serialize for CompiledExpr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

impl ExprError {
    /// The error of an evaluation that exceeded a limit (the message names it).
    pub fn limit(exceeded: Exceeded) -> ExprError {
        ExprError {
            kind: ExprErrorKind::LimitExceeded,
            message: exceeded.message(),
            position: 0,
        }
    }
}

/// Maps a jmespath error; a parse reason raised during evaluation comes from a function refusing
/// a value (jmespath 0.5 has no runtime variant for that).
fn from_jmespath(source: &str, err: JmespathError, evaluating: bool) -> ExprError {
    let (kind, message) = match err.reason {
        ErrorReason::Parse(message) if evaluating => (ExprErrorKind::InvalidValue, message),
        ErrorReason::Parse(message) => (ExprErrorKind::Syntax, message),
        ErrorReason::Runtime(runtime) => (runtime_kind(&runtime), runtime.to_string()),
    };
    // Errors built without a context (inside some built-ins) carry no expression nor offset.
    let offset = if err.expression.is_empty() {
        0
    } else {
        err.offset
    };
    error(source, kind, message, offset)
}

fn runtime_kind(err: &RuntimeError) -> ExprErrorKind {
    match err {
        RuntimeError::UnknownFunction(_) => ExprErrorKind::UnknownFunction,
        RuntimeError::TooManyArguments { .. } | RuntimeError::NotEnoughArguments { .. } => {
            ExprErrorKind::InvalidArity
        }
        RuntimeError::InvalidType { .. } | RuntimeError::InvalidReturnType { .. } => {
            ExprErrorKind::InvalidType
        }
        RuntimeError::InvalidSlice => ExprErrorKind::InvalidValue,
    }
}

/// Builds an error at byte `offset`, reported in characters; jmespath places call errors on the
/// `(`, so those move back to the start of the function's name.
fn error(source: &str, kind: ExprErrorKind, message: String, offset: usize) -> ExprError {
    let mut start = offset.min(source.len());
    if kind != ExprErrorKind::Syntax && source.as_bytes().get(start) == Some(&b'(') {
        let before = source.get(..start).unwrap_or_default().trim_end();
        let name_start = before
            .trim_end_matches(|c: char| c.is_ascii_alphanumeric() || c == '_')
            .len();
        if name_start < before.len() {
            start = name_start;
        }
    }
    let position = source
        .char_indices()
        .take_while(|&(i, _)| i < start)
        .count();
    ExprError {
        kind,
        message,
        position,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;

    use super::*;

    fn eval(source: &str, data: serde_json::Value) -> Result<serde_json::Value, ExprError> {
        CompiledExpr::compile(source)?.evaluate_json(&data, Limits::default())
    }

    #[test]
    fn truthiness_is_jmespaths() {
        for falsy in [json!(false), json!(null), json!(""), json!([]), json!({})] {
            assert!(!is_truthy(&to_value(&falsy)), "{falsy}");
        }
        for truthy in [
            json!(true),
            json!(0),
            json!(0.0),
            json!(" "),
            json!([0]),
            json!({"a": 0}),
        ] {
            assert!(is_truthy(&to_value(&truthy)), "{truthy}");
        }
    }

    #[test]
    fn json_round_trips_and_integral_numbers_stay_integers() {
        let data = json!({"i": -7, "u": u64::MAX, "min": i64::MIN, "f": 1.5, "s": "é", "n": null,
                          "a": [true, false, [], {}], "o": {"k": [1, 2.25]}});
        assert_eq!(to_json(&to_value(&data)).unwrap(), data);
        assert_eq!(eval("sum(@)", json!([1, 2])).unwrap().to_string(), "3");
        assert_eq!(eval("avg(@)", json!([1, 2])).unwrap(), json!(1.5));
        assert_eq!(eval("`-0.0`", json!(null)).unwrap().to_string(), "0");
        assert_eq!(
            eval("`1e19`", json!(null)).unwrap(),
            json!(10_000_000_000_000_000_000_u64)
        );
        assert_eq!(eval("`1e20`", json!(null)).unwrap(), json!(1e20));
        assert_eq!(eval("&a", json!(null)).unwrap(), json!(null));
    }

    #[test]
    fn searches_a_shared_value_many_times() {
        let data = to_value(&json!({"type": "message", "user": {"name": "Ada"}}));
        let filter = CompiledExpr::compile("type == 'message' && user.name").unwrap();
        for _ in 0..3 {
            assert_eq!(
                to_json(&filter.search(&data).unwrap()).unwrap(),
                json!("Ada")
            );
        }
    }

    #[test]
    fn evaluation_errors_carry_kind_and_position() {
        let err = eval("a.length(b)", json!({"a": {"b": 1}})).unwrap_err();
        assert_eq!((err.kind, err.position), (ExprErrorKind::InvalidType, 2));
        assert_eq!(err.to_string(), format!("{} (at position 2)", err.message));
        let err = eval("a[::0]", json!({"a": []})).unwrap_err();
        assert_eq!(err.kind, ExprErrorKind::InvalidValue);
        let err = eval("sort_by(@, &a)", json!([{"a": 1}, {"a": "x"}])).unwrap_err();
        assert_eq!((err.kind, err.position), (ExprErrorKind::InvalidType, 0));
        let err = eval("sum(@)", json!([1e308, 1e308])).unwrap_err();
        assert_eq!(err.kind, ExprErrorKind::InvalidValue);
    }

    #[test]
    fn kinds_have_the_compliance_suite_names() {
        let names = [
            (ExprErrorKind::Syntax, "syntax"),
            (ExprErrorKind::UnknownFunction, "unknown-function"),
            (ExprErrorKind::InvalidArity, "invalid-arity"),
            (ExprErrorKind::InvalidType, "invalid-type"),
            (ExprErrorKind::InvalidValue, "invalid-value"),
        ];
        for (kind, name) in names {
            assert_eq!(kind.as_str(), name);
            assert_eq!(kind.to_string(), name);
        }
    }

    #[test]
    fn shows_and_serializes_as_its_source() {
        let expr = CompiledExpr::compile("payload.event || payload").unwrap();
        assert_eq!(expr.as_str(), "payload.event || payload");
        assert_eq!(format!("{expr:?}"), "\"payload.event || payload\"");
        assert_eq!(
            serde_json::to_value(&expr).unwrap(),
            json!("payload.event || payload")
        );
        assert_eq!(expr.clone(), expr);
        let shared = std::thread::spawn(move || expr.search(&to_value(&json!({"payload": 1}))));
        assert_eq!(*shared.join().unwrap().unwrap(), *to_value(&json!(1)));
    }
}
