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
        ("/runs.js", "text/javascript", "export class RecentRuns"),
        (
            "/run_counts.js",
            "text/javascript",
            "export class RunCounts",
        ),
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

/// Every module the page imports is served, none is over 400 lines, and a name that is no module
/// is a 404.
#[actix_web::test]
async fn every_script_module_is_served_and_small() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut pending = vec!["/page.js".to_owned()];
    let mut seen = std::collections::BTreeSet::new();
    while let Some(path) = pending.pop() {
        if !seen.insert(path.clone()) {
            continue;
        }
        let resp = app.request("GET", &path, None, None).await;
        assert_eq!(resp.status, 200, "{path} is imported but not served");
        let lines = resp.text.lines().count();
        assert!(lines <= 400, "{path} has {lines} lines");
        for line in resp.text.lines().filter(|l| l.starts_with("import ")) {
            let from = line.rsplit(" from ").next().unwrap();
            pending.push(from.trim_matches(|c| c == '"' || c == ';').to_owned());
        }
    }
    let modules: Vec<&str> = seen.iter().map(String::as_str).collect();
    let expected = [
        "/api.js",
        "/events.js",
        "/page.js",
        "/run_counts.js",
        "/runs.js",
        "/schedules.js",
        "/stream.js",
        "/view.js",
    ];
    assert_eq!(modules, expected);
    let missing = app.request("GET", "/nope.js", None, None).await;
    assert_eq!(missing.status, 404, "{}", missing.text);
}
