//! The operator's page at `GET /`: one HTML document, three script modules (`page.js`: session,
//! REST and live stream; `view.js`: the table and the events tail; `runs.js`: the runs panel) and a
//! stylesheet, compiled into the binary (no build step, no external assets, works offline). The
//! page asks for an API key, keeps it in `sessionStorage` only, reads sources, recent events and
//! recent runs over the REST API and follows them live over `GET /v1/stream` with a stream token.
//! Every response forbids anything but same-origin resources.
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, get};

const INDEX_HTML: &str = include_str!("index.html");
const PAGE_JS: &str = include_str!("page.js");
const VIEW_JS: &str = include_str!("view.js");
const RUNS_JS: &str = include_str!("runs.js");
const PAGE_CSS: &str = include_str!("page.css");

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

/// The page's main script module.
#[get("/page.js")]
pub async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", PAGE_JS)
}

/// The page's view module (imported by `page.js`).
#[get("/view.js")]
pub async fn view_script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", VIEW_JS)
}

/// The page's runs panel module (imported by `page.js`).
#[get("/runs.js")]
pub async fn runs_script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", RUNS_JS)
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
