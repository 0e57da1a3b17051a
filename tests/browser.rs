//! The operator's page (`GET /`) in a real browser: Debian's headless Chromium driven through
//! `chromedriver` (W3C WebDriver) against the real application, with a generic source connected to
//! the scriptable WebSocket peer. Its own test binary, so it runs in its own process. Without
//! `chromedriver` and Chromium it fails, saying how to install them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code, unused_macros)]
#[path = "api/helpers.rs"]
mod helpers;
#[path = "api/peer.rs"]
mod peer;
#[path = "api/peer_support.rs"]
mod peer_support;
#[path = "browser/webdriver.rs"]
mod webdriver;

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use helpers::{ADMIN_KEY, Backend, TestApp, spawn_app_private, spawn_with};
use peer::{ConnectionScript, Peer};
use webdriver::{Browser, ChromeDriver, Tools};

const WAIT: Duration = Duration::from_secs(20);

/// The connection time of a source's row (`arguments[0]`), once it is in state `arguments[1]`.
const ROW_IN_STATE: &str = "const row = document.querySelector(arguments[0]);
    return row && row.dataset.state === arguments[1] ? row.dataset.connectedAt || '' : null;";

/// An event of the tail (not a duplicate) with key `arguments[0]`, once it has a verdict.
const JUDGED_EVENT: &str = "const item = document.querySelector(
        `#events > li[data-event-key='${arguments[0]}'][data-dedup='stored']`);
    if (!item || item.dataset.outcome === 'pending') return null;
    const run = item.querySelector('[data-run-id]');
    return {outcome: item.dataset.outcome, run: run ? run.dataset.runId : null,
        text: item.innerText, id: item.dataset.eventId};";

/// The stream indicator is in state `arguments[0]`.
const STREAM_IN_STATE: &str =
    "return document.getElementById('stream-status').dataset.state === arguments[0];";

/// What every step works with.
struct Scene {
    app: TestApp,
    peer: Peer,
    browser: Browser,
    automation_id: String,
    /// CSS selector of the source's row.
    row: String,
}

impl Scene {
    async fn wait_row(&self, what: &str, state: &str) -> Value {
        let args = json!([self.row, state]);
        self.browser.wait_for(what, WAIT, ROW_IN_STATE, args).await
    }

    async fn wait_event(&self, what: &str, event_key: &str) -> Value {
        let args = json!([event_key]);
        self.browser.wait_for(what, WAIT, JUDGED_EVENT, args).await
    }

    async fn click(&self, action: &str) {
        let button = format!("{} button[data-action={action}]", self.row);
        self.browser.click(&button).await;
    }
}

async fn create(app: &TestApp, path: &str, body: Value) -> String {
    let resp = app.post(path, ADMIN_KEY, body).await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    resp.body["id"].as_str().unwrap().to_owned()
}

#[actix_web::test]
async fn the_operator_page_follows_and_drives_a_source_live() {
    let started = Instant::now();
    let tools = Tools::locate();
    let peer = Peer::start(vec![ConnectionScript::accept(vec![])]);
    let app = spawn_app_private(Backend::Sqlite).await;
    let source = json!({"name": "Orders feed", "source": "orders", "kind": "generic",
        "event_key_expr": "type", "dedup_key_expr": "id", "config": {"url": peer.url()}});
    let source_id = create(&app, "/v1/websocket-sources", source).await;
    let automation = json!({"name": "Ship orders",
        "trigger": {"type": "event", "source": "orders", "on": "order.*"}});
    let automation_id = create(&app, "/v1/automations", automation).await;
    let schedule = json!({"name": "Nightly report",
        "trigger": {"type": "schedule", "cron": "0 3 * * *", "timezone": "Europe/Paris"}});
    create(&app, "/v1/automations", schedule).await;
    let driver = ChromeDriver::start(&tools).await;
    let browser = Browser::open(&driver, &tools).await;
    let row = format!("#source-rows tr[data-source-id='{source_id}']");
    let scene = Scene {
        app,
        peer,
        browser,
        automation_id,
        row,
    };

    sign_in(&scene).await;
    reconnect(&scene).await;
    pause_and_resume(&scene).await;
    let run_id = events_with_outcomes(&scene).await;
    runs_panel(&scene, &run_id).await;
    cancel_and_retry(&scene, &run_id).await;
    let scene = restart_the_server(scene).await;
    key_stays_in_the_tab(&scene).await;

    let png = screenshot_path();
    scene.browser.screenshot(&png).await;
    a_worker_key_gets_no_run_buttons(&scene, &run_id).await;
    scene.browser.close().await;
    drop(driver);
    scene.app.stop().await;
    report(&format!("operator page screenshot: {}", png.display()));
    let took = started.elapsed().as_secs_f64();
    report(&format!("browser test took {took:.1} s"));
}

