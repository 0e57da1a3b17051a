//! The built-ins that evaluate an `&expr` argument once per element, with jmespath 0.5's
//! semantics and errors, but through the budgeted interpreter so that the work they do is charged
//! to the evaluation (jmespath's own versions call its unbudgeted `interpret`).

use std::cmp::Ordering;

use jmespath::ast::Ast;
use jmespath::{Context, ErrorReason, JmespathError, Rcvar, RuntimeError, SearchResult, Variable};

use crate::pipeline::expr::eval::interpret;

/// The array and the expression of a call whose signature was checked already.
fn parts<'a>(
    array: &'a Rcvar,
    expref: &'a Rcvar,
    ctx: &Context<'_>,
) -> Result<(&'a [Rcvar], &'a Ast), JmespathError> {
    let wrong =
        |what: &str| JmespathError::from_ctx(ctx, ErrorReason::Parse(format!("expected {what}")));
    let items = array.as_array().ok_or_else(|| wrong("an array"))?;
    let ast = expref.as_expref().ok_or_else(|| wrong("an expression"))?;
    Ok((items, ast))
}

/// `map(&expr, array)`: the expression's result for every element, nulls included.
pub(super) fn map_fn(args: &[Rcvar], ctx: &mut Context<'_>) -> SearchResult {
    let (Some(expref), Some(array)) = (args.first(), args.get(1)) else {
        return Ok(Rcvar::new(Variable::Null));
    };
    let (items, ast) = parts(array, expref, ctx)?;
    let mapped = items
        .iter()
        .map(|item| interpret(item, ast, ctx))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Rcvar::new(Variable::Array(mapped)))
}

/// `sort_by(array, &expr)`: a stable sort by keys that must be all strings or all numbers.
pub(super) fn sort_by_fn(args: &[Rcvar], ctx: &mut Context<'_>) -> SearchResult {
    let (Some(array), Some(expref)) = (args.first(), args.get(1)) else {
        return Ok(Rcvar::new(Variable::Null));
    };
    let (items, ast) = parts(array, expref, ctx)?;
    let mut keyed = keys(items, ast, "expression->string|expression->number", ctx)?;
    keyed.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(Rcvar::new(Variable::Array(
        keyed.into_iter().map(|(item, _)| item).collect(),
    )))
}

/// `max_by(array, &expr)`: the first element with the greatest key (null for an empty array).
pub(super) fn max_by_fn(args: &[Rcvar], ctx: &mut Context<'_>) -> SearchResult {
    extreme_by(args, Ordering::Greater, ctx)
}

/// `min_by(array, &expr)`: the first element with the least key (null for an empty array).
pub(super) fn min_by_fn(args: &[Rcvar], ctx: &mut Context<'_>) -> SearchResult {
    extreme_by(args, Ordering::Less, ctx)
}

fn extreme_by(args: &[Rcvar], wanted: Ordering, ctx: &mut Context<'_>) -> SearchResult {
    let (Some(array), Some(expref)) = (args.first(), args.get(1)) else {
        return Ok(Rcvar::new(Variable::Null));
    };
    let (items, ast) = parts(array, expref, ctx)?;
    let keyed = keys(items, ast, "expression->number|expression->string", ctx)?;
    let mut best: Option<(Rcvar, Rcvar)> = None;
    for (item, key) in keyed {
        match &best {
            Some((_, best_key)) if key.cmp(best_key) != wanted => {}
            _ => best = Some((item, key)),
        }
    }
    Ok(best.map_or_else(|| Rcvar::new(Variable::Null), |(item, _)| item))
}

/// Every element with its key; the keys must be all strings or all numbers (jmespath's
/// `InvalidReturnType` errors otherwise, with the invocation that broke the rule).
fn keys(
    items: &[Rcvar],
    ast: &Ast,
    first_expected: &str,
    ctx: &mut Context<'_>,
) -> Result<Vec<(Rcvar, Rcvar)>, JmespathError> {
    let mut keyed: Vec<(Rcvar, Rcvar)> = Vec::with_capacity(items.len());
    for (invocation, item) in items.iter().enumerate() {
        let key = interpret(item, ast, ctx)?;
        let expected = match keyed.first() {
            None if key.is_string() || key.is_number() => None,
            None => Some(first_expected.to_owned()),
            Some((_, first)) if first.get_type() != key.get_type() => {
                Some(format!("expression->{}", first.get_type()))
            }
            Some(_) => None,
        };
        if let Some(expected) = expected {
            let reason = ErrorReason::Runtime(RuntimeError::InvalidReturnType {
                expected,
                actual: key.get_type().to_string(),
                position: 1,
                invocation: invocation.max(1),
            });
            return Err(JmespathError::from_ctx(ctx, reason));
        }
        keyed.push((item.clone(), key));
    }
    Ok(keyed)
}
