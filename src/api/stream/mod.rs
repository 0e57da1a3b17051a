//! The live stream: `GET /v1/stream` upgrades to a WebSocket served by one [`StreamSession`]
//! actor per client, after authenticating with an API key (`Authorization: Bearer`) or a stream
//! token (`?token=`); `POST /v1/stream/tokens` hands out those tokens (short-lived, single use,
//! stored hashed) for clients that cannot set headers on an upgrade, such as browsers. Every use
//! of `actix-web-actors` stays inside this module.

pub mod outbox;
pub mod protocol;
pub mod registry;
pub mod relay;
pub mod session;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Uri;
use actix_web::middleware::Next;
use actix_web::{HttpMessage as _, HttpRequest, HttpResponse, get, post, web};
use actix_web_actors::ws;
use chrono::{DateTime, Utc};
use rand::Rng as _;
use rand::distr::Alphanumeric;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use self::outbox::Outbox;
use self::session::StreamSession;
use super::body::OptionalBody;
use super::sources::shapes::SourceOut;
use crate::api::caller::Caller;
use crate::api::state::AppState;
use crate::auth::{self, Role};
use crate::db;
use crate::error::ApiError;

/// Every stream token starts with this.
pub const TOKEN_PREFIX: &str = "sbs_";
/// A token's lifetime when none is asked for.
pub const DEFAULT_TTL_S: u64 = 300;
/// The longest lifetime a token may ask for.
pub const MAX_TTL_S: u64 = 3600;
/// Frames larger than this close the connection (1009); messages over
/// [`protocol::MAX_MESSAGE_BYTES`] but under it only get an error frame.
const MAX_FRAME_BYTES: usize = 4 * protocol::MAX_MESSAGE_BYTES;
const STREAM_PATH: &str = "/v1/stream";

/// A stream token taken out of the URL by [`hide_token`].
#[derive(Clone)]
struct StreamToken(SecretString);

/// Options of a new stream token (the body may also be empty).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamTokenIn {
    /// Lifetime in seconds, 1..=3600 (default 300).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 3600)]
    pub ttl_s: Option<u64>,
}

/// A new stream token: pass it as `GET /v1/stream?token=…` once, before it expires.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamTokenOut {
    /// The token (shown once; stored only as a hash).
    pub token: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// Its lifetime in seconds.
    pub ttl_s: u64,
}

/// Issues a short-lived, single-use token that opens the live stream of the caller's org.
#[utoipa::path(context_path = "/v1", tag = "stream", security(("bearer" = [])),
    request_body(content = Option<StreamTokenIn>, description = "Optional; an empty body gives the default lifetime"),
    responses((status = 201, body = StreamTokenOut, example = json!({"token": "sbs_…", "expires_at": "2026-01-01T12:05:00Z", "ttl_s": 300})),
        (status = 401, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
#[post("/stream/tokens")]
pub async fn create_stream_token(
    state: web::Data<AppState>,
    caller: Caller,
    OptionalBody(input): OptionalBody<StreamTokenIn>,
) -> Result<HttpResponse, ApiError> {
    let input = input.unwrap_or_default();
    let ttl_s = input.ttl_s.unwrap_or(DEFAULT_TTL_S);
    if !(1..=MAX_TTL_S).contains(&ttl_s) {
        return Err(ApiError::field(
            "ttl_s",
            format!("must be between 1 and {MAX_TTL_S}"),
        ));
    }
    let now = db::now();
    db::stream_tokens::delete_expired_stream_tokens(&state.db, now).await?;
    let token = generate_token();
    let expires_at = now + chrono::Duration::seconds(i64::try_from(ttl_s).unwrap_or(0));
    db::stream_tokens::insert_stream_token(
        &state.db,
        db::stream_tokens::NewStreamToken {
            org_id: caller.org_id,
            key_id: caller.key_id,
            token_hash: &auth::hash_key(&token),
            expires_at,
        },
    )
    .await?;
    Ok(HttpResponse::Created().json(StreamTokenOut {
        token,
        expires_at,
        ttl_s,
    }))
}

/// Opens the live stream (a WebSocket; see the README for its messages).
#[utoipa::path(context_path = "/v1", tag = "stream", security(("bearer" = [])),
    params(("token" = Option<String>, Query, description = "A stream token, instead of the Authorization header")),
    responses((status = 101, description = "Switched to the WebSocket protocol"),
        (status = 400, body = crate::error::Problem, description = "Not a WebSocket upgrade"),
        (status = 401, body = crate::error::Problem),
        (status = 429, body = crate::error::Problem, description = "Too many sessions open (in all, or for this key)")))]
#[get("/stream")]
pub async fn stream(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let handshake = ws::handshake(&req);
    let (caller, token) = authenticate(&state, &req, handshake.is_ok()).await?;
    let mut response = handshake.map_err(not_an_upgrade)?;
    let ticket = state
        .stream_sessions
        .admit(caller.key_id)
        .map_err(|refused| ApiError::AtCapacity(refused.to_string()))?;
    // A token is used up only by the session it opens (not by a 429 above); of two uses at once,
    // one gets it.
    if let Some(token) = token {
        consume_token(&state, &token).await?;
    }
    let outbox = Outbox::new();
    let session = StreamSession::new(caller.org_id, state.clone(), outbox.clone(), ticket);
    let codec = actix_http::ws::Codec::new().max_size(MAX_FRAME_BYTES);
    let frames = ws::WebsocketContext::with_codec(session, payload, codec);
    tracing::info!(org_id = %caller.org_id, key_id = %caller.key_id, "live stream opened");
    Ok(response.streaming(outbox.pump(frames)))
}

