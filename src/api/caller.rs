//! Who is calling: the bearer key of a request, looked up and checked in constant time, as the
//! `Caller` extractor every handler takes; and the throttled record of when keys were used.

use std::future::Future;
use std::pin::Pin;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage as _, HttpRequest, http::header, web};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::state::AppState;
use crate::auth::{KEY_PREFIX, PREFIX_LEN, Role, hash_key, visible_prefix};
use crate::db;
use crate::error::ApiError;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The caller's org: every query is scoped to it.
    pub org_id: Uuid,
    /// The key used.
    pub key_id: Uuid,
    /// The key's role.
    pub role: Role,
}

impl Caller {
    /// Fails with 403 unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(self.role.as_str().to_owned()))
        }
    }

    /// Fails with 403 unless the caller is an admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        self.require(&[Role::Admin])
    }

    /// Fails with 403 for worker keys.
    pub fn require_member(&self) -> Result<(), ApiError> {
        self.require(&[Role::Admin, Role::Member])
    }
}

/// Reads the bearer token of a request.
pub fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Looks a key up and checks it in constant time.
pub async fn authenticate(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    if !token.starts_with(KEY_PREFIX) || token.len() < PREFIX_LEN {
        return Err(ApiError::Unauthorized);
    }
    let presented = hash_key(token);
    let candidates = db::api_keys::find_active_by_prefix(&state.db, &visible_prefix(token)).await?;
    let found = candidates
        .into_iter()
        .find(|key| bool::from(key.key_hash.as_bytes().ct_eq(presented.as_bytes())))
        .ok_or(ApiError::Unauthorized)?;
    let role = Role::parse(&found.role).ok_or(ApiError::Unauthorized)?;
    state.key_uses.record(&state.db, found.id);
    Ok(Caller {
        org_id: found.org_id,
        key_id: found.id,
        role,
    })
}

/// What [`authenticate_first`] found for a request's bearer key: the caller, or `None` when the
/// key is unknown, revoked or malformed.
#[derive(Clone)]
struct Authenticated(Option<Caller>);

/// Middleware on `/v1`: looks the bearer key up before any extractor reads the body or the query,
/// so that a caller with a bad key learns nothing about what a request should hold (401, not the
/// 422 that naming a field would be). It rejects nothing itself: routes without a key (inbound
/// webhooks, the live stream's token) pass, and the [`Caller`] extractor answers from what it
/// found (or looks again when storage failed here).
pub async fn authenticate_first(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let token = bearer_token(req.request()).map(str::to_owned);
    let state = req.app_data::<web::Data<AppState>>().cloned();
    if let (Some(token), Some(state)) = (token, state) {
        match authenticate(&state, &token).await {
            Ok(caller) => {
                req.extensions_mut().insert(Authenticated(Some(caller)));
            }
            Err(ApiError::Unauthorized) => {
                req.extensions_mut().insert(Authenticated(None));
            }
            // Storage failed: the extractor tries again and answers what it finds.
            Err(_) => {}
        }
    }
    next.call(req).await
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Caller, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer_token(req).map(str::to_owned);
        if let Some(Authenticated(found)) = req.extensions().get::<Authenticated>().cloned() {
            // Answered at once, before the extractors after it (the body) finish.
            return Box::pin(async move {
                match (token, found) {
                    (Some(_), Some(caller)) => Ok(caller),
                    _ => Err(ApiError::Unauthorized),
                }
            });
        }
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no app state")))?;
            let token = token.ok_or(ApiError::Unauthorized)?;
            authenticate(&state, &token).await
        })
    }
}

/// Declares an extractor for callers with one of some roles: the role is checked as the request is
/// extracted (right after the key, before the body or the query is read), so a key without the
/// role gets 403 whatever it sends.
macro_rules! role_extractor {
    ($(#[$doc:meta])* $name:ident, $roles:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(pub Caller);

        impl std::ops::Deref for $name {
            type Target = Caller;
            fn deref(&self) -> &Caller {
                &self.0
            }
        }

        impl FromRequest for $name {
            type Error = ApiError;
            type Future = Pin<Box<dyn Future<Output = Result<$name, ApiError>>>>;

            fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
                let caller = Caller::from_request(req, payload);
                Box::pin(async move {
                    let caller = caller.await?;
                    caller.require($roles)?;
                    Ok($name(caller))
                })
            }
        }
    };
}

role_extractor!(
    /// A caller with the `admin` role.
    Admin,
    &[Role::Admin]
);
role_extractor!(
    /// A caller who manages automations and runs: `admin` or `member`.
    Member,
    &[Role::Admin, Role::Member]
);
role_extractor!(
    /// A caller who works runs: `worker` or `admin`.
    Worker,
    &[Role::Worker, Role::Admin]
);
