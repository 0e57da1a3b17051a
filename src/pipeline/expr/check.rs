//! Checks made before an expression is accepted, so that what can be known is never discovered
//! at run time: calls against the function table, literal `regex()` patterns, and the limits
//! that keep jmespath 0.5's recursive parser and interpreter within the stack (it overflows, and
//! the process aborts, at a few hundred levels) and its slice loop from overflowing `i32`.

use jmespath::ast::Ast;

use super::ExprErrorKind;
use crate::pipeline::functions;

/// Longest expression accepted, in bytes.
const MAX_SOURCE_BYTES: usize = 16 * 1024;
/// Most brackets open at once plus prefix operators and projections in all: an upper bound of
/// the parser's recursion (jmespath 0.5 overflows the stack, and aborts, at a few hundred levels).
const MAX_NESTING: usize = 64;
/// Deepest AST accepted: evaluation recurses once per level (about 10 KiB per level unoptimised).
const MAX_DEPTH: usize = 100;
/// Largest slice step accepted: jmespath 0.5's slice loop overflows `i32` and panics on steps
/// near `i32::MAX`.
const MAX_SLICE_STEP: u32 = 1 << 24;

/// A compile-time refusal: kind, message, byte offset.
type Rejection = (ExprErrorKind, String, usize);

/// Refuses, before parsing, a text too long or nested too deeply for the parser's recursion.
pub(super) fn check_source(source: &str) -> Result<(), Rejection> {
    let too_deep = |offset| {
        let message = format!(
            "expression too complex: more than {MAX_NESTING} nested brackets, projections and \
             prefix operators"
        );
        Err((ExprErrorKind::Syntax, message, offset))
    };
    if source.len() > MAX_SOURCE_BYTES {
        let message = format!("expression longer than {MAX_SOURCE_BYTES} bytes");
        return Err((ExprErrorKind::Syntax, message, 0));
    }
    let (mut open, mut chained, mut quote) = (0_usize, 0_usize, None);
    let mut chars = source.char_indices().peekable();
    while let Some((offset, c)) = chars.next() {
        let next = chars.peek().map(|&(_, next)| next);
        match (quote, c) {
            (Some(_), '\\') => {
                chars.next();
            }
            (Some(close), _) if c == close => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"' | '`') => quote = Some(c),
            (None, ')' | ']' | '}') => open = open.saturating_sub(1),
            (None, '(' | '{') => open += 1,
            (None, '[') => {
                open += 1;
                chained += usize::from(matches!(next, Some(']' | '?')));
            }
            (None, '&') if next == Some('&') => {
                chars.next();
            }
            (None, '!') if next == Some('=') => {}
            (None, '!' | '&' | '*') => chained += 1,
            (None, _) => {}
        }
        if open + chained > MAX_NESTING {
            return too_deep(offset);
        }
    }
    Ok(())
}

/// Most a result may grow relative to its input, by the static estimate of [`growth`], before the
/// expression is refused as hopeless: the evaluation limits would stop it on any real input.
const MAX_GROWTH: f64 = 65_536.0;

/// Walks the AST: every call must name a known function with an accepted number of arguments, a
/// literal `regex()` pattern must compile, slice steps must be safe, depth must stay bounded, and
/// the result must not grow hopelessly faster than the input.
pub(super) fn check_ast(ast: &Ast) -> Result<(), Rejection> {
    check_node(ast, 0)?;
    if growth(ast) > MAX_GROWTH {
        let message = format!(
            "expression builds results more than {MAX_GROWTH} times the size of its input \
             (each `[@, @]`-style step multiplies it); no input could be evaluated within the \
             evaluation limits"
        );
        return Err((ExprErrorKind::LimitExceeded, message, 0));
    }
    Ok(())
}

/// An upper estimate of how many times its input the result of `node` can hold: a multi-select
/// adds up its parts, a pipe, sub-expression or projection multiplies its two sides, anything
/// else keeps at most what its widest argument holds. Saturates instead of overflowing.
fn growth(node: &Ast) -> f64 {
    let sum = |nodes: &mut dyn Iterator<Item = &Ast>| nodes.map(growth).sum::<f64>().max(1.0);
    match node {
        Ast::Subexpr { lhs, rhs, .. } | Ast::Projection { lhs, rhs, .. } => {
            growth(lhs) * growth(rhs)
        }
        Ast::MultiList { elements, .. } => sum(&mut elements.iter()),
        Ast::MultiHash { elements, .. } => sum(&mut elements.iter().map(|pair| &pair.value)),
        Ast::Function { args, .. } => sum(&mut args.iter()),
        Ast::Or { lhs, rhs, .. } | Ast::And { lhs, rhs, .. } => growth(lhs).max(growth(rhs)),
        Ast::Condition { then, .. } => growth(then),
        Ast::Expref { ast, .. } | Ast::Flatten { node: ast, .. } => growth(ast),
        Ast::ObjectValues { node, .. } => growth(node),
        Ast::Comparison { .. }
        | Ast::Not { .. }
        | Ast::Identity { .. }
        | Ast::Field { .. }
        | Ast::Index { .. }
        | Ast::Literal { .. }
        | Ast::Slice { .. } => 1.0,
    }
}

