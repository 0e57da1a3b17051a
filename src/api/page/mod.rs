//! The operator's page at `GET /`: one HTML document, its script modules and a stylesheet,
//! compiled into the binary (no build step, no external assets, works offline). The page asks for
//! an API key, keeps it in `sessionStorage` only, reads sources, recent events, run counts and
//! recent runs over the REST API and follows them live over `GET /v1/stream` with a stream token.
//! Every response forbids anything but same-origin resources.
//!
//! The modules, one job each: `page.js` (session, sources, wiring), `api.js` (REST calls),
//! `stream.js` (the live stream), `events.js` (the events tail), `runs.js` (recent runs with
//! Retry and Cancel), `run_counts.js` (runs by status), `schedules.js` (next ticks), `view.js`
//! (rendering of sources and events).
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, get, web};

use crate::error::ApiError;

const INDEX_HTML: &str = include_str!("index.html");
const PAGE_CSS: &str = include_str!("page.css");

/// Every script module of the page: `/{name}.js` and its text.
const SCRIPTS: [(&str, &str); 8] = [
    ("page", include_str!("page.js")),
    ("api", include_str!("api.js")),
    ("stream", include_str!("stream.js")),
    ("events", include_str!("events.js")),
    ("runs", include_str!("runs.js")),
    ("run_counts", include_str!("run_counts.js")),
    ("schedules", include_str!("schedules.js")),
    ("view", include_str!("view.js")),
];

/// Same origin only: the scripts and the stylesheet are separate files so that no inline code
/// has to be allowed; `connect-src 'self'` covers the REST calls and the stream's `ws:`/`wss:`
/// URL.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// Checked when compiling: a policy that is no valid header value does not build.
const POLICY: HeaderValue = HeaderValue::from_static(CONTENT_SECURITY_POLICY);

/// The operator's page.
#[get("/")]
pub async fn index() -> HttpResponse {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// One of the page's script modules (404 for any other name).
#[get("/{name}.js")]
pub async fn script(name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let (_, text) = SCRIPTS
        .iter()
        .find(|(known, _)| *known == name.as_str())
        .ok_or(ApiError::NotFound("resource"))?;
    Ok(asset("text/javascript; charset=utf-8", text))
}

/// The page's stylesheet.
#[get("/page.css")]
pub async fn stylesheet() -> HttpResponse {
    asset("text/css; charset=utf-8", PAGE_CSS)
}

/// An embedded file with the headers every part of the page carries.
fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        // Revalidate on every load, so a new binary's page is never mixed with an old script.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}
