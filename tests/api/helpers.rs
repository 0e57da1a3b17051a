//! `spawn_app()`: the real application on a random port against a fresh database (a SQLite file in
//! a temporary directory, or a new PostgreSQL database created and dropped here), plus a small
//! HTTP client and log capture for secret-leak checks.

use std::sync::{Arc, Mutex, OnceLock};

use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use secrecy::SecretString;
use serde_json::Value;
use switchboard::config::Settings;
use switchboard::crypto::Keyring;
use switchboard::startup::Application;

/// Which engine a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The admin key every test app is bootstrapped with.
pub const ADMIN_KEY: &str = "sbk_testadminkey0000000000000000000000000";

/// Base URL of the PostgreSQL server tests create databases on.
pub fn postgres_base() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// Drops a per-test PostgreSQL database when the test ends (even when it fails).
pub struct PgDatabase {
    pub name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(admin) = Database::connect(format!("{}/postgres", postgres_base())).await
                {
                    let _ = admin
                        .execute_unprepared(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .await;
                }
            });
        })
        .join();
    }
}

/// Creates a fresh PostgreSQL database and returns its URL.
pub async fn create_pg_database() -> (String, PgDatabase) {
    let name = format!("sb_test_{}", uuid::Uuid::new_v4().simple());
    let admin = Database::connect(format!("{}/postgres", postgres_base()))
        .await
        .expect("PostgreSQL is reachable (start it or set TEST_DATABASE_URL)");
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create test database");
    (format!("{}/{name}", postgres_base()), PgDatabase { name })
}