fn check_node(node: &Ast, depth: usize) -> Result<(), Rejection> {
    if depth > MAX_DEPTH {
        let message = format!("expression nested more than {MAX_DEPTH} levels deep");
        return Err((ExprErrorKind::Syntax, message, offset_of(node)));
    }
    match node {
        Ast::Function { name, args, offset } => check_call(name, args, *offset)?,
        Ast::Slice { step, offset, .. } if step.unsigned_abs() > MAX_SLICE_STEP => {
            let message = format!("slice step {step} is out of range");
            return Err((ExprErrorKind::InvalidValue, message, *offset));
        }
        _ => {}
    }
    children(node)
        .into_iter()
        .try_for_each(|child| check_node(child, depth + 1))
}

fn check_call(name: &str, args: &[Ast], offset: usize) -> Result<(), Rejection> {
    let Some(arity) = functions::arity(name) else {
        let message = format!("unknown function {name}()");
        return Err((ExprErrorKind::UnknownFunction, message, offset));
    };
    if !arity.accepts(args.len()) {
        let at_least = if arity.variadic { "at least " } else { "" };
        let plural = if arity.min == 1 { "" } else { "s" };
        let message = format!(
            "{name}() takes {at_least}{} argument{plural}, {} given",
            arity.min,
            args.len()
        );
        return Err((ExprErrorKind::InvalidArity, message, offset));
    }
    if let ("regex", Some(Ast::Literal { value, offset })) = (name, args.get(1))
        && let Some(pattern) = value.as_string()
    {
        functions::build_regex(pattern)
            .map_err(|message| (ExprErrorKind::InvalidValue, message, *offset))?;
    }
    Ok(())
}

fn children(node: &Ast) -> Vec<&Ast> {
    match node {
        Ast::Comparison { lhs, rhs, .. }
        | Ast::And { lhs, rhs, .. }
        | Ast::Or { lhs, rhs, .. }
        | Ast::Projection { lhs, rhs, .. }
        | Ast::Subexpr { lhs, rhs, .. } => vec![lhs, rhs],
        Ast::Condition {
            predicate, then, ..
        } => vec![predicate, then],
        Ast::Expref { ast: node, .. }
        | Ast::Flatten { node, .. }
        | Ast::Not { node, .. }
        | Ast::ObjectValues { node, .. } => vec![node],
        Ast::Function { args: nodes, .. }
        | Ast::MultiList {
            elements: nodes, ..
        } => nodes.iter().collect(),
        Ast::MultiHash { elements, .. } => elements.iter().map(|pair| &pair.value).collect(),
        Ast::Identity { .. }
        | Ast::Field { .. }
        | Ast::Index { .. }
        | Ast::Literal { .. }
        | Ast::Slice { .. } => Vec::new(),
    }
}

