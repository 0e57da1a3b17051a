//! `POST /v1/expressions/evaluate`: try an expression (with Switchboard's functions) on data.

use actix_web::{HttpResponse, post};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use actix_web::web;

use super::body::Body;
use crate::api::caller::Caller;
use crate::api::state::AppState;
use crate::error::ApiError;
use crate::pipeline::expr::{CompiledExpr, Limits};

/// What to evaluate.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"expression": "data.amount > `100`", "data": {"data": {"amount": 150}}}))]
pub struct EvaluateIn {
    /// JMESPath plus Switchboard's functions.
    pub expression: String,
    /// The document to evaluate over.
    pub data: Value,
}

/// The result.
#[derive(Serialize, ToSchema)]
pub struct EvaluateOut {
    /// The value the expression produced: any JSON value, `null` included.
    pub result: Value,
}

/// Evaluates an expression; syntax and runtime errors answer 422 naming `expression`, with the
/// error kind (`syntax`, `unknown-function`, `invalid-arity`, `invalid-type`, `invalid-value`,
/// `limit-exceeded`) first in the message and the position last. The evaluation runs within the
/// limits of an input as large as the largest accepted body (see docs/semantics.md).
#[utoipa::path(context_path = "/v1", tag = "expressions", security(("bearer" = [])), request_body = EvaluateIn,
    responses((status = 200, body = EvaluateOut, example = json!({"result": true})), (status = 422, body = crate::error::Problem)))]
#[post("/expressions/evaluate")]
pub async fn evaluate(
    state: web::Data<AppState>,
    _caller: Caller,
    Body(input): Body<EvaluateIn>,
) -> Result<HttpResponse, ApiError> {
    let expr = CompiledExpr::compile(&input.expression)
        .map_err(|e| ApiError::field("expression", format!("{}: {e}", e.kind)))?;
    let limits = Limits::for_input(state.settings.max_body_bytes);
    let result = expr
        .evaluate_json(&input.data, limits)
        .map_err(|e| ApiError::field("expression", format!("{}: {e}", e.kind)))?;
    Ok(HttpResponse::Ok().json(EvaluateOut { result }))
}
