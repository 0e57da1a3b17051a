//! The evaluation budget: every expression is evaluated under a limit on its work (steps) and on
//! the size of the result it renders, both checked *while* it runs, so that an expression like
//! `[@,@]|[@,@]|…` (each pipe doubles the result) stops with an error instead of exhausting memory
//! or a core.
//!
//! A step is one AST node visited, one array element or object member materialised, or eight
//! bytes of a string a function reads or builds. Function arguments are charged before the call by
//! their size (a bounded walk, so a shared value that would expand exponentially is charged its
//! expanded size without being expanded). The budget lives in a thread-local for the duration of
//! one evaluation because jmespath's function interface has no room for it.

use std::cell::Cell;

use jmespath::Variable;

use super::Value;

/// Steps every evaluation may take, however small its input.
pub const BASE_STEPS: u64 = 1_000_000;
/// Extra steps per byte of input (a large message may be walked a few times).
pub const STEPS_PER_INPUT_BYTE: u64 = 2;
/// Rendered bytes every result may have, however small its input.
pub const BASE_RESULT_BYTES: usize = 1024 * 1024;
/// Bytes of string that count as one step.
const BYTES_PER_STEP: usize = 8;

/// The limits of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Work: steps (see the module documentation).
    pub steps: u64,
    /// Size of a rendered result, in bytes of JSON.
    pub result_bytes: usize,
}

impl Limits {
    /// The limits for an evaluation over an input of `input_bytes` (its JSON text): at least the
    /// base limits, more for large inputs so that `@` over any accepted message succeeds.
    pub fn for_input(input_bytes: usize) -> Limits {
        let input = u64::try_from(input_bytes).unwrap_or(u64::MAX);
        Limits {
            steps: BASE_STEPS.saturating_add(input.saturating_mul(STEPS_PER_INPUT_BYTE)),
            result_bytes: BASE_RESULT_BYTES.max(input_bytes.saturating_mul(2)),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::for_input(0)
    }
}

/// Which limit an evaluation exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    /// The work limit, in steps.
    Steps(u64),
    /// The result size limit, in bytes.
    ResultBytes(usize),
    /// The nesting limit of a rendered result, in levels.
    Depth(usize),
}

impl Exceeded {
    /// The error message, naming the limit.
    pub fn message(self) -> String {
        match self {
            Exceeded::Steps(steps) => format!(
                "evaluation exceeded the work limit of {steps} steps (the expression does too \
                 much for this data)"
            ),
            Exceeded::ResultBytes(bytes) => {
                format!("the result exceeds the result size limit of {bytes} bytes")
            }
            Exceeded::Depth(levels) => {
                format!("the result is nested deeper than the limit of {levels} levels")
            }
        }
    }
}

/// The budget of the evaluation running on a thread.
#[derive(Debug, Clone, Copy)]
struct State {
    limit: u64,
    remaining: u64,
    exceeded: bool,
}

thread_local! {
    /// The evaluation running on this thread (`None`: none running).
    static STATE: Cell<Option<State>> = const { Cell::new(None) };
}

/// The budget of the evaluation running on this thread, from [`enter`] until dropped. A nested
/// entry (an evaluation started from inside one) shares the outer budget.
pub(super) struct Guard {
    outermost: bool,
}

/// Starts an evaluation with `steps`, unless one is already running on this thread.
pub(super) fn enter(steps: u64) -> Guard {
    let outermost = STATE.with(|state| {
        if state.get().is_some() {
            return false;
        }
        state.set(Some(State {
            limit: steps,
            remaining: steps,
            exceeded: false,
        }));
        true
    });
    Guard { outermost }
}

impl Guard {
    /// The step limit, when this evaluation ran out of steps.
    pub(super) fn exceeded(&self) -> Option<Exceeded> {
        STATE
            .with(Cell::get)
            .filter(|state| state.exceeded)
            .map(|state| Exceeded::Steps(state.limit))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.outermost {
            STATE.with(|state| state.set(None));
        }
    }
}

/// Takes `steps` from the running evaluation; an error once it has none left (and from then on).
pub(super) fn charge(steps: u64) -> Result<(), Exceeded> {
    STATE.with(|cell| {
        let Some(mut state) = cell.get() else {
            return Ok(());
        };
        if state.exceeded || state.remaining < steps {
            state.remaining = 0;
            state.exceeded = true;
            cell.set(Some(state));
            return Err(Exceeded::Steps(state.limit));
        }
        state.remaining -= steps;
        cell.set(Some(state));
        Ok(())
    })
}

/// Steps left in the running evaluation (`u64::MAX` when none is running).
pub(super) fn remaining() -> u64 {
    STATE.with(|state| state.get().map_or(u64::MAX, |state| state.remaining))
}

/// Steps for a string of `len` bytes.
pub(super) fn string_steps(len: usize) -> u64 {
    1 + u64::try_from(len / BYTES_PER_STEP).unwrap_or(u64::MAX)
}

/// Steps for reading a value's top level: its elements or members, or its string's bytes.
pub(super) fn shallow_steps(value: &Value) -> u64 {
    match &**value {
        Variable::String(s) => string_steps(s.len()),
        Variable::Array(items) => 1 + items.len() as u64,
        Variable::Object(map) => 1 + map.len() as u64,
        _ => 1,
    }
}

/// Steps for walking the whole of `value` (every node, every string byte, keys included), counted
/// up to `cap`: the walk stops there, so a shared value that would expand exponentially costs at
/// most `cap` to measure.
pub(super) fn deep_steps(value: &Value, cap: u64) -> u64 {
    let mut total = 0_u64;
    let mut stack: Vec<&Value> = vec![value];
    while let Some(next) = stack.pop() {
        total = total.saturating_add(match &**next {
            Variable::String(s) => string_steps(s.len()),
            Variable::Array(items) => {
                stack.extend(items.iter());
                1
            }
            Variable::Object(map) => {
                let keys: usize = map.keys().map(String::len).sum();
                stack.extend(map.values());
                1 + string_steps(keys)
            }
            _ => 1,
        });
        if total > cap {
            return total;
        }
    }
    total
}
