//! Just enough of the W3C WebDriver protocol (JSON over HTTP, spoken with awc) to drive Debian's
//! headless Chromium through a `chromedriver` child process on a free loopback port.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// The W3C name of an element reference in JSON.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const INSTALL: &str = "install Debian's `chromium chromium-driver` \
    (`apt-get install -y chromium chromium-driver`; scripts/test does this when apt-get is available)";

/// Where chromedriver and Chromium are.
pub struct Tools {
    pub chromedriver: PathBuf,
    pub chromium: PathBuf,
}

impl Tools {
    /// Finds both programs, or fails the test saying how to install them.
    pub fn locate() -> Tools {
        let chromedriver = on_path("chromedriver").unwrap_or_else(|| {
            panic!("the browser test needs `chromedriver`, not found on PATH: {INSTALL}")
        });
        let chromium = ["chromium", "chromium-browser", "google-chrome"]
            .into_iter()
            .find_map(on_path)
            .unwrap_or_else(|| {
                panic!("the browser test needs Chromium, not found on PATH: {INSTALL}")
            });
        Tools {
            chromedriver,
            chromium,
        }
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A running chromedriver; when dropped it ends the sessions still open (so that no Chromium
/// outlives a failed test) and is killed.
pub struct ChromeDriver {
    child: Child,
    port: u16,
    url: String,
    client: awc::Client,
    open: Arc<Mutex<Vec<String>>>,
}

impl ChromeDriver {
    /// Starts chromedriver on a free port and waits until it reports ready.
    pub async fn start(tools: &Tools) -> ChromeDriver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(&tools.chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", tools.chromedriver.display()));
        let mut driver = ChromeDriver {
            child,
            port,
            open: Arc::default(),
            url: format!("http://127.0.0.1:{port}"),
            client: awc::Client::builder()
                .timeout(Duration::from_secs(60))
                .finish(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = driver.child.try_wait() {
                panic!("chromedriver exited at start ({status}): {INSTALL}");
            }
            if let Ok(mut res) = driver
                .client
                .get(format!("{}/status", driver.url))
                .send()
                .await
                && let Ok(body) = res.json::<Value>().await
                && body["value"]["ready"] == true
            {
                return driver;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready in 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let open = std::mem::take(&mut *self.open.lock().unwrap_or_else(|e| e.into_inner()));
        for id in open {
            delete_blocking(self.port, &format!("/session/{id}"));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `DELETE path` without an async runtime (for `Drop`, possibly while a failed test unwinds).
fn delete_blocking(port: u16, path: &str) {
    if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let request = format!(
            "DELETE {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        if stream.write_all(request.as_bytes()).is_ok() {
            let _ = stream.read_to_end(&mut Vec::new());
        }
    }
}

/// One browser session (a headless Chromium window).
pub struct Browser {
    client: awc::Client,
    id: String,
    session: String,
    open: Arc<Mutex<Vec<String>>>,
}

impl Browser {
    /// Opens headless Chromium with a 1280×900 window.
    pub async fn open(driver: &ChromeDriver, tools: &Tools) -> Browser {
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": tools.chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900",
                    "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions"],
            },
        }}});
        let value = call(
            &driver.client,
            "POST",
            &format!("{}/session", driver.url),
            Some(capabilities),
        )
        .await;
        let id = value["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        driver.open.lock().unwrap().push(id.clone());
        Browser {
            client: driver.client.clone(),
            session: format!("{}/session/{id}", driver.url),
            id,
            open: driver.open.clone(),
        }
    }

    async fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        call(
            &self.client,
            method,
            &format!("{}{path}", self.session),
            body,
        )
        .await
    }

    /// Loads `url` (returns when the document has loaded).
    pub async fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(json!({"url": url})))
            .await;
    }

    /// The element `css` selects (the first one).
    pub async fn find(&self, css: &str) -> String {
        let found = self
            .command(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found[ELEMENT]
            .as_str()
            .expect("an element reference")
            .to_owned()
    }

    /// Types `text` into the element `css` selects.
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.command(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Clicks the element `css` selects, as a user would.
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.command(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page and returns its result.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Polls `script` every 50 ms until it returns something other than `null` or `false`, and
    /// returns that; fails the test, naming `what` and showing the page's text, after `timeout`.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        script: &str,
        args: Value,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.eval(script, args.clone()).await;
            if !(value.is_null() || value == false) {
                return value;
            }
            if Instant::now() > deadline {
                let text = self.eval("return document.body.innerText", json!([])).await;
                panic!(
                    "timed out after {timeout:?} waiting for {what}; the page shows:\n{}",
                    text.as_str().unwrap_or("")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The browser console's messages so far (Chromium's log extension).
    pub async fn console(&self) -> Vec<String> {
        let entries = self
            .command("POST", "/se/log", Some(json!({"type": "browser"})))
            .await;
        entries
            .as_array()
            .map(|all| {
                all.iter()
                    .map(|e| e["message"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Saves a PNG of the window to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let encoded = self.command("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("base64 PNG"))
            .expect("valid base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot directory");
        }
        std::fs::write(path, png).expect("screenshot written");
    }

    /// Ends the session (and closes Chromium).
    pub async fn close(self) {
        self.command("DELETE", "", None).await;
        self.open.lock().unwrap().retain(|id| *id != self.id);
    }
}

/// Sends one WebDriver command and returns its `value`; fails the test on a WebDriver error.
async fn call(client: &awc::Client, method: &str, url: &str, body: Option<Value>) -> Value {
    let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
    let request = client.request(method.clone(), url);
    let sent = match body {
        Some(body) => request.send_json(&body).await,
        None => request.send().await,
    };
    let mut res = sent.unwrap_or_else(|e| panic!("WebDriver {method} {url}: {e}"));
    let bytes = res
        .body()
        .limit(64 * 1024 * 1024)
        .await
        .expect("WebDriver answer");
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    assert!(
        res.status().is_success(),
        "WebDriver {method} {url} failed ({}): {}",
        res.status(),
        answer["value"]["message"]
            .as_str()
            .unwrap_or(&String::from_utf8_lossy(&bytes))
    );
    answer["value"].clone()
}
