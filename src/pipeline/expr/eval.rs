//! The interpreter: jmespath 0.5's semantics node for node (the compliance suite checks it), with
//! every node, every element materialised and every function call charged to the evaluation's
//! [`budget`](super::budget) as it runs. jmespath's own `interpret` cannot be interrupted, so
//! expressions never go through it: the built-ins that evaluate `&expr` arguments (`map`,
//! `sort_by`, `max_by`, `min_by`) are replaced in the runtime by versions that call back here.

use std::collections::BTreeMap;

use jmespath::ast::{Ast, Comparator};
use jmespath::{Context, ErrorReason, JmespathError, Rcvar, RuntimeError, SearchResult, Variable};

use super::budget::{self, Exceeded};

/// Functions whose work grows with the whole size of their arguments (deep comparison,
/// rendering, parsing, concatenation, sorting): charged by a full, bounded walk of their
/// arguments. Every other function is charged by the top level of its arguments only.
const DEEP: &str = "contains to_string to_number join sort max min sum avg merge";

/// Takes `steps` from the running evaluation, as a jmespath error at the current offset.
pub(crate) fn charge(ctx: &Context<'_>, steps: u64) -> Result<(), JmespathError> {
    budget::charge(steps).map_err(|exceeded| limit_error(ctx, exceeded))
}

/// The error for an exceeded limit (recognised by [`super::CompiledExpr::search`] through the
/// budget, not by its text).
fn limit_error(ctx: &Context<'_>, exceeded: Exceeded) -> JmespathError {
    JmespathError::from_ctx(ctx, ErrorReason::Parse(exceeded.message()))
}

fn null() -> SearchResult {
    Ok(Rcvar::new(Variable::Null))
}

/// Evaluates `node` over `data`.
// A flat dispatch table, one arm per AST node kind (the larger ones call a function of their own):
// splitting it further would only scatter the table.
#[allow(clippy::too_many_lines)]
pub(crate) fn interpret(data: &Rcvar, node: &Ast, ctx: &mut Context<'_>) -> SearchResult {
    charge(ctx, 1)?;
    match node {
        Ast::Field { name, .. } => Ok(data.get_field(name)),
        Ast::Subexpr { lhs, rhs, .. } => {
            let left = interpret(data, lhs, ctx)?;
            interpret(&left, rhs, ctx)
        }
        Ast::Identity { .. } => Ok(data.clone()),
        Ast::Literal { value, .. } => Ok(value.clone()),
        Ast::Index { idx, .. } => Ok(if *idx >= 0 {
            data.get_index(idx.unsigned_abs() as usize)
        } else {
            data.get_negative_index(idx.unsigned_abs() as usize)
        }),
        Ast::Or { lhs, rhs, .. } => {
            let left = interpret(data, lhs, ctx)?;
            if left.is_truthy() {
                Ok(left)
            } else {
                interpret(data, rhs, ctx)
            }
        }
        Ast::And { lhs, rhs, .. } => {
            let left = interpret(data, lhs, ctx)?;
            if left.is_truthy() {
                interpret(data, rhs, ctx)
            } else {
                Ok(left)
            }
        }
        Ast::Not { node, .. } => {
            let result = interpret(data, node, ctx)?;
            Ok(Rcvar::new(Variable::Bool(!result.is_truthy())))
        }
        Ast::Condition {
            predicate, then, ..
        } => {
            if interpret(data, predicate, ctx)?.is_truthy() {
                interpret(data, then, ctx)
            } else {
                null()
            }
        }
        Ast::Comparison {
            comparator,
            lhs,
            rhs,
            ..
        } => compare(data, comparator, lhs, rhs, ctx),
        Ast::ObjectValues { node, .. } => object_values(data, node, ctx),
        Ast::Projection { lhs, rhs, .. } => project(data, lhs, rhs, ctx),
        Ast::Flatten { node, .. } => flatten(data, node, ctx),
        Ast::MultiList { elements, .. } => multi_list(data, elements, ctx),
        Ast::MultiHash { elements, .. } => multi_hash(data, elements, ctx),
        Ast::Function { name, args, offset } => call(data, name, args, *offset, ctx),
        Ast::Expref { ast, .. } => Ok(Rcvar::new(Variable::Expref((**ast).clone()))),
        Ast::Slice {
            start,
            stop,
            step,
            offset,
        } => slice(data, (*start, *stop, *step), *offset, ctx),
    }
}

