//! A TLS-terminating front on 127.0.0.1 for the plain test peers ([`crate::peer`],
//! [`crate::slack_peer`]): it accepts TLS with the configured server certificate (optionally
//! requiring a client certificate issued by a given CA) and forwards the decrypted bytes to a
//! plain port, both ways. It records every connection: accepted, handshake completed or failed
//! (and why), the SNI name the client sent, whether it presented a client certificate.
//!
//! [`FrontMode::Reset`] reads the ClientHello and drops the connection; [`FrontMode::Hang`]
//! accepts and never answers. Like the peers it runs on its own thread with its own runtime;
//! dropping the last handle stops it.

#![allow(dead_code)] // Not every test uses every helper.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

use crate::peer_support::{self, Control};
use crate::pki::Identity;

const WHO: &str = "tls front";

/// What the front does with a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrontMode {
    /// Terminate TLS and forward.
    Forward,
    /// Read the ClientHello, then drop the connection (a reset handshake).
    Reset,
    /// Accept the TCP connection and never answer (a handshake that times out).
    Hang,
}

/// One handshake the front saw through to its end.
#[derive(Clone, Debug)]
pub struct Handshake {
    /// The SNI name the client sent (none for an IP address).
    pub sni: Option<String>,
    /// Whether it completed; the server's error otherwise.
    pub outcome: Result<(), String>,
    /// Whether the client presented a certificate.
    pub client_cert: bool,
}

#[derive(Default)]
struct Shared {
    accepted: AtomicUsize,
    handshakes: Mutex<Vec<Handshake>>,
}

impl Shared {
    fn handshakes(&self) -> MutexGuard<'_, Vec<Handshake>> {
        self.handshakes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Handle to a running front. Clones share it; dropping the last one shuts it down.
#[derive(Clone)]
pub struct TlsFront {
    port: u16,
    shared: Arc<Shared>,
    _control: Arc<Control>,
}

impl TlsFront {
    /// Serve `identity` on a random port of 127.0.0.1 and forward to `127.0.0.1:upstream`.
    /// With `client_ca` (PEM), a client certificate issued by it is required.
    pub fn start(identity: &Identity, client_ca: Option<&str>, upstream: u16) -> TlsFront {
        TlsFront::start_with(identity, client_ca, upstream, FrontMode::Forward)
    }

    /// [`TlsFront::start`] with another [`FrontMode`].
    pub fn start_with(
        identity: &Identity,
        client_ca: Option<&str>,
        upstream: u16,
        mode: FrontMode,
    ) -> TlsFront {
        let acceptor = TlsAcceptor::from(Arc::new(server_config(identity, client_ca)));
        let (listener, port) = peer_support::bind_local(WHO);
        let shared = Arc::new(Shared::default());
        let thread_shared = Arc::clone(&shared);
        let (control, _) = peer_support::spawn_runtime_thread(
            WHO,
            format!("tls-front-{port}"),
            move || async move {
                let listener = match TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(e) => panic!("{WHO}: listener: {e}"),
                };
                peer_support::accept_loop(listener, move |tcp| {
                    let shared = Arc::clone(&thread_shared);
                    serve(tcp, acceptor.clone(), shared, upstream, mode)
                })
                .await;
            },
        );
        TlsFront {
            port,
            shared,
            _control: Arc::new(control),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// TCP connections accepted.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Handshakes that ended, in order.
    pub fn handshakes(&self) -> Vec<Handshake> {
        self.shared.handshakes().clone()
    }

    /// Handshakes that completed.
    pub fn completed(&self) -> usize {
        self.shared
            .handshakes()
            .iter()
            .filter(|h| h.outcome.is_ok())
            .count()
    }

    /// Poll `cond` every 10 ms until it holds or `timeout` passes.
    pub async fn wait_until(&self, timeout: Duration, cond: impl Fn(&TlsFront) -> bool) -> bool {
        peer_support::wait_until(self, timeout, cond).await
    }
}

fn server_config(identity: &Identity, client_ca: Option<&str>) -> ServerConfig {
    let builder = ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions");
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in rustls_pem_certs(pem) {
                roots.add(cert).expect("client CA");
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                Arc::new(tokio_rustls::rustls::crypto::ring::default_provider()),
            )
            .build()
            .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(vec![identity.cert.clone()], identity.key())
        .expect("server certificate");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

fn rustls_pem_certs(pem: &str) -> Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>> {
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("PEM certificates")
}

async fn serve(
    mut tcp: TcpStream,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    upstream: u16,
    mode: FrontMode,
) {
    shared.accepted.fetch_add(1, Ordering::SeqCst);
    match mode {
        FrontMode::Forward => {}
        FrontMode::Reset => {
            let mut hello = [0u8; 512];
            let _ = tcp.read(&mut hello).await;
            // A zero linger makes the close a reset (RST); it never blocks.
            #[allow(deprecated)]
            let _ = tcp.set_linger(Some(Duration::ZERO));
            return;
        }
        FrontMode::Hang => return std::future::pending().await,
    }
    let mut tls = match acceptor.accept(tcp).await {
        Ok(tls) => tls,
        Err(err) => {
            shared.handshakes().push(Handshake {
                sni: None,
                outcome: Err(err.to_string()),
                client_cert: false,
            });
            return;
        }
    };
    let (_, session) = tls.get_ref();
    shared.handshakes().push(Handshake {
        sni: session.server_name().map(str::to_owned),
        outcome: Ok(()),
        client_cert: session.peer_certificates().is_some_and(|c| !c.is_empty()),
    });
    let Ok(mut plain) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    let _ = plain.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
}
