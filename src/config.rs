//! Typed settings: defaults, then an optional TOML file, then `SWITCHBOARD_*` environment variables
//! (and `DATABASE_URL`), validated at start-up with messages that name the setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Which certificate authorities outbound TLS trusts before `SWITCHBOARD_TLS_CA_FILE` adds to
/// them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsRoots {
    /// The Mozilla roots bundled in the binary (`webpki-roots`).
    #[default]
    Webpki,
    /// The operating system's store (`/etc/ssl/certs` and the like, `SSL_CERT_FILE`).
    Native,
}

/// Every setting of the service. Field names are the TOML keys; the environment variable is
/// `SWITCHBOARD_` + the upper-cased name (`database_url` also reads plain `DATABASE_URL`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address the HTTP server listens on.
    pub bind: SocketAddr,
    /// Directory for the SQLite database, the generated key file and the bootstrap key.
    pub data_dir: PathBuf,
    /// Database URL; default `sqlite://<data_dir>/switchboard.db`.
    pub database_url: Option<String>,
    /// Maximum connections in the database pool.
    pub database_max_connections: u32,
    /// Secret-encryption keyring `kid:base64key[,kid:base64key…]`, first is primary.
    #[serde(serialize_with = "serialize_redacted")]
    pub secret_keys: Option<SecretString>,
    /// Admin key to create on first start (else a random one is printed once).
    #[serde(serialize_with = "serialize_redacted")]
    pub bootstrap_api_key: Option<SecretString>,
    /// Public base URL used in `webhook_url`; default `http://<bind>`.
    pub public_url: Option<String>,
    /// Allow outbound connections to private, loopback and link-local addresses.
    pub allow_private_networks: bool,
    /// Serve `GET /metrics` on this address instead of the API's (no authentication either way).
    pub metrics_bind: Option<SocketAddr>,
    /// Base URL of the Slack Web API (`apps.connections.open` is called under it).
    pub slack_api_base: String,
    /// Steady rate of `apps.connections.open` calls per Slack source (bursts of two).
    pub slack_opens_per_second: f64,
    /// `pretty` or `json`.
    pub log_format: LogFormat,
    /// Log filter in `tracing` env-filter syntax (`RUST_LOG` wins when set).
    pub log_level: String,
    /// Largest accepted API request body, in bytes.
    pub max_body_bytes: usize,
    /// Dispatch actors (each on its own thread); default: the number of cores.
    pub dispatch_workers: Option<usize>,
    /// Global safety cap on new source connections per second, over all destination hosts.
    pub connects_per_second: f64,
    /// New source connections per second to one destination host (the URL's host as written;
    /// a Slack source's is its Web API's host), in bursts of up to 10.
    pub connects_per_second_per_host: f64,
    /// Events each dispatch actor keeps in memory; beyond that they are read back from storage.
    pub dispatch_queue_limit: usize,
    /// Seconds between the live stream's pings; a client that has not answered by the next one is
    /// disconnected.
    pub stream_ping_interval_s: u64,
    /// Seconds a connection the peer asked to refresh (Slack `disconnect`) keeps reading, storing
    /// and ACKing after its replacement is ready, waiting for the peer to close it (at least 10).
    pub refresh_grace_s: u64,
    /// Days events are kept (0: forever); an event is kept while any of its runs is not
    /// finished.
    pub retention_events_days: u32,
    /// Days finished runs (SUCCEEDED, FAILED, CANCELLED) are kept after they finished (0:
    /// forever).
    pub retention_runs_days: u32,
    /// Live-stream sessions open at once in this process (more are refused with 429).
    pub stream_max_sessions: usize,
    /// Live-stream sessions one API key may hold open at once (more are refused with 429).
    pub stream_max_sessions_per_key: usize,
    /// When set, `GET /metrics` requires `Authorization: Bearer <token>` (the metric labels name
    /// every org's source slugs).
    #[serde(serialize_with = "serialize_redacted")]
    pub metrics_token: Option<SecretString>,
    /// Roots trusted by outbound TLS: the bundled ones or the operating system's.
    pub tls_roots: TlsRoots,
    /// A PEM bundle of extra trusted roots (a company CA), added to `tls_roots`.
    pub tls_ca_file: Option<PathBuf>,
    /// Run as one of several replicas on one PostgreSQL: each source runs on exactly one replica
    /// (leases with fencing epochs), commands reach its holder from any replica. Every replica of
    /// one database must set it (and share `secret_keys`). Not available on SQLite.
    pub cluster: bool,
    /// Seconds a replica's source leases last without renewal (renewed every sixth of it): a
    /// replica that stops renewing stops its sources after half of it (closing them within a
    /// second), and the others take them over once it has passed.
    pub cluster_lease_s: f64,
    /// Most sources a replica takes over from one other replica per turn while the cluster
    /// rebalances (a replica joined or is draining).
    pub cluster_handover_batch: u32,
}

