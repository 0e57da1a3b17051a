//! The one shared JMESPath runtime: every built-in plus Switchboard's own filter functions
//! (`glob`, `icontains`, `regex`, `lower`, `upper`), and the table of every function's arity that
//! [`super::expr`] checks calls against before an expression is accepted. The built-ins that
//! evaluate an `&expr` argument (`map`, `sort_by`, `max_by`, `min_by`) are replaced by versions
//! that evaluate it with Switchboard's budgeted interpreter.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, PoisonError, RwLock};

use jmespath::functions::{ArgumentType, CustomFunction, Signature};
use jmespath::{Context, ErrorReason, JmespathError, Rcvar, Runtime, SearchResult, Variable};
use regex::{Regex, RegexBuilder};

use super::glob::GlobMatcher;

mod expref;

/// The runtime every expression is evaluated with.
pub(crate) static RUNTIME: LazyLock<Runtime> = LazyLock::new(build_runtime);

/// How many arguments a function takes: exactly `min`, or at least `min` when `variadic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Arity {
    pub(crate) min: usize,
    pub(crate) variadic: bool,
}

impl Arity {
    /// Whether a call with `count` arguments is accepted.
    pub(crate) fn accepts(self, count: usize) -> bool {
        count == self.min || (self.variadic && count > self.min)
    }
}

/// Functions of [`RUNTIME`] taking exactly one argument (arities from jmespath 0.5's signatures).
const UNARY: &str = "abs avg ceil floor keys length max min reverse sort sum to_array to_number \
                     to_string type values lower upper";
/// Functions of [`RUNTIME`] taking exactly two arguments.
const BINARY: &str = "contains ends_with join map max_by min_by sort_by starts_with glob icontains \
                      regex";
/// Functions of [`RUNTIME`] taking one argument or more.
const VARIADIC: &str = "merge not_null";

/// The arity of a known function, `None` for a name the runtime does not have.
pub(crate) fn arity(name: &str) -> Option<Arity> {
    let listed = |names: &str| names.split_whitespace().any(|known| known == name);
    let (min, variadic) = if listed(UNARY) {
        (1, false)
    } else if listed(BINARY) {
        (2, false)
    } else if listed(VARIADIC) {
        (1, true)
    } else {
        return None;
    };
    Some(Arity { min, variadic })
}

