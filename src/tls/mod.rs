//! TLS for outbound connections, without sockets: which roots are trusted (settings), the
//! material a generic source may add (`config.tls`), the client configurations built from both,
//! and what a failed handshake means for the restart policy.

mod failure;
mod material;
mod pem;
mod roots;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

pub use failure::{HandshakeFailure, classify, classify_io, timed_out, tls_error};
pub use material::{MaterialError, SourceTls, TlsInput};
pub use roots::load_roots;

/// The process's TLS client side: the trusted roots and the configuration every connection
/// without `config.tls` shares. Cheap to clone.
#[derive(Clone)]
pub struct TlsContext {
    roots: Arc<RootCertStore>,
    shared: Arc<ClientConfig>,
}

impl std::fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsContext")
            .field("roots", &self.roots.len())
            .finish_non_exhaustive()
    }
}

impl TlsContext {
    /// A context trusting `roots`.
    pub fn new(roots: RootCertStore) -> Result<TlsContext, rustls::Error> {
        let roots = Arc::new(roots);
        let shared = build(roots.clone(), None)?;
        Ok(TlsContext { roots, shared })
    }

    /// The crypto provider every configuration uses (ring).
    pub fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// The configuration of connections that bring no material of their own.
    pub fn shared(&self) -> Arc<ClientConfig> {
        self.shared.clone()
    }

    /// A configuration trusting the process's roots plus `extra_roots`, presenting `client`
    /// (certificate chain and key) when given.
    pub fn config_with(
        &self,
        extra_roots: &[CertificateDer<'static>],
        client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Result<Arc<ClientConfig>, rustls::Error> {
        if extra_roots.is_empty() && client.is_none() {
            return Ok(self.shared());
        }
        let mut roots = (*self.roots).clone();
        for cert in extra_roots {
            roots.add(cert.clone())?;
        }
        build(Arc::new(roots), client)
    }
}

/// HTTP/1.1 only (WebSocket upgrades and the Slack Web API call), safe default versions.
fn build(
    roots: Arc<RootCertStore>,
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<ClientConfig>, rustls::Error> {
    let builder = ClientConfig::builder_with_provider(TlsContext::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match client {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
