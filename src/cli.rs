//! The `switchboard` command line: `serve` (default), `migrate`, `check`, `keys generate|rotate`,
//! `orgs create NAME`, `health`, `worker -- CMD`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::Settings;
use crate::crypto::Keyring;
use crate::{auth, bootstrap, db, keyring_setup, rotate, startup::Application, telemetry};

/// Switchboard: persistent outbound WebSocket sources and signed webhooks turned into events,
/// matched against automations, enqueued as runs.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version)]
pub struct Cli {
    /// Optional TOML settings file (environment variables win over it).
    #[arg(long, global = true, env = "SWITCHBOARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Validate the configuration (and reach the database) and exit.
    Check,
    /// Manage the secret-encryption keyring.
    Keys {
        /// Keyring action.
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Manage orgs.
    Orgs {
        /// Org action.
        #[command(subcommand)]
        action: OrgsAction,
    },
    /// Run a reference worker: claim runs and run CMD once per run (the run as JSON on stdin,
    /// SWITCHBOARD_RUN_ID and SWITCHBOARD_ATTEMPT in the environment); exit 0 completes the run
    /// (stdout as the result when it is JSON), anything else fails it (the tail of stderr as the
    /// error).
    Worker {
        /// Base URL of the service.
        #[arg(long, env = "SWITCHBOARD_URL")]
        url: String,
        /// A `worker` API key.
        #[arg(long, env = "SWITCHBOARD_KEY", hide_env_values = true)]
        key: String,
        /// Commands run at once.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// Only runs of these automations (`--automation A B`, or the flag repeated).
        #[arg(long = "automation", value_name = "ID", num_args = 1..)]
        automations: Vec<uuid::Uuid>,
        /// Seconds running commands may take to finish after SIGTERM.
        #[arg(long, default_value_t = 30)]
        grace_s: u64,
        /// Name recorded as the lease owner (default: host name and process id).
        #[arg(long)]
        name: Option<String>,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Ask a running service whether it is ready (`GET /readyz`): exit status 0 when it is, 1
    /// otherwise (a container health check).
    Health {
        /// Base URL of the service (default: the configured bind address, on loopback when it
        /// binds every address).
        #[arg(long)]
        url: Option<String>,
    },
}

/// `keys` actions.
#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Print a new key entry `kid:base64key` to put first in SWITCHBOARD_SECRET_KEYS.
    Generate {
        /// Key id (default: k + current unix time).
        #[arg(long)]
        kid: Option<String>,
    },
    /// Re-encrypt every stored secret under the primary (first) key.
    Rotate,
}

/// `orgs` actions.
#[derive(Debug, Subcommand)]
pub enum OrgsAction {
    /// Create an org and print its admin API key (shown once).
    Create {
        /// The org's name.
        name: String,
    },
}

/// Prints a line on stdout; a closed pipe (`… | head`) is not an error worth a panic.
pub fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// `GET /readyz` of the service at `url` (default: the bind address): Ok when it answers 200.
async fn health(settings: &Settings, url: Option<&str>) -> anyhow::Result<()> {
    let base = match url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let mut bind = settings.bind;
            if bind.ip().is_unspecified() {
                bind.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{bind}")
        }
    };
    let client = awc::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .finish();
    let response = client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{base} did not answer: {e}"))?;
    anyhow::ensure!(
        response.status().is_success(),
        "{base} is not ready (HTTP {})",
        response.status()
    );
    say(format_args!("ready"));
    Ok(())
}

/// Logs of `switchboard worker` on stderr (`RUST_LOG` filters; default `info`).
fn init_worker_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs the parsed command line. `keys generate` and `worker` need no settings; every other
/// command loads them (and starts logging) first.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Keys {
            action: KeysAction::Generate { kid },
        } => generate_key(kid),
        Command::Worker {
            url,
            key,
            concurrency,
            automations,
            grace_s,
            name,
            command,
        } => {
            init_worker_logging();
            crate::worker::run(crate::worker::WorkerConfig {
                url,
                key,
                concurrency,
                automations,
                grace: std::time::Duration::from_secs(grace_s),
                command,
                name: name.unwrap_or_else(default_worker_name),
            })
            .await
        }
        Command::Serve => serve(load_settings(config.as_deref())?).await,
        Command::Health { url } => health(&load_settings(config.as_deref())?, url.as_deref()).await,
        Command::Migrate => migrate(&load_settings(config.as_deref())?).await,
        Command::Check => check(&load_settings(config.as_deref())?).await,
        Command::Keys {
            action: KeysAction::Rotate,
        } => rotate_keys(&load_settings(config.as_deref())?).await,
        Command::Orgs {
            action: OrgsAction::Create { name },
        } => create_org(&load_settings(config.as_deref())?, &name).await,
    }
}

