//! The operator's page is served from the binary with a same-origin-only policy (the browser test,
//! `tests/browser.rs`, drives it).
use crate::helpers::{Backend, spawn_app};

#[actix_web::test]
async fn the_page_its_script_and_stylesheet_are_served_self_only() {
    let app = spawn_app(Backend::Sqlite).await;
    for (path, content_type, marker) in [
        (
            "/",
            "text/html",
            "<script type=\"module\" src=\"/page.js\"></script>",
        ),
        ("/page.js", "text/javascript", "sessionStorage"),
        ("/view.js", "text/javascript", "export function"),
        ("/runs.js", "text/javascript", "export class RunsPanel"),
        ("/page.css", "text/css", "#events"),
    ] {
        let resp = app.request("GET", path, None, None).await;
        assert_eq!(resp.status, 200, "{path}");
        assert!(
            resp.content_type.starts_with(content_type),
            "{path}: {}",
            resp.content_type
        );
        assert!(resp.text.contains(marker), "{path}");
        let header = |name: &str| resp.headers.get(name).unwrap().to_str().unwrap().to_owned();
        let csp = header("content-security-policy");
        assert!(
            csp.starts_with("default-src 'none'; script-src 'self'"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(header("x-content-type-options"), "nosniff");
    }
    let html = app.request("GET", "/", None, None).await.text;
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external assets"
    );
    assert!(
        !html.contains("<style") && !html.contains("onclick"),
        "no inline code"
    );
}