/// A wrong key is refused and not kept; the right one shows the source connected, live.
async fn sign_in(scene: &Scene) {
    let browser = &scene.browser;
    browser.goto(&format!("{}/", scene.app.address)).await;
    browser.type_into("#api-key", "sbk_notakey").await;
    browser.click("#key-submit").await;
    let refused = "const error = document.getElementById('key-error').textContent;
        return error.includes('refused') && sessionStorage.length === 0 ? error : null;";
    browser
        .wait_for("the wrong key to be refused", WAIT, refused, json!([]))
        .await;
    browser.type_into("#api-key", ADMIN_KEY).await;
    browser.click("#key-submit").await;
    // The row comes from the REST list, its state from the stream.
    scene
        .wait_row("the source row to be connected", "connected")
        .await;
    let live = json!(["live"]);
    browser
        .wait_for("the live stream", WAIT, STREAM_IN_STATE, live)
        .await;
    let name = "return document.querySelector(arguments[0] + ' .name').textContent";
    let name = browser.eval(name, json!([scene.row])).await;
    assert_eq!(name, "Orders feed");
}

/// Reconnect: the peer sees a new connection, and the row shows the new one.
async fn reconnect(scene: &Scene) {
    let first = scene.wait_row("the source row", "connected").await;
    let attempts = scene.peer.attempts();
    scene.click("reconnect").await;
    let more = |p: &Peer| p.attempts() > attempts;
    let reconnected = scene.peer.wait_until(WAIT, more).await;
    assert!(reconnected, "no new connection after Reconnect");
    let newer = "const row = document.querySelector(arguments[0]);
        return row && row.dataset.state === 'connected' && row.dataset.connectedAt !== arguments[1];";
    let args = json!([scene.row, first]);
    let what = "the row to show the new connection";
    scene.browser.wait_for(what, WAIT, newer, args).await;
}

/// Pause holds the source (the peer sees it go); Resume connects it again.
async fn pause_and_resume(scene: &Scene) {
    scene.click("pause").await;
    scene.wait_row("the row to be paused", "paused").await;
    let gone = scene.peer.wait_until(WAIT, |p| p.open_connections() == 0);
    assert!(gone.await, "paused but still connected");
    let attempts = scene.peer.attempts();
    scene.click("resume").await;
    scene.wait_row("the row after Resume", "connected").await;
    assert!(scene.peer.attempts() > attempts);
    let back = scene.peer.wait_until(WAIT, |p| p.open_connections() == 1);
    assert!(back.await, "not connected once after Resume");
}

