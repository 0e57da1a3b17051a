//! `SourceSpec`: everything needed to (re)start a source, built from its committed row and
//! its opened secrets. Actors are always started fresh from a spec.

use std::sync::Arc;

use anyhow::Context as _;
use entity::websocket_source;
use uuid::Uuid;

use super::policy::BackoffConfig;
use super::rate_limit::pacing_host;
use crate::crypto::Keyring;
use crate::pipeline::ingest::SourceExprs;
use crate::sealed::open_source_secrets;
use crate::sources::config::{SourceSecrets, SourceSettings, StoredConfig};
use crate::sources::generic::GenericAdapter;
use crate::sources::slack::SlackAdapter;
use crate::tls::{SourceTls, TlsInput};

/// A committed source revision, compiled.
pub struct SourceSpec {
    /// Source id.
    pub id: Uuid,
    /// Owning org.
    pub org_id: Uuid,
    /// Slug.
    pub slug: String,
    /// Whether it should be connected.
    pub enabled: bool,
    /// Bumped by every change.
    pub revision: i64,
    /// The four ingest expressions.
    pub exprs: Arc<SourceExprs>,
    /// Kind-specific settings.
    pub settings: SourceSettings,
    /// Opened secrets (never logged).
    pub secrets: SourceSecrets,
    /// The compiled generic adapter (generic sources).
    pub generic: Option<Arc<GenericAdapter>>,
    /// The compiled Slack adapter (Slack sources).
    pub slack: Option<Arc<SlackAdapter>>,
    /// The source's own TLS material (`config.tls` of generic sources).
    pub tls: Option<Arc<SourceTls>>,
}

impl std::fmt::Debug for SourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceSpec")
            .field("id", &self.id)
            .field("slug", &self.slug)
            .field("kind", &self.settings.kind())
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}

/// Parses `config.tls` with the sealed client key (both were checked when saved).
fn source_tls(
    settings: &SourceSettings,
    secrets: &SourceSecrets,
) -> anyhow::Result<Option<Arc<SourceTls>>> {
    let SourceSettings::Generic(generic) = settings else {
        return Ok(None);
    };
    let Some(tls) = &generic.tls else {
        return Ok(None);
    };
    let input = TlsInput {
        ca_pem: tls.ca_pem.as_deref(),
        client_cert: tls.client_cert.as_deref(),
        client_key: secrets.client_key.as_deref(),
        server_name: tls.server_name.as_deref(),
    };
    let parsed = SourceTls::parse(input).map_err(|errors| {
        let fields: Vec<&str> = errors.iter().map(|(field, _)| *field).collect();
        anyhow::anyhow!("invalid {}", fields.join(", "))
    })?;
    Ok(Some(Arc::new(parsed)))
}

impl SourceSpec {
    /// Compiles a stored row (opening its secrets with `keyring`); Slack sources call the Web API
    /// at `slack_api_base`.
    pub fn from_row(
        row: &websocket_source::Model,
        keyring: &Keyring,
        slack_api_base: &str,
    ) -> anyhow::Result<SourceSpec> {
        let secrets = open_source_secrets(keyring, row)
            .with_context(|| format!("opening the secrets of source {}", row.id))?;
        let settings = StoredConfig::from_json(&row.config)
            .parse_settings(&row.kind)
            .with_context(|| format!("reading the settings of source {}", row.id))?;
        let exprs = SourceExprs::compile(
            row.event_key_expr.as_deref(),
            row.payload_expr.as_deref(),
            row.filter_expr.as_deref(),
            row.dedup_key_expr.as_deref(),
        )
        .map_err(|(field, e)| anyhow::anyhow!("{field} of source {}: {e}", row.id))?;
        let (generic, slack) = match &settings {
            SourceSettings::Generic(g) => (
                Some(Arc::new(
                    GenericAdapter::new(g, &secrets)
                        .with_context(|| format!("compiling source {}", row.id))?,
                )),
                None,
            ),
            SourceSettings::Slack(s) => (
                None,
                Some(Arc::new(
                    SlackAdapter::new(s, &secrets, slack_api_base)
                        .with_context(|| format!("compiling source {}", row.id))?,
                )),
            ),
        };
        let tls = source_tls(&settings, &secrets)
            .with_context(|| format!("reading config.tls of source {}", row.id))?;
        Ok(SourceSpec {
            tls,
            id: row.id,
            org_id: row.org_id,
            slug: row.source.clone(),
            enabled: row.enabled,
            revision: row.revision,
            exprs: Arc::new(exprs),
            settings,
            secrets,
            generic,
            slack,
        })
    }

    /// How many connections the source keeps (Slack: `connections`; generic: one).
    pub fn connections(&self) -> usize {
        self.slack
            .as_ref()
            .map_or(1, |adapter| usize::from(adapter.connections()))
    }

    /// The destination host its connects are paced by ([`pacing_host`]): a generic source's URL
    /// host; for Slack the Web API's host, which every connection calls first
    /// (`apps.connections.open` answers a fresh WebSocket URL each time).
    pub fn pacing_host(&self) -> String {
        match (&self.settings, &self.slack) {
            (SourceSettings::Generic(g), _) => pacing_host(&g.url),
            (SourceSettings::Slack(_), Some(slack)) => pacing_host(slack.api_base()),
            (SourceSettings::Slack(_), None) => String::new(),
        }
    }

    /// Whether `other` connects exactly like `self` (only expressions or the name differ), so it
    /// can be swapped in without a reconnect.
    pub fn same_connection(&self, other: &SourceSpec) -> bool {
        self.settings == other.settings && self.secrets == other.secrets && self.slug == other.slug
    }

    /// The restart policy settings of this source.
    pub fn backoff(&self) -> BackoffConfig {
        let pause_after_failures = match &self.settings {
            SourceSettings::Generic(g) => g.pause_after_failures,
            SourceSettings::Slack(s) => s.pause_after_failures,
        };
        BackoffConfig {
            pause_after_failures,
            ..BackoffConfig::default()
        }
    }
}