fn serialize_redacted<S: serde::Serializer>(
    value: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => serializer.serialize_some("[redacted]"),
        None => serializer.serialize_none(),
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            database_max_connections: 10,
            secret_keys: None,
            bootstrap_api_key: None,
            public_url: None,
            allow_private_networks: false,
            metrics_bind: None,
            slack_api_base: "https://slack.com/api".to_owned(),
            slack_opens_per_second: 1.0,
            log_format: LogFormat::Pretty,
            log_level: "info".to_owned(),
            max_body_bytes: 1024 * 1024,
            dispatch_workers: None,
            connects_per_second: 2_000.0,
            connects_per_second_per_host: 50.0,
            dispatch_queue_limit: 20_000,
            stream_ping_interval_s: 20,
            refresh_grace_s: 30,
            retention_events_days: 30,
            retention_runs_days: 30,
            stream_max_sessions: 1000,
            stream_max_sessions_per_key: 20,
            metrics_token: None,
            tls_roots: TlsRoots::Webpki,
            tls_ca_file: None,
            cluster: false,
            cluster_lease_s: 10.0,
            cluster_handover_batch: 250,
        }
    }
}

/// A setting that failed validation.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an environment variable could not be read as the right type.
    #[error("{0}")]
    Load(#[from] Box<figment::Error>),
    /// A value has the right type but is not acceptable.
    #[error("setting `{setting}` is invalid: {message}")]
    Invalid {
        /// The environment variable naming the setting.
        setting: &'static str,
        /// Why it is invalid.
        message: String,
    },
}

