//! The bounds of what workers report, checked before anything is applied: a batch's size, each
//! item's result and failure fields (named `items[i].…` in a batch).

use super::shapes::{Ask, Outcome};
use super::{MAX_BATCH, MAX_RESULT_BYTES};
use crate::error::ApiError;
use crate::validation::Errors;

/// Checks a batch's size.
pub fn check_batch_len(len: usize) -> Result<(), ApiError> {
    if len == 0 || len > MAX_BATCH {
        return Err(ApiError::field(
            "items",
            format!("must hold 1 to {MAX_BATCH} items"),
        ));
    }
    Ok(())
}

/// Checks each ask's bounds, naming fields with `prefix(i)` (`items[i].` in a batch).
pub fn check_asks(asks: &[Ask], prefix: &dyn Fn(usize) -> String) -> Result<(), ApiError> {
    let mut errors = Errors::default();
    for (i, ask) in asks.iter().enumerate() {
        match &ask.outcome {
            Outcome::Complete(Some(result)) => {
                let size = serde_json::to_vec(result).map_or(usize::MAX, |v| v.len());
                let field = format!("{}result", prefix(i));
                if size > MAX_RESULT_BYTES {
                    errors.add(
                        field,
                        format!("must be at most {MAX_RESULT_BYTES} bytes of JSON"),
                    );
                } else if let Err(refusal) = crate::pipeline::json::check(result) {
                    // The limits of every stored document (nesting, NUL).
                    errors.add(field, refusal.to_string());
                }
            }
            Outcome::Complete(None) => {}
            Outcome::Fail {
                retry: false,
                retry_after_s: Some(_),
                ..
            } => errors.add(
                format!("{}retry_after_s", prefix(i)),
                "has no effect with `retry: false`; send one of the two",
            ),
            Outcome::Fail {
                retry_after_s: Some(v),
                ..
            } => {
                errors.range(
                    &format!("{}retry_after_s", prefix(i)),
                    u64::from(*v),
                    0..=604_800,
                );
            }
            Outcome::Fail { .. } => {}
        }
    }
    errors.finish(()).map_err(ApiError::Validation)
}
