//! What every scenario starts from: a fresh database per engine ([`Env`]), the service running
//! on it ([`RunningApp`]), and the order message the peers send.

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use secrecy::SecretString;
use serde_json::{Value, json};
use switchboard::config::Settings;
use switchboard::crypto::Keyring;
use switchboard::startup::Application;

use super::{KEY, pg_base};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// PostgreSQL on [`pg_base`].
    Postgres,
    /// SQLite in a temporary directory.
    Sqlite,
}

impl Backend {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// A fresh database plus the settings to reach it.
pub(crate) struct Env {
    pub(crate) settings: Settings,
    _dir: tempfile::TempDir,
    pg_name: Option<String>,
}

impl Env {
    pub(crate) async fn new(backend: Backend) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let (url, pg_name) = match backend {
            Backend::Sqlite => (None, None),
            Backend::Postgres => {
                let name = format!("sb_bench_{}", uuid::Uuid::new_v4().simple());
                let admin = Database::connect(format!("{}/postgres", pg_base()))
                    .await
                    .unwrap();
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .unwrap();
                (Some(format!("{}/{name}", pg_base())), Some(name))
            }
        };
        let settings = Settings {
            bind: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_path_buf(),
            database_url: url,
            database_max_connections: std::env::var("BENCH_DB_POOL")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(10),
            secret_keys: Some(SecretString::from(Keyring::generate_entry("b1"))),
            bootstrap_api_key: Some(SecretString::from(KEY.to_owned())),
            allow_private_networks: true,
            log_level: "warn".to_owned(),
            connects_per_second: 2_000.0,
            ..Settings::default()
        };
        Env {
            settings,
            _dir: dir,
            pg_name,
        }
    }

    pub(crate) async fn admin_db(&self) -> DatabaseConnection {
        let db = switchboard::db::connect(&self.settings).await.unwrap();
        switchboard::db::migrate(&db).await.unwrap();
        db
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let admin = Database::connect(format!("{}/postgres", pg_base()))
                        .await
                        .unwrap();
                    let _ = admin
                        .execute_unprepared(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .await;
                });
            })
            .join();
        }
    }
}

/// A ~200-byte order message; even sequence numbers have amount 50, odd ones 150.
pub(crate) fn message(seq: usize, salt: usize) -> String {
    let sent_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let amount = if seq.is_multiple_of(2) { 50 } else { 150 };
    json!({
        "type": "order.created", "id": format!("o{salt}-{seq:08}"), "seq": seq, "sent_us": sent_us as u64,
        "data": {"amount": amount, "currency": "EUR", "customer": format!("cust-{:06}", seq % 999_999), "items": 3},
        "meta": {"region": "eu-west-1", "channel": "web"}
    })
    .to_string()
}