impl Settings {
    /// Loads defaults, then `file` (when given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            figment = figment.merge(Toml::file_exact(path));
        }
        let settings: Settings = figment
            .merge(
                Env::raw()
                    .only(&["DATABASE_URL"])
                    .map(|_| "database_url".into()),
            )
            .merge(Env::prefixed("SWITCHBOARD_").ignore(&["test_database_url"]))
            .extract()
            .map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks values whose type alone does not make them valid.
    // A flat table of independent range checks, one per setting, kept in one function (over the
    // usual length) so that every limit is read in one place.
    #[allow(clippy::too_many_lines)]
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting, message: &str| {
            Err(ConfigError::Invalid {
                setting,
                message: message.to_owned(),
            })
        };
        if let Some(url) = &self.database_url
            && !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
        {
            return invalid(
                "DATABASE_URL",
                "must start with sqlite:, postgres:// or postgresql://",
            );
        }
        if self.database_max_connections == 0 {
            return invalid("SWITCHBOARD_DATABASE_MAX_CONNECTIONS", "must be at least 1");
        }
        if let Some(public) = &self.public_url {
            match url::Url::parse(public) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => return invalid("SWITCHBOARD_PUBLIC_URL", "must be an http(s) URL"),
            }
        }
        if self.max_body_bytes < 1024 {
            return invalid("SWITCHBOARD_MAX_BODY_BYTES", "must be at least 1024");
        }
        if self.dispatch_workers.is_some_and(|n| n == 0 || n > 64) {
            return invalid("SWITCHBOARD_DISPATCH_WORKERS", "must be between 1 and 64");
        }
        if self.dispatch_queue_limit == 0 {
            return invalid("SWITCHBOARD_DISPATCH_QUEUE_LIMIT", "must be at least 1");
        }
        if !(1..=3600).contains(&self.stream_ping_interval_s) {
            return invalid(
                "SWITCHBOARD_STREAM_PING_INTERVAL_S",
                "must be between 1 and 3600",
            );
        }
        if self.retention_events_days > 36_500 {
            return invalid(
                "SWITCHBOARD_RETENTION_EVENTS_DAYS",
                "must be between 0 (forever) and 36500",
            );
        }
        if self.retention_runs_days > 36_500 {
            return invalid(
                "SWITCHBOARD_RETENTION_RUNS_DAYS",
                "must be between 0 (forever) and 36500",
            );
        }
        if !(10..=3600).contains(&self.refresh_grace_s) {
            return invalid("SWITCHBOARD_REFRESH_GRACE_S", "must be between 10 and 3600");
        }
        if !(1..=100_000).contains(&self.stream_max_sessions) {
            return invalid(
                "SWITCHBOARD_STREAM_MAX_SESSIONS",
                "must be between 1 and 100000",
            );
        }
        if !(1..=self.stream_max_sessions).contains(&self.stream_max_sessions_per_key) {
            return invalid(
                "SWITCHBOARD_STREAM_MAX_SESSIONS_PER_KEY",
                "must be between 1 and SWITCHBOARD_STREAM_MAX_SESSIONS",
            );
        }
        if self
            .metrics_token
            .as_ref()
            .is_some_and(|token| secrecy::ExposeSecret::expose_secret(token).len() < 16)
        {
            return invalid(
                "SWITCHBOARD_METRICS_TOKEN",
                "must be at least 16 characters",
            );
        }
        if !(self.connects_per_second.is_finite() && self.connects_per_second > 0.0) {
            return invalid(
                "SWITCHBOARD_CONNECTS_PER_SECOND",
                "must be a positive number",
            );
        }
        if !(self.connects_per_second_per_host.is_finite()
            && self.connects_per_second_per_host > 0.0
            && self.connects_per_second_per_host <= self.connects_per_second)
        {
            return invalid(
                "SWITCHBOARD_CONNECTS_PER_SECOND_PER_HOST",
                "must be a positive number, at most SWITCHBOARD_CONNECTS_PER_SECOND",
            );
        }
        if !(self.slack_opens_per_second.is_finite() && self.slack_opens_per_second > 0.0) {
            return invalid(
                "SWITCHBOARD_SLACK_OPENS_PER_SECOND",
                "must be a positive number",
            );
        }
        match url::Url::parse(&self.slack_api_base) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            _ => {
                return invalid(
                    "SWITCHBOARD_SLACK_API_BASE",
                    "must be an http:// or https:// URL",
                );
            }
        }
        if self.cluster && self.is_sqlite() {
            return invalid(
                "SWITCHBOARD_CLUSTER",
                "needs PostgreSQL (DATABASE_URL=postgres://…): SQLite is single-node",
            );
        }
        if !(self.cluster_lease_s.is_finite() && (5.0..=300.0).contains(&self.cluster_lease_s)) {
            return invalid("SWITCHBOARD_CLUSTER_LEASE_S", "must be between 5 and 300");
        }
        if !(1..=10_000).contains(&self.cluster_handover_batch) {
            return invalid(
                "SWITCHBOARD_CLUSTER_HANDOVER_BATCH",
                "must be between 1 and 10000",
            );
        }
        if let Err(err) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            return invalid("SWITCHBOARD_LOG_LEVEL", &err.to_string());
        }
        crate::tls::load_roots(self)?;
        Ok(())
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}/switchboard.db?mode=rwc",
                self.data_dir.display()
            ),
        }
    }

    /// Whether the database in effect is SQLite.
    pub fn is_sqlite(&self) -> bool {
        self.database_url().starts_with("sqlite:")
    }

    /// Dispatch actors to start.
    pub fn dispatch_workers(&self) -> usize {
        self.dispatch_workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
        })
    }

    /// The public base URL without a trailing slash.
    pub fn public_base_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.bind),
        }
    }
}
