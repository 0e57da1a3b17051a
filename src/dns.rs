//! Resolving an outbound destination under the network policy: the host of a URL is looked up
//! and every address it resolves to is checked ([`NetworkPolicy::check_resolved`]) before
//! anything connects. Used by every outbound connection (source sockets, the Slack Web API call,
//! Slack sockets) and when a `ws://` source with a host name is saved.

use std::net::SocketAddr;
use std::time::Duration;

use url::Url;

use crate::netpolicy::{NetworkPolicy, PolicyError};

/// How long one lookup may take.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a destination cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The network policy refuses the URL or an address it resolved to (terminal).
    #[error("destination refused: {0}")]
    Refused(#[from] PolicyError),
    /// The lookup failed or timed out (may be transient).
    #[error("cannot resolve {host}: {reason}")]
    Lookup {
        /// The host name looked up.
        host: String,
        /// What the resolver said.
        reason: String,
    },
}

/// The host of `url` without IPv6 brackets, and its port (the scheme's default when absent).
pub fn host_and_port(url: &Url) -> Result<(String, u16), PolicyError> {
    let host = url.host_str().ok_or(PolicyError::MissingHost)?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    Ok((host, port))
}

/// Applies the URL rules, resolves its host and checks every address: the addresses to connect
/// to, in the resolver's order (each of them allowed).
pub async fn resolve_checked(
    policy: &NetworkPolicy,
    url: &Url,
) -> Result<Vec<SocketAddr>, ResolveError> {
    policy.check_endpoint(url)?;
    let (host, port) = host_and_port(url)?;
    let addrs = lookup(&host, port).await?;
    policy.check_resolved(url, &addrs)?;
    Ok(addrs)
}

/// Looks `host` up (bounded by [`LOOKUP_TIMEOUT`]); no address at all is an error too.
pub async fn lookup(host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
    let failed = |reason: String| ResolveError::Lookup {
        host: host.to_owned(),
        reason,
    };
    let found = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| failed(format!("no answer within {} s", LOOKUP_TIMEOUT.as_secs())))?
        .map_err(|err| failed(err.to_string()))?;
    let addrs: Vec<SocketAddr> = found.collect();
    if addrs.is_empty() {
        return Err(failed("no addresses".to_owned()));
    }
    Ok(addrs)
}

/// The check a `ws://` source URL gets when it is saved: a host name (other than `localhost`)
/// must resolve, and only to private or loopback addresses, as the policy's message promises.
/// `Err` is the message for `config.url`. URLs whose rule needs no DNS pass (they were checked
/// without it).
pub async fn check_unencrypted_host(policy: &NetworkPolicy, url: &str) -> Result<(), String> {
    let Ok(url) = Url::parse(url) else {
        return Ok(());
    };
    let Some((host, port)) = policy.needs_resolution(&url) else {
        return Ok(());
    };
    let addrs = lookup(&host, port).await.map_err(|err| {
        format!(
            "{err}; unencrypted {}:// is only allowed to hosts that resolve to private or \
             loopback addresses",
            url.scheme()
        )
    })?;
    policy
        .check_resolved(&url, &addrs)
        .map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const OPEN: NetworkPolicy = NetworkPolicy {
        allow_private: true,
    };

    #[tokio::test]
    async fn localhost_resolves_and_is_checked() {
        let url = Url::parse("ws://localhost:9/").unwrap();
        let addrs = resolve_checked(&OPEN, &url).await.unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
        let strict = NetworkPolicy::default();
        let err = resolve_checked(&strict, &Url::parse("wss://[::1]:9/").unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, ResolveError::Refused(_)), "{err}");
    }

    #[tokio::test]
    async fn an_unresolvable_ws_host_is_not_taken_for_private() {
        let err = check_unencrypted_host(&OPEN, "ws://no-such-host.invalid/ws")
            .await
            .unwrap_err();
        assert!(
            err.starts_with("cannot resolve no-such-host.invalid"),
            "{err}"
        );
        assert!(err.contains("private or loopback"), "{err}");
        assert_eq!(
            check_unencrypted_host(&OPEN, "ws://localhost:9/ws").await,
            Ok(())
        );
        assert_eq!(
            check_unencrypted_host(&OPEN, "wss://no-such-host.invalid/ws").await,
            Ok(())
        );
    }
}