type Body = fn(&[Rcvar], &mut Context<'_>) -> SearchResult;

fn build_runtime() -> Runtime {
    let mut runtime = Runtime::new();
    runtime.register_builtin_functions();
    let string = || ArgumentType::String;
    let number_array = ArgumentType::TypedArray(Box::new(ArgumentType::Number));
    let expref = || ArgumentType::Expref;
    let array = || ArgumentType::Array;
    let functions: [(&str, Vec<ArgumentType>, Body); 11] = [
        ("map", vec![expref(), array()], expref::map_fn),
        ("sort_by", vec![array(), expref()], expref::sort_by_fn),
        ("max_by", vec![array(), expref()], expref::max_by_fn),
        ("min_by", vec![array(), expref()], expref::min_by_fn),
        // Two built-ins of jmespath 0.5 stray from the specification: `avg([])` fails (0/0)
        // instead of giving null; `to_number` parses any JSON (`to_number('"a"')` gives "a").
        ("avg", vec![number_array], avg_fn),
        ("to_number", vec![ArgumentType::Any], to_number_fn),
        ("glob", vec![string(), string()], glob_fn),
        ("icontains", vec![string(), string()], icontains_fn),
        ("regex", vec![string(), string()], regex_fn),
        ("lower", vec![string()], lower_fn),
        ("upper", vec![string()], upper_fn),
    ];
    for (name, inputs, body) in functions {
        let function = CustomFunction::new(Signature::new(inputs, None), Box::new(body));
        runtime.register_function(name, Box::new(function));
    }
    runtime
}

/// Argument `index` as a string (the signature has already checked its type).
fn text<'a>(args: &'a [Rcvar], index: usize, ctx: &Context<'_>) -> Result<&'a str, JmespathError> {
    match args.get(index).map(|arg| &**arg) {
        Some(Variable::String(text)) => Ok(text),
        _ => Err(value_error(
            ctx,
            format!("argument {index} must be a string"),
        )),
    }
}

/// An error about a value, reported by the runtime as a parse reason: jmespath 0.5 has no runtime
/// variant for it, and [`super::expr`] maps a parse reason raised at evaluation to `InvalidValue`.
fn value_error(ctx: &Context<'_>, message: String) -> JmespathError {
    JmespathError::from_ctx(ctx, ErrorReason::Parse(message))
}

fn boolean(value: bool) -> SearchResult {
    Ok(Rcvar::new(Variable::Bool(value)))
}

fn string(value: String) -> SearchResult {
    Ok(Rcvar::new(Variable::String(value)))
}

fn avg_fn(args: &[Rcvar], _: &mut Context<'_>) -> SearchResult {
    let values = args.first().and_then(|arg| arg.as_array());
    let values = values.map_or(&[][..], Vec::as_slice);
    let mean = values.iter().filter_map(|v| v.as_number()).sum::<f64>() / values.len() as f64;
    // The mean of nothing is NaN, which no JSON number holds: null, as the specification says.
    Ok(Rcvar::new(
        serde_json::Number::from_f64(mean).map_or(Variable::Null, Variable::Number),
    ))
}

fn to_number_fn(args: &[Rcvar], _: &mut Context<'_>) -> SearchResult {
    match args.first() {
        Some(number) if number.is_number() => Ok(number.clone()),
        Some(text) => {
            let parsed = text.as_string().and_then(|s| serde_json::from_str(s).ok());
            Ok(Rcvar::new(parsed.map_or(Variable::Null, Variable::Number)))
        }
        None => Ok(Rcvar::new(Variable::Null)),
    }
}

/// `glob(s, pattern)`: fnmatch match of the whole of `s`.
fn glob_fn(args: &[Rcvar], ctx: &mut Context<'_>) -> SearchResult {
    let (subject, pattern) = (text(args, 0, ctx)?, text(args, 1, ctx)?);
    // Compiling a glob is a few token pushes, cheaper than a cache look-up under a lock.
    boolean(GlobMatcher::new(pattern).is_match(subject))
}

/// `icontains(s, sub)`: substring test after Unicode lowercasing of both sides.
fn icontains_fn(args: &[Rcvar], ctx: &mut Context<'_>) -> SearchResult {
    let (subject, needle) = (text(args, 0, ctx)?, text(args, 1, ctx)?);
    boolean(subject.to_lowercase().contains(&needle.to_lowercase()))
}

/// `regex(s, pattern)`: unanchored search with the Rust `regex` syntax.
fn regex_fn(args: &[Rcvar], ctx: &mut Context<'_>) -> SearchResult {
    let (subject, pattern) = (text(args, 0, ctx)?, text(args, 1, ctx)?);
    let regex = REGEXES
        .get_or_try_insert(pattern, || build_regex(pattern).map(Arc::new))
        .map_err(|message| value_error(ctx, message))?;
    boolean(regex.is_match(subject))
}

/// `lower(s)`: Unicode lowercase.
fn lower_fn(args: &[Rcvar], ctx: &mut Context<'_>) -> SearchResult {
    string(text(args, 0, ctx)?.to_lowercase())
}

/// `upper(s)`: Unicode uppercase.
fn upper_fn(args: &[Rcvar], ctx: &mut Context<'_>) -> SearchResult {
    string(text(args, 0, ctx)?.to_uppercase())
}

/// Compiles a `regex()` pattern with bounded memory; the message says why a pattern is refused.
pub(crate) fn build_regex(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
        .map_err(|err| format!("invalid regex pattern {pattern:?}: {}", regex_summary(&err)))
}

/// The one line of a regex error that says what is wrong (the full text draws a caret diagram).
fn regex_summary(err: &regex::Error) -> String {
    let text = err.to_string();
    match text.lines().find_map(|line| line.strip_prefix("error: ")) {
        Some(line) => line.to_owned(),
        None => text,
    }
}

/// Most distinct dynamic patterns kept compiled; the cache is emptied when it would grow past.
const CACHE_LIMIT: usize = 256;

// `Arc`: a cloned `Regex` gets a fresh, empty matching-cache pool, costly on its first search.
static REGEXES: LazyLock<BoundedCache<Arc<Regex>>> = LazyLock::new(BoundedCache::new);

/// Compiled patterns by source text, shared by every thread.
struct BoundedCache<T> {
    entries: RwLock<HashMap<String, T>>,
}

impl<T: Clone> BoundedCache<T> {
    fn new() -> Self {
        BoundedCache {
            entries: RwLock::new(HashMap::new()),
        }
    }

    fn get_or_try_insert<E>(&self, key: &str, make: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        // A poisoned lock only means another thread panicked mid-insert; the map is still whole.
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = entries.get(key) {
            return Ok(found.clone());
        }
        drop(entries);
        let made = make()?;
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= CACHE_LIMIT {
            entries.clear();
        }
        entries.insert(key.to_owned(), made.clone());
        Ok(made)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::{Value as Json, json};

    use super::*;
    use crate::pipeline::expr::{CompiledExpr, ExprErrorKind, Limits};

    fn eval(source: &str) -> Result<Json, ExprErrorKind> {
        let data = json!({"key": "message.channels", "text": "Hello WÖRLD", "n": 1, "p": "("});
        let expr = CompiledExpr::compile(source).map_err(|err| err.kind)?;
        expr.evaluate_json(&data, Limits::default())
            .map_err(|err| err.kind)
    }

    #[test]
    fn custom_functions_give_the_documented_results() {
        let cases = [
            ("glob(key, 'message.*')", json!(true)),
            ("glob(key, 'message.[!c]*')", json!(false)),
            ("glob(key, 'Message.*')", json!(false)),
            ("glob(key, key)", json!(true)),
            ("icontains(text, 'wör')", json!(true)),
            ("icontains(text, 'LLO W')", json!(true)),
            ("icontains(text, 'world')", json!(false)),
            ("regex(text, 'W.RLD$')", json!(true)),
            ("regex(text, '^WÖRLD')", json!(false)),
            ("regex(key, '\\.chan')", json!(true)),
            ("lower(text)", json!("hello wörld")),
            ("upper('straße')", json!("STRASSE")),
            ("starts_with(key, 'message.')", json!(true)),
            ("ends_with(key, '.channels')", json!(true)),
        ];
        for (source, expected) in cases {
            assert_eq!(eval(source), Ok(expected), "{source}");
        }
    }

    #[test]
    fn custom_functions_check_argument_types() {
        for source in [
            "lower(n)",
            "upper(missing)",
            "glob(n, '*')",
            "icontains(text, n)",
        ] {
            assert_eq!(eval(source), Err(ExprErrorKind::InvalidType), "{source}");
        }
        assert_eq!(eval("regex(text, n)"), Err(ExprErrorKind::InvalidType));
    }

    #[test]
    fn an_invalid_dynamic_regex_is_an_invalid_value_not_a_panic() {
        assert_eq!(eval("regex(text, p)"), Err(ExprErrorKind::InvalidValue));
        let expr = CompiledExpr::compile("regex(text, p)").unwrap();
        let err = expr
            .evaluate_json(&json!({"text": "x", "p": "["}), Limits::default())
            .unwrap_err();
        assert_eq!(err.position, 0);
        assert!(
            err.message.starts_with("invalid regex pattern \"[\""),
            "{}",
            err.message
        );
    }

    #[test]
    fn the_pattern_cache_stays_bounded() {
        let expr = CompiledExpr::compile("regex(text, p)").unwrap();
        for i in 0..(CACHE_LIMIT + 50) {
            let data = json!({"text": format!("x{i}"), "p": format!("^x{i}$")});
            assert_eq!(
                expr.evaluate_json(&data, Limits::default()).unwrap(),
                json!(true)
            );
        }
        let entries = REGEXES.entries.read().unwrap();
        assert!(entries.len() <= CACHE_LIMIT);
    }

    #[test]
    fn corrected_built_ins_follow_the_specification() {
        assert_eq!(eval("avg(`[]`)"), Ok(json!(null)));
        assert_eq!(eval("avg(`[1, 2, 6]`)"), Ok(json!(3)));
        assert_eq!(eval("to_number('12')"), Ok(json!(12)));
        assert_eq!(eval("to_number('1.5')"), Ok(json!(1.5)));
        assert_eq!(eval("to_number(n)"), Ok(json!(1)));
        for not_a_number in ["'\"abc\"'", "'[1]'", "'true'", "'abc'", "`{}`"] {
            assert_eq!(eval(&format!("to_number({not_a_number})")), Ok(json!(null)));
        }
    }

    #[test]
    fn every_listed_function_is_registered() {
        let all = || {
            [UNARY, BINARY, VARIADIC]
                .into_iter()
                .flat_map(str::split_whitespace)
        };
        for name in all() {
            assert!(RUNTIME.get_function(name).is_some(), "{name}");
            assert!(arity(name).is_some(), "{name}");
        }
        // jmespath 0.5's 26 built-ins and our 5.
        assert_eq!(all().count(), 26 + 5);
        assert!(arity("merge").unwrap().accepts(3));
        assert!(!arity("length").unwrap().accepts(2));
        assert_eq!(arity("nope"), None);
    }
}