pub(crate) struct RunningApp {
    pub(crate) base: String,
    pub(crate) client: awc::Client,
    pub(crate) app_handle: actix_web::dev::ServerHandle,
    pub(crate) publisher: switchboard::actors::publisher::Publisher,
    pub(crate) metrics: std::sync::Arc<switchboard::metrics::Metrics>,
    pub(crate) db: DatabaseConnection,
    /// The application's serve-and-stop task (sources closed, status written, cluster left).
    pub(crate) finished: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub(crate) async fn start_app(env: &Env) -> RunningApp {
    let app = Application::build(env.settings.clone()).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let app_handle = app.handle();
    let publisher = app.publisher().clone();
    let metrics = app.metrics().clone();
    let finished = actix_web::rt::spawn(app.run_until_stopped());
    let db = switchboard::db::connect(&env.settings).await.unwrap();
    RunningApp {
        base,
        client: awc::Client::default(),
        app_handle,
        publisher,
        metrics,
        db,
        finished,
    }
}

impl RunningApp {
    /// `GET` with the admin key; panics unless 200.
    pub(crate) async fn get(&self, path: &str) -> serde_json::Value {
        let mut res = self
            .client
            .get(format!("{}{path}", self.base))
            .insert_header(("Authorization", format!("Bearer {KEY}")))
            .send()
            .await
            .unwrap();
        let value: serde_json::Value = res.json().limit(64 << 20).await.unwrap();
        assert!(res.status().is_success(), "{path}: {value}");
        value
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> Value {
        let mut res = self
            .client
            .post(format!("{}{path}", self.base))
            .insert_header(("Authorization", format!("Bearer {KEY}")))
            .send_json(&body)
            .await
            .unwrap();
        let value: Value = res.json().limit(1 << 20).await.unwrap();
        assert!(res.status().is_success(), "{path}: {value}");
        value
    }

    pub(crate) async fn automations(&self, count: usize) {
        self.automations_on("orders", "order.*", "data.amount > `100`", count)
            .await;
    }

    pub(crate) async fn automations_on(&self, source: &str, on: &str, filter: &str, count: usize) {
        for i in 0..count {
            self.post(
                "/v1/automations",
                json!({"name": format!("a{i}"),
                "trigger": {"type": "event", "source": source, "on": on, "filter": filter}}),
            )
            .await;
        }
    }

    pub(crate) async fn source(&self, slug: &str, url: &str) {
        self.post(
            "/v1/websocket-sources",
            json!({"name": slug, "source": slug, "kind": "generic",
            "event_key_expr": "type", "dedup_key_expr": "id", "config": {"url": url}}),
        )
        .await;
    }

    /// Waits (at most two minutes without progress) until `runs` runs were created.
    pub(crate) async fn wait_for_runs(&self, runs: usize) {
        let (mut last, mut progress) = (0, Instant::now());
        loop {
            let created = self.metrics.runs_created.get() as usize;
            if created >= runs {
                return;
            }
            if created != last {
                (last, progress) = (created, Instant::now());
            } else if progress.elapsed() > Duration::from_secs(120) {
                println!("  (stalled at {created} of {runs} runs)");
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The service's own means from its metrics: per storage write (events, dispatch), the
    /// dispatch batch, message arrival → ACK and event arrival → runs committed. Where the time
    /// between a send and its run goes, inside the service.
    pub(crate) async fn stage_means(&self) -> String {
        let mut res = self
            .client
            .get(format!("{}/metrics", self.base))
            .insert_header(("Authorization", format!("Bearer {KEY}")))
            .send()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&res.body().limit(16 << 20).await.unwrap()).into_owned();
        let value = |name: &str| -> f64 {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN)
        };
        let mean =
            |metric: &str| value(&format!("{metric}_sum")) / value(&format!("{metric}_count"));
        let mut parts = Vec::new();
        for op in ["events", "dispatch"] {
            let sum = value(&format!("switchboard_db_write_seconds_sum{{op=\"{op}\"}}"));
            let count = value(&format!(
                "switchboard_db_write_seconds_count{{op=\"{op}\"}}"
            ));
            if count > 0.0 {
                parts.push(format!("{op} {:.2} ms × {count}", 1000.0 * sum / count));
            }
        }
        let ms = |metric: &str| {
            let mean = mean(metric);
            if mean.is_nan() {
                "none".to_owned()
            } else {
                format!("{:.2} ms", 1000.0 * mean)
            }
        };
        format!(
            "storage writes (mean × count): {} | events per dispatch mean {:.1} | arrival → ACK mean {} | arrival → runs committed mean {}",
            parts.join(", "),
            mean("switchboard_dispatch_batch_events"),
            ms("switchboard_ack_latency_seconds"),
            ms("switchboard_ingest_to_run_seconds"),
        )
    }

    /// Stops the application and waits until it has closed everything (bounded).
    pub(crate) async fn stop(self) {
        self.app_handle.stop(true).await;
        let _ = tokio::time::timeout(Duration::from_secs(40), self.finished).await;
    }
}
