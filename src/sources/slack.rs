//! The sans-IO adapter of Slack Socket Mode sources (DESIGN §4–§5, issue 4). Compiled once per
//! source revision, [`SlackAdapter`] builds the `apps.connections.open` call and the URL to
//! connect to; [`parse_open_response`] classifies the answer; one [`SlackSession`] per connection
//! turns inbound frames into [`SlackAction`]s; one [`OpenBudget`] per source paces the calls of
//! all its connections. The source actor does all the I/O and keeps the clock (time is passed in).
//!
//! The app token and the `ticket` of a WebSocket URL never appear in a `Debug` output, a failure
//! detail or a status: use [`redact_ticket`] / [`OpenedUrl::redacted`] to show a URL.

use std::fmt;
use std::time::Duration;

use super::config::{SlackSettings, SourceSecrets};

mod budget;
mod open;
mod session;
#[cfg(test)]
mod tests;

pub use budget::OpenBudget;
pub use open::{
    DEFAULT_RETRY_AFTER, HttpRequestSpec, MAX_RETRY_AFTER, OpenFailure, OpenedUrl,
    TERMINAL_OPEN_ERRORS, connect_url, open_request, parse_open_response, redact_ticket,
};
pub use session::{
    HELLO_TIMEOUT, LINK_DISABLED_REASON, SlackAction, SlackCounter, SlackSession,
    TOO_MANY_WEBSOCKETS_DELAY, no_hello_detail,
};

/// Connections a source may keep (`connections` is clamped to this range).
pub const CONNECTIONS: std::ops::RangeInclusive<u8> = 1..=10;

/// Why a Slack source revision cannot become an adapter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlackAdapterError {
    /// No app token is sealed with the source.
    #[error("config.app_token is required for Slack sources")]
    MissingAppToken,
}

/// A `slack` source revision, compiled. Immutable, `Send + Sync`; its `Debug` hides the token.
#[derive(Clone, PartialEq, Eq)]
pub struct SlackAdapter {
    api_base: String,
    app_token: String,
    connections: u8,
    debug_reconnects: bool,
    proactive_refresh: bool,
}

const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<SlackAdapter>();
};

impl SlackAdapter {
    /// Takes the app token from `secrets` and the Web API base URL (`SWITCHBOARD_SLACK_API_BASE`,
    /// `https://slack.com/api` by default; a trailing `/` is ignored).
    pub fn new(
        settings: &SlackSettings,
        secrets: &SourceSecrets,
        api_base: &str,
    ) -> Result<SlackAdapter, SlackAdapterError> {
        let app_token = secrets
            .app_token
            .as_deref()
            .filter(|token| !token.is_empty())
            .ok_or(SlackAdapterError::MissingAppToken)?;
        Ok(SlackAdapter {
            api_base: api_base.trim_end_matches('/').to_owned(),
            app_token: app_token.to_owned(),
            connections: settings
                .connections
                .clamp(*CONNECTIONS.start(), *CONNECTIONS.end()),
            debug_reconnects: settings.debug_reconnects,
            proactive_refresh: settings.proactive_refresh,
        })
    }

    /// The Slack app the token belongs to (`xapp-1-<APP ID>-…`), the key of the open budget
    /// replicas share; a token of another shape is keyed by its SHA-256 (never by the token).
    pub fn app_key(&self) -> String {
        let parts: Vec<&str> = self.app_token.splitn(4, '-').collect();
        match parts.as_slice() {
            ["xapp", _, app, _] if !app.is_empty() => format!("app:{app}"),
            _ => {
                use sha2::Digest as _;
                format!(
                    "sha256:{}",
                    hex::encode(sha2::Sha256::digest(&self.app_token))
                )
            }
        }
    }

    /// The Web API base URL every connection of the source calls first.
    pub fn api_base(&self) -> &str {
        &self.api_base
    }

    /// Connections to keep open (1..=10).
    pub fn connections(&self) -> u8 {
        self.connections
    }

    /// The `apps.connections.open` call; make it for every attempt (URLs are single-use).
    pub fn open_request(&self) -> HttpRequestSpec {
        open_request(&self.api_base, &self.app_token, self.debug_reconnects)
    }

    /// The URL to connect to from an opened one (`debug_reconnects=true` appended when set).
    pub fn connect_url(&self, opened: &OpenedUrl) -> String {
        opened.connect_url(self.debug_reconnects)
    }

    /// Fresh state for a new connection.
    pub fn session(&self) -> SlackSession {
        SlackSession::new()
    }

    /// When to start a proactive refresh after `hello`: only with `proactive_refresh` set, see
    /// [`proactive_refresh_after`].
    pub fn refresh_after(&self, approximate_connection_time: Option<Duration>) -> Option<Duration> {
        proactive_refresh_after(approximate_connection_time).filter(|_| self.proactive_refresh)
    }

    /// [`ghost_warning`] against this source's connection count.
    pub fn ghost_warning(&self, num_connections: u32) -> Option<String> {
        ghost_warning(self.connections, num_connections)
    }
}

impl fmt::Debug for SlackAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackAdapter")
            .field("api_base", &self.api_base)
            .field("connections", &self.connections)
            .field("debug_reconnects", &self.debug_reconnects)
            .field("proactive_refresh", &self.proactive_refresh)
            .finish_non_exhaustive()
    }
}

/// How long after `hello` to start a make-before-break refresh: 90 % of Slack's announced
/// `approximate_connection_time`; `None` when Slack announced none (or zero).
pub fn proactive_refresh_after(approximate_connection_time: Option<Duration>) -> Option<Duration> {
    approximate_connection_time
        .filter(|time| !time.is_zero())
        .map(|time| time / 10 * 9)
}

/// A warning when Slack counts more connections for the app (`hello`'s `num_connections`) than
/// `configured`: another process (a ghost) is probably using the same app token and receiving a
/// share of the events. During a make-before-break refresh pass the number of sockets the source
/// holds at that moment (old ones included), or the replacement reads as a ghost.
pub fn ghost_warning(configured: u8, num_connections: u32) -> Option<String> {
    (num_connections > u32::from(configured)).then(|| {
        format!(
            "Slack reports {num_connections} Socket Mode connections for this app but the source \
             keeps {configured}: another process may be using the same app token and receiving \
             some of its events"
        )
    })
}