/// The values of an object (`*` on an object), charged per value.
fn object_values(data: &Rcvar, node: &Ast, ctx: &mut Context<'_>) -> SearchResult {
    match &*interpret(data, node, ctx)? {
        Variable::Object(map) => {
            charge(ctx, map.len() as u64)?;
            Ok(Rcvar::new(Variable::Array(map.values().cloned().collect())))
        }
        _ => null(),
    }
}

/// `[a, b]`: null over null, otherwise each element evaluated.
fn multi_list(data: &Rcvar, elements: &[Ast], ctx: &mut Context<'_>) -> SearchResult {
    if data.is_null() {
        return null();
    }
    charge(ctx, elements.len() as u64)?;
    let collected = elements
        .iter()
        .map(|element| interpret(data, element, ctx))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Rcvar::new(Variable::Array(collected)))
}

/// `{k: a}`: null over null, otherwise each value evaluated.
fn multi_hash(
    data: &Rcvar,
    elements: &[jmespath::ast::KeyValuePair],
    ctx: &mut Context<'_>,
) -> SearchResult {
    if data.is_null() {
        return null();
    }
    charge(ctx, elements.len() as u64)?;
    let mut collected = BTreeMap::new();
    for pair in elements {
        let value = interpret(data, &pair.value, ctx)?;
        collected.insert(pair.key.clone(), value);
    }
    Ok(Rcvar::new(Variable::Object(collected)))
}

/// `[start:stop:step]`: a zero step is an error at the slice's offset; charged per item.
fn slice(
    data: &Rcvar,
    (start, stop, step): (Option<i32>, Option<i32>, i32),
    offset: usize,
    ctx: &mut Context<'_>,
) -> SearchResult {
    if step == 0 {
        ctx.offset = offset;
        let reason = ErrorReason::Runtime(RuntimeError::InvalidSlice);
        return Err(JmespathError::from_ctx(ctx, reason));
    }
    match data.slice(start, stop, step) {
        Some(items) => {
            charge(ctx, items.len() as u64)?;
            Ok(Rcvar::new(Variable::Array(items)))
        }
        None => null(),
    }
}

/// Equality walks both sides (charged by the smaller, bounded); ordering takes numbers only.
fn compare(
    data: &Rcvar,
    comparator: &Comparator,
    lhs: &Ast,
    rhs: &Ast,
    ctx: &mut Context<'_>,
) -> SearchResult {
    let left = interpret(data, lhs, ctx)?;
    let right = interpret(data, rhs, ctx)?;
    if matches!(comparator, Comparator::Equal | Comparator::NotEqual) {
        let cap = budget::remaining().saturating_add(1);
        let steps = budget::deep_steps(&left, cap).min(budget::deep_steps(&right, cap));
        charge(ctx, steps)?;
    }
    Ok(left
        .compare(comparator, &right)
        .map_or(Rcvar::new(Variable::Null), |result| {
            Rcvar::new(Variable::Bool(result))
        }))
}

fn project(data: &Rcvar, lhs: &Ast, rhs: &Ast, ctx: &mut Context<'_>) -> SearchResult {
    let left = interpret(data, lhs, ctx)?;
    let Some(items) = left.as_array() else {
        return null();
    };
    let mut collected = Vec::new();
    for item in items {
        let current = interpret(item, rhs, ctx)?;
        if !current.is_null() {
            collected.push(current);
        }
    }
    Ok(Rcvar::new(Variable::Array(collected)))
}

fn flatten(data: &Rcvar, node: &Ast, ctx: &mut Context<'_>) -> SearchResult {
    let value = interpret(data, node, ctx)?;
    let Some(items) = value.as_array() else {
        return null();
    };
    let mut collected: Vec<Rcvar> = Vec::new();
    for item in items {
        match item.as_array() {
            Some(inner) => {
                charge(ctx, 1 + inner.len() as u64)?;
                collected.extend(inner.iter().cloned());
            }
            None => {
                charge(ctx, 1)?;
                collected.push(item.clone());
            }
        }
    }
    Ok(Rcvar::new(Variable::Array(collected)))
}

