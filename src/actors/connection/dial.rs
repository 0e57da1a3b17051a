//! Reaching an outbound destination, for every outbound connection (source sockets, the Slack
//! `apps.connections.open` call, Slack sockets): resolve the host and apply the network policy to
//! every address ([`crate::dns::resolve_checked`]), connect TCP to a checked address (never to
//! anything resolved later), and for `wss://` and `https://` make the TLS handshake here, with
//! SNI and certificate verification on the URL's host (or the configured server name). Every
//! failure is classified for the restart policy. awc then gets the connected socket
//! ([`Preconnected`]) and a URL it cannot connect anywhere else with ([`awc_target`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use url::Url;

use super::outbound::{Outbound, Preconnected, TlsErrorSlot};
use super::reports::DownReason;
use crate::dns::{ResolveError, host_and_port, resolve_checked};
use crate::netpolicy::NetworkPolicy;
use crate::tls::{HandshakeFailure, classify, classify_io, timed_out};

/// How long a TCP connect may take, per address.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS side of a `wss://` or `https://` destination.
pub struct TlsTarget {
    /// Roots, client certificate, ALPN.
    pub config: Arc<ClientConfig>,
    /// The name to present and verify instead of the URL's host.
    pub server_name: Option<ServerName<'static>>,
}

/// A connected (and, for TLS, handshaken) socket to a checked address.
pub struct Dialed {
    /// The socket.
    pub socket: Outbound,
    /// The address it is connected to.
    pub addr: SocketAddr,
    /// Where the socket keeps a TLS error seen after the handshake.
    pub tls_errors: Option<TlsErrorSlot>,
    /// The name TLS verified (for details), or the host.
    pub name: String,
}

/// Resolves, checks, connects and (for `wss://`/`https://`) shakes hands.
pub async fn dial(
    policy: &NetworkPolicy,
    url: &Url,
    tls: Option<TlsTarget>,
) -> Result<Dialed, DownReason> {
    let addrs = resolve_checked(policy, url)
        .await
        .map_err(|err| match err {
            ResolveError::Refused(_) => DownReason::Terminal(err.to_string()),
            ResolveError::Lookup { .. } => DownReason::Transient(err.to_string()),
        })?;
    let (host, _) = host_and_port(url).map_err(|e| DownReason::Terminal(e.to_string()))?;
    let (tcp, addr) = connect_any(&host, &addrs).await?;
    if !matches!(url.scheme(), "wss" | "https") {
        return Ok(Dialed {
            socket: Outbound::Plain(tcp),
            addr,
            tls_errors: None,
            name: host,
        });
    }
    let tls = tls.ok_or_else(|| DownReason::Terminal("no TLS configuration".to_owned()))?;
    let server_name = match tls.server_name {
        Some(name) => name,
        None => ServerName::try_from(host.clone())
            .map_err(|_| DownReason::Terminal(format!("TLS: {host} is not a valid name")))?,
    };
    let name = server_name.to_str().into_owned();
    let connector = tokio_rustls::TlsConnector::from(tls.config);
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(server_name, tcp))
        .await
        .map_err(|_| down(timed_out(&name, HANDSHAKE_TIMEOUT.as_secs())))?
        .map_err(|err| down(classify_io(&err, &name)))?;
    let slot = TlsErrorSlot::default();
    Ok(Dialed {
        socket: Outbound::Tls(Box::new(stream), slot.clone()),
        addr,
        tls_errors: Some(slot),
        name,
    })
}

impl Dialed {
    /// The TLS error seen after the handshake, classified, if there was one: it explains the
    /// failure awc reports better than awc's own error (a server refusing our certificate).
    pub fn tls_failure(slot: Option<&TlsErrorSlot>, name: &str) -> Option<DownReason> {
        let err = slot?.get()?;
        Some(down(classify(err, name)))
    }
}

fn down(failure: HandshakeFailure) -> DownReason {
    if failure.terminal {
        DownReason::Terminal(failure.detail)
    } else {
        DownReason::Transient(failure.detail)
    }
}

/// Connects to the first address that answers, in order.
async fn connect_any(
    host: &str,
    addrs: &[SocketAddr],
) -> Result<(TcpStream, SocketAddr), DownReason> {
    let mut last = String::from("no address");
    for &addr in addrs {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => {
                let _ = tcp.set_nodelay(true);
                return Ok((tcp, addr));
            }
            Ok(Err(err)) => last = format!("{addr}: {err}"),
            Err(_) => last = format!("{addr}: no answer within {} s", CONNECT_TIMEOUT.as_secs()),
        }
    }
    Err(DownReason::Transient(format!(
        "cannot connect to {host} ({last})"
    )))
}

/// What awc is given for a request over a [`Preconnected`] socket: the URL with a plain scheme
/// (`ws`/`http`: the socket already speaks TLS), without user info or fragment, and the `Host`
/// header of the original URL (its port unless it is the scheme's default).
pub fn awc_target(url: &Url) -> (String, String) {
    let mut plain = url.clone();
    let scheme = match url.scheme() {
        "wss" => "ws",
        "https" => "http",
        other => other,
    };
    let _ = plain.set_scheme(scheme);
    let _ = plain.set_username("");
    let _ = plain.set_password(None);
    plain.set_fragment(None);
    if let Some(port) = url.port_or_known_default() {
        let _ = plain.set_port(Some(port));
    }
    let host = url.host_str().unwrap_or_default();
    let host_header = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    (plain.to_string(), host_header)
}

/// An awc client that speaks over `socket` only: HTTP/1.1, no redirects, bounded by `timeout`.
pub fn awc_client(socket: Outbound, timeout: Duration) -> awc::Client {
    awc::Client::builder()
        .connector(
            awc::Connector::new()
                .connector(Preconnected::new(socket))
                .limit(0)
                .timeout(timeout)
                .max_http_version(awc::http::Version::HTTP_11),
        )
        .max_http_version(awc::http::Version::HTTP_11)
        .disable_redirects()
        .timeout(timeout)
        .finish()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn awc_gets_a_plain_url_and_the_original_host() {
        let target = |text: &str| awc_target(&Url::parse(text).unwrap());
        assert_eq!(
            target("wss://u:p@feed.test/ws?a=1#frag"),
            (
                "ws://feed.test:443/ws?a=1".to_owned(),
                "feed.test".to_owned()
            )
        );
        assert_eq!(
            target("wss://feed.test:8443/ws"),
            (
                "ws://feed.test:8443/ws".to_owned(),
                "feed.test:8443".to_owned()
            )
        );
        assert_eq!(
            target("https://[::1]:9/api/x"),
            ("http://[::1]:9/api/x".to_owned(), "[::1]:9".to_owned())
        );
        assert_eq!(
            target("ws://127.0.0.1/ws"),
            ("ws://127.0.0.1/ws".to_owned(), "127.0.0.1".to_owned())
        );
    }
}
