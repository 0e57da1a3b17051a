//! `GET /v1/me` and `/v1/api-keys`: who am I, and the org's API keys (admin only). A key is shown
//! once, in the creation response.

use actix_web::{HttpResponse, delete, get, post, web};
use chrono::{DateTime, Utc};
use entity::api_key;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::body::Body;
use super::pagination::OffsetQuery;
use super::{ListOut, Path};
use crate::api::caller::Admin;
use crate::api::caller::Caller;
use crate::api::state::AppState;
use crate::auth::{self, Role};
use crate::db;
use crate::error::ApiError;
use crate::validation::Errors;

/// The caller's identity.
#[derive(Serialize, ToSchema)]
pub struct MeOut {
    /// Org id.
    pub org_id: Uuid,
    /// Org name.
    pub org_name: String,
    /// Id of the key used.
    pub key_id: Uuid,
    /// Its role.
    pub role: Role,
}

/// A new key.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyIn {
    /// Display name: 1..=200 characters, not blank.
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    pub name: String,
    /// `admin`, `member` or `worker`.
    pub role: Role,
}

/// A key as listed: the key itself is never shown again.
#[derive(Serialize, ToSchema)]
pub struct ApiKeyOut {
    /// Key id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: String,
    /// The first characters of the key.
    pub prefix: String,
    /// Only in the creation response: the whole key. Store it now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last used (to the minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// Revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<api_key::Model> for ApiKeyOut {
    fn from(m: api_key::Model) -> Self {
        Self {
            id: m.id,
            name: m.name,
            role: m.role,
            prefix: m.prefix,
            key: None,
            created_at: m.created_at,
            last_used_at: m.last_used_at,
            revoked_at: m.revoked_at,
        }
    }
}

/// Who the key belongs to.
#[utoipa::path(context_path = "/v1", tag = "keys", security(("bearer" = [])), responses((status = 200, body = MeOut), (status = 401, body = crate::error::Problem)))]
#[get("/me")]
pub async fn me(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let org = db::orgs::find_org(&state.db, caller.org_id)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    Ok(HttpResponse::Ok().json(MeOut {
        org_id: org.id,
        org_name: org.name,
        key_id: caller.key_id,
        role: caller.role,
    }))
}

/// Creates a key; the response is the only time the key is shown.
#[utoipa::path(context_path = "/v1", tag = "keys", security(("bearer" = [])), request_body = ApiKeyIn,
    responses((status = 201, body = ApiKeyOut), (status = 422, body = crate::error::Problem)))]
#[post("/api-keys")]
pub async fn create_api_key(
    state: web::Data<AppState>,
    caller: Admin,
    Body(input): Body<ApiKeyIn>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = Errors::default();
    errors.name("name", &input.name);
    errors.finish(()).map_err(ApiError::Validation)?;
    let generated = auth::generate_key();
    let row = db::api_keys::insert_api_key(
        &state.db,
        db::api_keys::NewApiKey {
            org_id: caller.org_id,
            name: &input.name,
            role: input.role.as_str(),
            prefix: &generated.prefix,
            key_hash: &generated.hash,
        },
    )
    .await?;
    let mut out = ApiKeyOut::from(row);
    out.key = Some(generated.key);
    Ok(HttpResponse::Created().json(out))
}

/// Lists the org's keys, newest first.
#[utoipa::path(context_path = "/v1", tag = "keys", security(("bearer" = [])), params(OffsetQuery),
    responses((status = 200, body = ListOut<ApiKeyOut>)))]
#[get("/api-keys")]
pub async fn list_api_keys(
    state: web::Data<AppState>,
    caller: Admin,
    query: super::Query<OffsetQuery>,
) -> Result<HttpResponse, ApiError> {
    let (rows, total) =
        db::api_keys::list_api_keys(&state.db, caller.org_id, query.0.page()?).await?;
    Ok(HttpResponse::Ok().json(ListOut::<ApiKeyOut>::new(rows, total)))
}

/// Revokes a key (it stops working at once).
#[utoipa::path(context_path = "/v1", tag = "keys", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem)))]
#[delete("/api-keys/{id}")]
pub async fn delete_api_key(
    state: web::Data<AppState>,
    caller: Admin,
    id: Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    if db::api_keys::revoke_api_key(&state.db, caller.org_id, *id).await? {
        // Its live-stream sessions end with it.
        state.stream_sessions.revoke(*id);
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound("API key"))
    }
}