/// Loads the settings and starts logging as they say.
fn load_settings(config: Option<&std::path::Path>) -> anyhow::Result<Settings> {
    let settings = Settings::load(config)?;
    telemetry::init(&settings);
    Ok(settings)
}

/// `keys generate`: prints a new keyring entry.
fn generate_key(kid: Option<String>) -> anyhow::Result<()> {
    let kid = kid.unwrap_or_else(|| format!("k{}", chrono::Utc::now().timestamp()));
    Keyring::generate(&kid).context("checking the key id")?;
    say(format_args!("{}", Keyring::generate_entry(&kid)));
    Ok(())
}

/// The lease owner a worker records when not given `--name`: host name and process id.
fn default_worker_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".to_owned());
    format!("{host}-{}", std::process::id())
}

/// `serve`: builds the application (printing a first-start admin key once) and runs it.
async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build_announcing(settings, |new| {
        // Printed once, on stdout only (never to the log), before it is stored.
        say(format_args!(
            "Created org `default` with an admin API key (shown once; saved to {} when \
             the data dir is writable):\n\n    {}\n",
            new.file.display(),
            new.key
        ));
    })
    .await?;
    app.run_until_stopped().await.context("serving")
}

/// `migrate`: applies the migrations.
async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let conn = db::connect(settings).await?;
    db::migrate(&conn).await?;
    say(format_args!("migrations applied"));
    Ok(())
}

/// `check`: reaches the database and loads the keyring.
async fn check(settings: &Settings) -> anyhow::Result<()> {
    let conn = db::connect(settings).await?;
    keyring_setup::load_keyring(settings)?;
    drop(conn);
    say(format_args!(
        "configuration is valid (database {})",
        crate::redact::redact_url(&settings.database_url())
    ));
    Ok(())
}

/// `keys rotate`: re-seals every stored secret under the primary key.
async fn rotate_keys(settings: &Settings) -> anyhow::Result<()> {
    let conn = db::connect(settings).await?;
    db::migrate(&conn).await?;
    let keyring = keyring_setup::load_keyring(settings)?;
    let report = rotate::reseal_all(&conn, &keyring).await?;
    say(format_args!(
        "re-encrypted {} secret blob(s) under key `{}` ({} already current)",
        report.resealed,
        keyring.primary_kid(),
        report.current
    ));
    Ok(())
}

/// `orgs create NAME`: creates the org and prints its admin key once.
async fn create_org(settings: &Settings, name: &str) -> anyhow::Result<()> {
    let conn = db::connect(settings).await?;
    db::migrate(&conn).await?;
    anyhow::ensure!(!name.trim().is_empty(), "the org name must not be blank");
    let key = bootstrap::create_org_with_admin(&conn, name, auth::generate_key()).await?;
    say(format_args!(
        "Created org `{name}`. Its admin API key (shown once):\n\n    {}\n",
        key.key
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use clap::Parser as _;

    use super::*;

    #[test]
    fn a_worker_takes_several_automations_after_one_flag() {
        let (a, b) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
        let args =
            format!("switchboard worker --url http://x --key k --automation {a} {b} -- ./h.sh arg");
        let cli = Cli::try_parse_from(args.split(' ')).unwrap();
        let Some(Command::Worker {
            automations,
            command,
            ..
        }) = cli.command
        else {
            panic!("not a worker: {cli:?}");
        };
        assert_eq!(automations, vec![a, b]);
        assert_eq!(command, vec!["./h.sh", "arg"]);
        let repeated = format!(
            "switchboard worker --url http://x --key k --automation {a} --automation {b} -- ./h.sh"
        );
        let cli = Cli::try_parse_from(repeated.split(' ')).unwrap();
        let Some(Command::Worker { automations, .. }) = cli.command else {
            panic!("not a worker: {cli:?}");
        };
        assert_eq!(automations, vec![a, b]);
    }
}