fn not_an_upgrade(err: ws::HandshakeError) -> ApiError {
    ApiError::BadRequest(format!("expected a WebSocket upgrade: {err}"))
}

/// The API key of the header, else the stream token of the URL: the caller, and the token to
/// consume once the session is admitted (a token is checked here, used only for a real upgrade,
/// so a mistaken plain GET does not burn it).
async fn authenticate(
    state: &AppState,
    req: &HttpRequest,
    upgrading: bool,
) -> Result<(Caller, Option<String>), ApiError> {
    if crate::api::caller::bearer_token(req).is_some() {
        // What the `/v1` middleware found for the key (no second lookup).
        return Ok((
            <Caller as actix_web::FromRequest>::extract(req).await?,
            None,
        ));
    }
    let token = req
        .extensions()
        .get::<StreamToken>()
        .cloned()
        .ok_or(ApiError::Unauthorized)?;
    let token = token.0.expose_secret().to_owned();
    let caller = token_caller(state, &token).await?;
    if !upgrading {
        // A good token is left unused, since the request could not become a stream.
        return Err(ApiError::BadRequest(
            "expected a WebSocket upgrade; the token was not used".to_owned(),
        ));
    }
    Ok((caller, Some(token)))
}

/// Who a valid stream token speaks for (nothing consumed); the key that issued it must still be
/// active.
async fn token_caller(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    if !token.starts_with(TOKEN_PREFIX) {
        return Err(ApiError::Unauthorized);
    }
    let hash = auth::hash_key(token);
    let found = db::stream_tokens::find_valid_stream_token(&state.db, &hash, db::now())
        .await?
        .ok_or(ApiError::Unauthorized)?;
    let key = db::api_keys::find_api_key(&state.db, found.org_id, found.key_id)
        .await?
        .filter(|k| k.revoked_at.is_none())
        .ok_or(ApiError::Unauthorized)?;
    Ok(Caller {
        org_id: found.org_id,
        key_id: key.id,
        role: Role::parse(&key.role).ok_or(ApiError::Unauthorized)?,
    })
}

/// Consumes a stream token (401 when another use took it first, or it expired meanwhile).
async fn consume_token(state: &AppState, token: &str) -> Result<(), ApiError> {
    db::stream_tokens::consume_stream_token(&state.db, &auth::hash_key(token), db::now())
        .await?
        .map(|_| ())
        .ok_or(ApiError::Unauthorized)
}

/// The status of every source of the org (or the one with `slug`), as the REST API shows it.
async fn load_statuses(
    state: &AppState,
    org_id: Uuid,
    slug: Option<&str>,
) -> Result<Vec<Value>, ApiError> {
    let rows = db::sources::org_sources(&state.db, org_id, slug).await?;
    let shown = SourceOut::load_many(state, rows).await?;
    Ok(shown
        .into_iter()
        .map(|s| json!({"source_id": s.id, "source": s.source, "status": s.status}))
        .collect())
}

fn generate_token() -> String {
    let random: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    format!("{TOKEN_PREFIX}{random}")
}

/// Middleware (outermost): moves `token` out of the query of `GET /v1/stream` into the request,
/// so the URL that the request span records, and anything logged, never holds it.
pub async fn hide_token(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if req.path() == STREAM_PATH
        && let Some((token, uri)) = split_token(req.uri())
    {
        req.extensions_mut()
            .insert(StreamToken(SecretString::from(token)));
        req.match_info_mut().get_mut().update(&uri);
        req.head_mut().uri = uri;
    }
    next.call(req).await
}

/// Splits `token` off a URI's query: the token, and the URI without it.
fn split_token(uri: &Uri) -> Option<(String, Uri)> {
    let query = uri.query()?;
    let mut token = None;
    let rest: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .filter_map(|(name, value)| {
            if name == "token" {
                token.get_or_insert_with(|| value.into_owned());
                None
            } else {
                Some((name.into_owned(), value.into_owned()))
            }
        })
        .collect();
    let token = token?;
    let rest = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(rest)
        .finish();
    let path_and_query = if rest.is_empty() {
        uri.path().to_owned()
    } else {
        format!("{}?{rest}", uri.path())
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query.parse().ok()?);
    Some((token, Uri::from_parts(parts).ok()?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_token_leaves_the_url() {
        let uri: Uri = "/v1/stream?token=sbs_abc%2Bd&x=1".parse().unwrap();
        let (token, rest) = split_token(&uri).unwrap();
        assert_eq!(token, "sbs_abc+d");
        assert_eq!(rest.to_string(), "/v1/stream?x=1");
        let (_, bare) = split_token(&"/v1/stream?token=t".parse().unwrap()).unwrap();
        assert_eq!(bare.to_string(), "/v1/stream");
        assert!(split_token(&"/v1/stream?x=1".parse().unwrap()).is_none());
        assert!(split_token(&"/v1/stream".parse().unwrap()).is_none());
    }

    #[test]
    fn tokens_are_long_and_prefixed() {
        let token = generate_token();
        assert!(token.starts_with(TOKEN_PREFIX));
        assert_eq!(token.len(), TOKEN_PREFIX.len() + 40);
        assert_ne!(token, generate_token());
    }
}