/// Evaluates the arguments, charges the call by their size, then calls the runtime's function.
fn call(
    data: &Rcvar,
    name: &str,
    args: &[Ast],
    offset: usize,
    ctx: &mut Context<'_>,
) -> SearchResult {
    let values = args
        .iter()
        .map(|arg| interpret(data, arg, ctx))
        .collect::<Result<Vec<_>, _>>()?;
    ctx.offset = offset;
    let deep = DEEP.split_whitespace().any(|known| known == name);
    let cap = budget::remaining().saturating_add(1);
    let steps = values.iter().fold(1_u64, |total, value| {
        let steps = if deep {
            budget::deep_steps(value, cap)
        } else {
            budget::shallow_steps(value)
        };
        total.saturating_add(steps)
    });
    charge(ctx, steps)?;
    match ctx.runtime.get_function(name) {
        Some(function) => function.evaluate(&values, ctx),
        None => {
            let reason = ErrorReason::Runtime(RuntimeError::UnknownFunction(name.to_owned()));
            Err(JmespathError::from_ctx(ctx, reason))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use crate::pipeline::expr::{CompiledExpr, ExprErrorKind, Limits, to_value};

    fn repeat(step: &str, times: usize) -> String {
        format!("{}@", step.repeat(times))
    }

    fn limit_error(source: &str, data: serde_json::Value) -> String {
        let expr = CompiledExpr::compile(source).unwrap();
        match expr.evaluate_json(&data, Limits::default()) {
            Ok(_) => panic!("{source}: evaluated within the limits"),
            Err(err) => {
                assert_eq!(err.kind, ExprErrorKind::LimitExceeded, "{source}: {err}");
                err.message
            }
        }
    }

    #[test]
    fn hopeless_growth_is_refused_when_saved() {
        let err = CompiledExpr::compile(&repeat("[@,@]|", 40)).unwrap_err();
        assert_eq!(err.kind, ExprErrorKind::LimitExceeded);
        assert!(err.message.contains("65536"), "{}", err.message);
        assert!(CompiledExpr::compile(&repeat("[@,@]|", 16)).is_ok());
    }

    #[test]
    fn a_doubling_result_stops_at_the_result_size_limit() {
        let message = limit_error(&repeat("[@,@]|", 16), json!("x".repeat(100)));
        assert!(
            message.contains("result size limit of 1048576 bytes"),
            "{message}"
        );
    }

    #[test]
    fn materialising_work_stops_at_the_work_limit() {
        let data = json!((0..1000).collect::<Vec<_>>());
        let message = limit_error(&repeat("[@,@][]|", 15), data.clone());
        assert!(message.contains("work limit of 1000000 steps"), "{message}");
        // Projections evaluate their right side once per element: charged per visit.
        limit_error(&repeat("[@,@][*]|", 15), data);
    }

    #[test]
    fn deep_comparisons_and_functions_over_shared_values_are_charged() {
        let doubled = repeat("[@,@]|", 14);
        let data = json!("x".repeat(1000));
        for source in [
            format!("({doubled}) == ({doubled})"),
            format!("to_string({doubled})"),
            format!("contains({doubled}, 'y')"),
            format!("length(to_string({doubled}))"),
            format!("join('', ({doubled}){})", "[]".repeat(14)),
        ] {
            limit_error(&source, data.clone());
        }
    }

    #[test]
    fn expression_arguments_are_charged_per_element() {
        let data = json!((0..1000).collect::<Vec<_>>());
        for source in [
            format!("map(&({}), @)", repeat("[@,@][]|", 10)),
            format!("sort_by(@, &length({}))", repeat("[@,@][]|", 10)),
            format!("max_by(@, &length({}))", repeat("[@,@][]|", 10)),
        ] {
            limit_error(&source, data.clone());
        }
    }

    #[test]
    fn ordinary_work_on_a_large_input_fits_its_limits() {
        let items: Vec<_> = (0..50_000)
            .map(|i| json!({"id": i, "name": format!("item {i}")}))
            .collect();
        let data = json!({"items": items});
        let size = data.to_string().len();
        let limits = Limits::for_input(size);
        for source in [
            "@",
            "items[*].id",
            "sort_by(items, &name)[0].id",
            "length(to_string(@))",
        ] {
            let expr = CompiledExpr::compile(source).unwrap();
            expr.evaluate_json(&data, limits)
                .unwrap_or_else(|err| panic!("{source}: {err}"));
        }
        assert!(
            CompiledExpr::compile("items[*].id")
                .unwrap()
                .search(&to_value(&data))
                .is_ok()
        );
    }
}