fn offset_of(node: &Ast) -> usize {
    match node {
        Ast::Comparison { offset, .. }
        | Ast::Condition { offset, .. }
        | Ast::Identity { offset }
        | Ast::Expref { offset, .. }
        | Ast::Flatten { offset, .. }
        | Ast::Function { offset, .. }
        | Ast::Field { offset, .. }
        | Ast::Index { offset, .. }
        | Ast::Literal { offset, .. }
        | Ast::MultiList { offset, .. }
        | Ast::MultiHash { offset, .. }
        | Ast::Not { offset, .. }
        | Ast::Projection { offset, .. }
        | Ast::ObjectValues { offset, .. }
        | Ast::And { offset, .. }
        | Ast::Or { offset, .. }
        | Ast::Slice { offset, .. }
        | Ast::Subexpr { offset, .. } => *offset,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use proptest::prelude::*;
    use serde_json::json;

    use super::super::{CompiledExpr, ExprErrorKind, to_value};

    fn refusal(source: &str) -> (ExprErrorKind, usize) {
        let err = CompiledExpr::compile(source).unwrap_err();
        (err.kind, err.position)
    }

    #[test]
    fn refuses_calls_the_runtime_would_refuse_at_their_name() {
        use ExprErrorKind::*;
        assert_eq!(refusal("foo(bar)"), (UnknownFunction, 0));
        assert_eq!(refusal("length(a, b)"), (InvalidArity, 0));
        assert_eq!(refusal("a.b.length(a, b)"), (InvalidArity, 4));
        assert_eq!(refusal("  length (a, b)"), (InvalidArity, 2));
        assert_eq!(refusal("merge()"), (InvalidArity, 0));
        assert_eq!(refusal("not_null()"), (InvalidArity, 0));
        assert_eq!(refusal("glob(a)"), (InvalidArity, 0));
        assert_eq!(refusal("lower(a, b)"), (InvalidArity, 0));
        // Inside an expression reference, and positions count characters, not bytes.
        assert_eq!(refusal("sort_by(@, &length(a, b))"), (InvalidArity, 12));
        assert_eq!(refusal("'é' | nope(@)"), (UnknownFunction, 6));
        assert!(CompiledExpr::compile("merge(a, b, c) && not_null(a, b)").is_ok());
    }

    #[test]
    fn refuses_invalid_literal_regex_patterns_at_the_literal() {
        let err = CompiledExpr::compile("regex(a, '(')").unwrap_err();
        assert_eq!((err.kind, err.position), (ExprErrorKind::InvalidValue, 9));
        assert!(err.message.contains("unclosed group"), "{}", err.message);
        assert_eq!(
            refusal("regex(a, 'x{99999}{9999}')").0,
            ExprErrorKind::InvalidValue
        );
        // Patterns from the data are only known at run time.
        assert!(CompiledExpr::compile("regex(a, b) || regex(a, '^\\d+$')").is_ok());
    }

    #[test]
    fn refuses_syntax_errors() {
        assert_eq!(refusal("a.["), (ExprErrorKind::Syntax, 3));
        assert_eq!(refusal("foo[?a == ]").0, ExprErrorKind::Syntax);
        assert_eq!(refusal("\"abc\"(1)").0, ExprErrorKind::Syntax);
    }

    #[test]
    fn refuses_slice_steps_that_overflow_the_interpreter() {
        assert_eq!(refusal("[1::2147483647]").0, ExprErrorKind::InvalidValue);
        assert_eq!(refusal("[::-2147483647]").0, ExprErrorKind::InvalidValue);
        let data = to_value(&json!([1, 2, 3, 4]));
        let every_other = CompiledExpr::compile("[1::2]").unwrap();
        assert_eq!(
            *every_other.search(&data).unwrap(),
            *to_value(&json!([2, 4]))
        );
    }

    /// Constructions that recurse once per repetition in jmespath's parser or interpreter.
    fn deep(kind: usize, n: usize) -> String {
        let (open, middle, close) = match kind {
            0 => ("*.", "a", ""),
            1 => ("a[*].", "a", ""),
            2 => ("!", "a", ""),
            3 => ("(", "a", ")"),
            4 => ("[", "a", "]"),
            5 => ("a[?", "a", "]"),
            6 => ("a.", "a", ""),
            7 => ("a || ", "a", ""),
            8 => ("not_null(", "a", ")"),
            _ => ("map(&", "a", ", @)"),
        };
        format!("{}{middle}{}", open.repeat(n), close.repeat(n))
    }

    #[test]
    fn deep_expressions_are_refused_before_they_exhaust_the_stack() {
        // Runs on the test thread's 2 MiB stack, unoptimised: an overflow aborts the test binary.
        let data = to_value(&json!({"a": {"a": [{"a": 1}]}}));
        for kind in 0..10 {
            let accepted = (1..400).filter(|&n| CompiledExpr::compile(&deep(kind, n)).is_ok());
            let deepest = accepted.max().unwrap();
            assert!(deepest >= 30, "kind {kind}: only {deepest} levels accepted");
            let _ = CompiledExpr::compile(&deep(kind, deepest))
                .unwrap()
                .search(&data);
            let err = CompiledExpr::compile(&deep(kind, 5000)).unwrap_err();
            assert_eq!(err.kind, ExprErrorKind::Syntax, "kind {kind}");
        }
        assert!(CompiledExpr::compile(&"a".repeat(20_000)).is_err());
    }

    proptest! {
        #[test]
        fn compiling_and_searching_never_panic(source in "[a-c@.*&|!?()\\[\\]{}:,'`0-9 =<>-]{0,40}") {
            if let Ok(expr) = CompiledExpr::compile(&source) {
                let data = to_value(&json!({"a": [1, "b", {"c": [2]}], "b": {"c": "d"}}));
                let _ = expr.search(&data);
            }
        }
    }
}