/// Events appear in the tail, newest first, with each automation's verdict; duplicates are
/// marked; the row counts them. Answers the id of the order event's run.
async fn events_with_outcomes(scene: &Scene) -> String {
    // A little apart, so that their receipt times (which order the tail) differ.
    for (kind, id) in [
        ("order.created", "o-1"),
        ("user.created", "u-1"),
        ("order.created", "o-1"),
    ] {
        scene
            .peer
            .broadcast(json!({"type": kind, "id": id, "amount": 5}).to_string());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let order = scene
        .wait_event("the order event's outcome", "order.created")
        .await;
    assert_eq!(order["outcome"], "matched", "{order}");
    let runs = format!("/v1/automations/{}/runs", scene.automation_id);
    let runs = scene.app.get(&runs, ADMIN_KEY).await;
    assert_eq!(order["run"], runs.body["items"][0]["id"], "{}", runs.text);
    let text = order["text"].as_str().unwrap();
    assert!(text.contains("Ship orders: matched → run"), "{order}");
    let user = scene
        .wait_event("the user event's outcome", "user.created")
        .await;
    assert_eq!(user["outcome"], "on_mismatch", "{user}");
    let text = user["text"].as_str().unwrap();
    assert!(text.contains("Ship orders: on mismatch"), "{user}");
    let duplicate = "return document.querySelector(
        \"#events > li[data-event-key='order.created'][data-dedup='duplicate']\") !== null";
    let what = "the duplicate in the tail";
    scene
        .browser
        .wait_for(what, WAIT, duplicate, json!([]))
        .await;
    let tail = "return [...document.querySelectorAll('#events > li')]
        .map((li) => `${li.dataset.eventKey} ${li.dataset.dedup}`)";
    let tail = scene.browser.eval(tail, json!([])).await;
    let newest_first = [
        "order.created duplicate",
        "user.created stored",
        "order.created stored",
    ];
    assert_eq!(tail, json!(newest_first));
    let counters = "const row = document.querySelector(arguments[0]);
        const count = (name) => row.querySelector(`[data-counter=${name}]`).textContent;
        return count('events_stored') === '2' && count('duplicates') === '1'
            && row.querySelector('time.last-event').dateTime !== '';";
    let args = json!([scene.row]);
    scene
        .browser
        .wait_for("the row's counters", WAIT, counters, args)
        .await;
    order["run"].as_str().unwrap().to_owned()
}

/// The run in the runs panel, with its automation, status and attempts; claimed by a worker, it
/// shows RUNNING with attempt 1 live. The schedule automation shows its next three ticks.
async fn runs_panel(scene: &Scene, run_id: &str) {
    let run_in_state =
        "const row = document.querySelector(`#run-rows tr[data-run-id='${arguments[0]}']`);
        return row && row.dataset.status === arguments[1]
            ? {automation: row.querySelector('.automation').textContent,
               attempts: row.querySelector('.attempts').textContent,
               text: row.innerText}
            : null;";
    let args = json!([run_id, "PENDING"]);
    let what = "the run, pending, in the runs panel";
    let pending = scene.browser.wait_for(what, WAIT, run_in_state, args).await;
    assert_eq!(pending["automation"], "Ship orders", "{pending}");
    assert_eq!(pending["attempts"], "0", "{pending}");
    let claimed = scene
        .app
        .post(
            "/v1/runs/claim",
            ADMIN_KEY,
            json!({"limit": 10, "worker": "browser-test"}),
        )
        .await;
    assert_eq!(claimed.status, 200, "{}", claimed.text);
    assert_eq!(claimed.body["items"][0]["id"], run_id, "{}", claimed.text);
    let args = json!([run_id, "RUNNING"]);
    let what = "the run, claimed, in the runs panel";
    let running = scene.browser.wait_for(what, WAIT, run_in_state, args).await;
    assert_eq!(running["attempts"], "1", "{running}");
    let ticks = "const item = [...document.querySelectorAll('#schedules > li')]
            .find((li) => li.querySelector('strong').textContent === 'Nightly report');
        const ticks = item ? [...item.querySelectorAll('time.tick')].map((t) => t.dateTime) : [];
        return ticks.length === 3 && !document.getElementById('schedules-section').hidden
            ? ticks : null;";
    let what = "the schedule's next ticks";
    let ticks = scene.browser.wait_for(what, WAIT, ticks, json!([])).await;
    let ticks: Vec<chrono::DateTime<chrono::Utc>> = serde_json::from_value(ticks).unwrap();
    let now = chrono::Utc::now();
    assert!(
        ticks[0] > now && ticks[0] < ticks[1] && ticks[1] < ticks[2],
        "{ticks:?}"
    );
    let paris = |t: &chrono::DateTime<chrono::Utc>| t.with_timezone(&chrono_tz::Europe::Paris);
    assert!(
        ticks
            .iter()
            .all(|t| paris(t).format("%H:%M").to_string() == "03:00"),
        "{ticks:?}"
    );
}

/// The run's row (`arguments[0]`) once its status is `arguments[1]`: its buttons and attempts.
const RUN_ROW: &str =
    "const row = document.querySelector(`#run-rows tr[data-run-id='${arguments[0]}']`);
    return row && row.dataset.status === arguments[1]
        ? {buttons: [...row.querySelectorAll('button[data-action]')].map((b) => b.dataset.action),
           attempts: row.querySelector('.attempts').textContent}
        : null;";

/// The counts shown, once they are `arguments[0]` (status → text).
const COUNTS_ARE: &str = "const shown = {};
    for (const dd of document.querySelectorAll('#run-counts dd[data-count]')) shown[dd.dataset.count] = dd.textContent;
    return Object.entries(arguments[0]).every(([status, text]) => shown[status] === text) ? shown : null;";

/// Cancel on the RUNNING run makes it CANCELLED (on the page, in the counts and through the API);
/// Retry puts it back to PENDING. Each status offers only its own button.
async fn cancel_and_retry(scene: &Scene, run_id: &str) {
    let browser = &scene.browser;
    let running = browser
        .wait_for(
            "the run's Cancel button",
            WAIT,
            RUN_ROW,
            json!([run_id, "RUNNING"]),
        )
        .await;
    assert_eq!(running["buttons"], json!(["cancel"]), "{running}");
    let counts = json!({"PENDING": "0", "RUNNING": "1", "CANCELLED": "0"});
    browser
        .wait_for(
            "the counts with the run running",
            WAIT,
            COUNTS_ARE,
            json!([counts]),
        )
        .await;
    let button =
        |action: &str| format!("#run-rows tr[data-run-id='{run_id}'] button[data-action={action}]");
    browser.click(&button("cancel")).await;
    let cancelled = browser
        .wait_for(
            "the run cancelled on the page",
            WAIT,
            RUN_ROW,
            json!([run_id, "CANCELLED"]),
        )
        .await;
    assert_eq!(cancelled["buttons"], json!(["retry"]), "{cancelled}");
    let run = scene
        .app
        .get(&format!("/v1/runs/{run_id}"), ADMIN_KEY)
        .await;
    assert_eq!(run.body["status"], "CANCELLED", "{}", run.text);
    let counts = json!({"PENDING": "0", "RUNNING": "0", "CANCELLED": "1"});
    browser
        .wait_for(
            "the counts with the run cancelled",
            WAIT,
            COUNTS_ARE,
            json!([counts]),
        )
        .await;

    browser.click(&button("retry")).await;
    let pending = browser
        .wait_for(
            "the run retried on the page",
            WAIT,
            RUN_ROW,
            json!([run_id, "PENDING"]),
        )
        .await;
    assert_eq!(pending["buttons"], json!(["cancel"]), "{pending}");
    let run = scene
        .app
        .get(&format!("/v1/runs/{run_id}"), ADMIN_KEY)
        .await;
    assert_eq!(run.body["status"], "PENDING", "{}", run.text);
    let counts = json!({"PENDING": "1", "RUNNING": "0", "CANCELLED": "0"});
    browser
        .wait_for(
            "the counts with the run pending again",
            WAIT,
            COUNTS_ARE,
            json!([counts]),
        )
        .await;
    let notice = browser
        .eval(
            "return document.getElementById('notice').textContent",
            json!([]),
        )
        .await;
    assert!(notice.as_str().unwrap().contains("is PENDING"), "{notice}");
}

/// A `worker` key sees the runs and their counts but no Retry or Cancel button (it may not use
/// them).
async fn a_worker_key_gets_no_run_buttons(scene: &Scene, run_id: &str) {
    let created = scene
        .app
        .post(
            "/v1/api-keys",
            ADMIN_KEY,
            json!({"name": "w", "role": "worker"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let browser = &scene.browser;
    browser.click("#forget-key").await;
    browser
        .type_into("#api-key", created.body["key"].as_str().unwrap())
        .await;
    browser.click("#key-submit").await;
    let row = browser
        .wait_for(
            "the run, for a worker key",
            WAIT,
            RUN_ROW,
            json!([run_id, "PENDING"]),
        )
        .await;
    assert_eq!(row["buttons"], json!([]), "{row}");
    let head = "return document.getElementById('run-actions-head').hidden
        && document.querySelectorAll('#run-rows button').length === 0
        && document.querySelector('#run-counts dd[data-count=PENDING]').textContent !== '–'";
    browser
        .wait_for("no run buttons and the counts", WAIT, head, json!([]))
        .await;
}

/// The server restarts on the same port: the page loses its stream, takes a fresh token and
/// follows again, with the key still in session storage.
async fn restart_the_server(scene: Scene) -> Scene {
    let Scene {
        app,
        peer,
        browser,
        automation_id,
        row,
    } = scene;
    let TestApp {
        handle,
        mut settings,
        address,
        _dir: data,
        ..
    } = app;
    handle.stop(false).await;
    settings.bind = address.trim_start_matches("http://").parse().unwrap();
    let app = spawn_with(Backend::Sqlite, settings, data, None).await;
    let scene = Scene {
        app,
        peer,
        browser,
        automation_id,
        row,
    };
    let (browser, peer) = (&scene.browser, &scene.peer);
    let dropped = json!(["reconnecting"]);
    browser
        .wait_for("the stream to drop", WAIT, STREAM_IN_STATE, dropped)
        .await;
    let live = json!(["live"]);
    browser
        .wait_for("the stream to be live again", WAIT, STREAM_IN_STATE, live)
        .await;
    assert!(peer.wait_until(WAIT, |p| p.open_connections() == 1).await);
    scene
        .wait_row("the row after the restart", "connected")
        .await;
    peer.broadcast(json!({"type": "order.shipped", "id": "o-2"}).to_string());
    let shipped = scene
        .wait_event("an event after the restart", "order.shipped")
        .await;
    assert_eq!(shipped["outcome"], "matched", "{shipped}");
    // Its run reaches the runs panel and the counts live, over the reopened stream.
    let counts = json!({"PENDING": "2"});
    let what = "the new run in the counts";
    browser
        .wait_for(what, WAIT, COUNTS_ARE, json!([counts]))
        .await;
    let args = json!([shipped["run"], "PENDING"]);
    let what = "the new run in the runs panel";
    browser.wait_for(what, WAIT, RUN_ROW, args).await;
    scene
}

/// The key lives in this tab's session storage only: not in the page, the URL, other storage,
/// the console or the server's logs.
async fn key_stays_in_the_tab(scene: &Scene) {
    let look = "return {session: sessionStorage.getItem('switchboard.apiKey'),
        local: localStorage.length, cookie: document.cookie,
        html: document.documentElement.outerHTML, url: location.href}";
    let seen = scene.browser.eval(look, json!([])).await;
    assert_eq!(seen["session"], ADMIN_KEY);
    assert_eq!(seen["local"], 0);
    assert_eq!(seen["cookie"], "");
    let html = seen["html"].as_str().unwrap();
    assert!(!html.contains(ADMIN_KEY), "the key is in the page");
    assert!(!seen["url"].as_str().unwrap().contains(ADMIN_KEY));
    let console = scene.browser.console().await;
    let clean = console.iter().all(|line| !line.contains(ADMIN_KEY));
    assert!(clean, "the key reached the console: {console:?}");
    let logs = String::from_utf8_lossy(&helpers::logs().lock().unwrap()).into_owned();
    assert!(
        !logs.contains(ADMIN_KEY),
        "the key reached the server's logs"
    );
}

fn screenshot_path() -> PathBuf {
    // `CARGO_TARGET_TMPDIR` is `<target dir>/tmp` (CARGO_TARGET_DIR when set).
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let target = tmp
        .parent()
        .map_or_else(|| PathBuf::from("target"), PathBuf::from);
    target.join("browser").join("operator-page.png")
}

/// Says something in the test output even when libtest captures `println!`.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}