/// Captured log output of the whole test process.
pub fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug,sqlx=warn,sea_orm=info,h2=info,rustls=info")
            .with_writer(move || LogWriter(writer.clone()))
            .try_init();
        buffer
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut logs) = self.0.lock() {
            logs.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Everything a test needs to reach a running app.
#[allow(dead_code)]
pub struct TestApp {
    pub backend: Backend,
    pub address: String,
    pub settings: Settings,
    pub db: DatabaseConnection,
    pub client: awc::Client,
    pub handle: actix_web::dev::ServerHandle,
    /// The port of the separate metrics listener, when `metrics_bind` is set.
    pub metrics_port: Option<u16>,
    pub _dir: tempfile::TempDir,
    pub _pg: Option<PgDatabase>,
}

/// A response, parsed.
#[derive(Debug)]
#[allow(dead_code)]
pub struct Resp {
    pub status: u16,
    pub content_type: String,
    pub headers: awc::http::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

/// Settings for a test app on `backend`, with a fixed admin key and keyring.
pub async fn test_settings(backend: Backend) -> (Settings, tempfile::TempDir, Option<PgDatabase>) {
    logs();
    let dir = tempfile::tempdir().expect("temp dir");
    let (database_url, pg) = match backend {
        Backend::Sqlite => (None, None),
        Backend::Postgres => {
            let (url, guard) = create_pg_database().await;
            (Some(url), Some(guard))
        }
    };
    let settings = Settings {
        bind: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().to_path_buf(),
        database_url,
        database_max_connections: 5,
        secret_keys: Some(SecretString::from(Keyring::generate_entry("t1"))),
        bootstrap_api_key: Some(SecretString::from(ADMIN_KEY.to_owned())),
        public_url: Some("https://hooks.example.com".to_owned()),
        // Slack sources of tests that bring no Slack peer call a closed loopback port, never
        // slack.com.
        slack_api_base: "http://127.0.0.1:9/api".to_owned(),
        ..Settings::default()
    };
    (settings, dir, pg)
}

/// Starts the real application on a random port with a fresh database.
pub async fn spawn_app(backend: Backend) -> TestApp {
    let (settings, dir, pg) = test_settings(backend).await;
    spawn_with(backend, settings, dir, pg).await
}

/// Starts the real application with outbound connections to loopback allowed (for tests against
/// the scriptable peers).
pub async fn spawn_app_private(backend: Backend) -> TestApp {
    let (mut settings, dir, pg) = test_settings(backend).await;
    settings.allow_private_networks = true;
    spawn_with(backend, settings, dir, pg).await
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub async fn eventually<F, Fut>(timeout: std::time::Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Starts the application with the given settings.
pub async fn spawn_with(
    backend: Backend,
    settings: Settings,
    dir: tempfile::TempDir,
    pg: Option<PgDatabase>,
) -> TestApp {
    let app = Application::build(settings.clone())
        .await
        .expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    let metrics_port = app.metrics_port();
    actix_web::rt::spawn(app.run_until_stopped());
    let db = switchboard::db::connect(&settings)
        .await
        .expect("test connection");
    TestApp {
        backend,
        address,
        settings,
        db,
        client: awc::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .finish(),
        handle,
        metrics_port,
        _dir: dir,
        _pg: pg,
    }
}

impl TestApp {
    /// Sends a request with an optional bearer key and JSON body.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .client
            .request(method, format!("{}{}", self.address, path));
        if let Some(key) = key {
            req = req.insert_header(("Authorization", format!("Bearer {key}")));
        }
        let res = match body {
            Some(body) => req.send_json(&body).await,
            None => req.send().await,
        };
        read(res.expect("request sent")).await
    }

    /// Sends raw bytes as the body.
    pub async fn send_raw(&self, method: &str, path: &str, key: &str, body: Vec<u8>) -> Resp {
        let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
        let res = self
            .client
            .request(method, format!("{}{}", self.address, path))
            .insert_header(("Authorization", format!("Bearer {key}")))
            .insert_header(("Content-Type", "application/json"))
            .send_body(body)
            .await
            .expect("request sent");
        read(res).await
    }

    /// Sends raw bytes with the given headers and no API key (inbound webhooks).
    pub async fn deliver(&self, path: &str, headers: &[(&str, String)], body: &[u8]) -> Resp {
        let mut req = self.client.post(format!("{}{}", self.address, path));
        for (name, value) in headers {
            req = req.append_header((*name, value.as_str()));
        }
        read(req.send_body(body.to_vec()).await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str, key: &str) -> Resp {
        self.request("GET", path, Some(key), None).await
    }
    pub async fn post(&self, path: &str, key: &str, body: Value) -> Resp {
        self.request("POST", path, Some(key), Some(body)).await
    }
    pub async fn patch(&self, path: &str, key: &str, body: Value) -> Resp {
        self.request("PATCH", path, Some(key), Some(body)).await
    }
    pub async fn delete(&self, path: &str, key: &str) -> Resp {
        self.request("DELETE", path, Some(key), None).await
    }

    /// Creates another org and returns its admin key.
    pub async fn new_org(&self, name: &str) -> String {
        let key = switchboard::bootstrap::create_org_with_admin(
            &self.db,
            name,
            switchboard::auth::generate_key(),
        )
        .await
        .expect("org created");
        key.key
    }

    /// Stops the server.
    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }
}

pub async fn read<S>(mut res: awc::ClientResponse<S>) -> Resp
where
    S: futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>> + Unpin,
{
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = res.body().limit(64 * 1024 * 1024).await.expect("body read");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Resp {
        status,
        content_type,
        headers,
        body,
        text,
    }
}

/// Runs an async test body on SQLite and on PostgreSQL, as two tests named `<name>::sqlite` and
/// `<name>::postgres`, each on an app started by `$spawn`.
#[macro_export]
macro_rules! backend_tests {
    ($spawn:path; $(async fn $name:ident($app:ident: $ty:ty) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                async fn body($app: $ty) $body
                #[actix_web::test]
                async fn sqlite() {
                    body($spawn($crate::helpers::Backend::Sqlite).await).await
                }
                #[actix_web::test]
                async fn postgres() {
                    body($spawn($crate::helpers::Backend::Postgres).await).await
                }
            }
        )*
    };
}

/// Both engines, default settings.
#[macro_export]
macro_rules! both_backends {
    ($($tests:tt)*) => { $crate::backend_tests!($crate::helpers::spawn_app; $($tests)*); };
}

/// Both engines, with outbound connections to loopback peers allowed.
#[macro_export]
macro_rules! both_backends_private {
    ($($tests:tt)*) => { $crate::backend_tests!($crate::helpers::spawn_app_private; $($tests)*); };
}

/// Asserts a problem+json response with `status` that names `field`.
pub fn assert_problem(resp: &Resp, status: u16, field: Option<&str>) {
    assert_eq!(
        resp.status, status,
        "unexpected status; body: {}",
        resp.text
    );
    assert!(
        resp.content_type.starts_with("application/problem+json"),
        "not problem+json: {} ({})",
        resp.content_type,
        resp.text
    );
    assert_eq!(resp.body["status"], status);
    if let Some(field) = field {
        let fields: Vec<&str> = resp.body["errors"]
            .as_array()
            .map(|errors| errors.iter().filter_map(|e| e["field"].as_str()).collect())
            .unwrap_or_default();
        assert!(
            fields.contains(&field),
            "expected field `{field}` in {fields:?}: {}",
            resp.text
        );
    }
}

/// The plan the engine gives `stmt`, one line per step (`EXPLAIN` on PostgreSQL, `EXPLAIN QUERY
/// PLAN` on SQLite).
pub async fn explain(app: &TestApp, stmt: sea_orm::Statement) -> Vec<String> {
    use sea_orm::ConnectionTrait as _;
    let (prefix, column) = match stmt.db_backend {
        sea_orm::DbBackend::Postgres => ("EXPLAIN ", "QUERY PLAN"),
        _ => ("EXPLAIN QUERY PLAN ", "detail"),
    };
    let explain = sea_orm::Statement {
        sql: format!("{prefix}{}", stmt.sql),
        ..stmt
    };
    let rows = app.db.query_all_raw(explain).await.unwrap();
    rows.iter()
        .map(|r| r.try_get::<String>("", column).unwrap())
        .collect()
}
