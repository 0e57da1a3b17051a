//! The TLS material a generic source brings in `config.tls`: extra trusted roots, a client
//! certificate with its key, and a server name. Parsed and checked when the source is saved
//! (every problem names its field) and again when it is compiled; the client configuration built
//! from it is made once per source revision and shared by its connections.

use std::fmt;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use super::TlsContext;
use super::pem::{PemError, certificates, private_key};

/// The material as given: PEM texts and a name, each optional.
#[derive(Clone, Copy, Default)]
pub struct TlsInput<'a> {
    /// Extra trusted roots for this source only.
    pub ca_pem: Option<&'a str>,
    /// The client certificate chain, leaf first.
    pub client_cert: Option<&'a str>,
    /// The client certificate's private key (secret).
    pub client_key: Option<&'a str>,
    /// The name for SNI and certificate verification instead of the URL's host.
    pub server_name: Option<&'a str>,
}

/// A problem with one field of the material: `field` is `ca_pem`, `client_cert`, `client_key`
/// or `server_name`. The message never quotes key material.
pub type MaterialError = (&'static str, String);

/// The parsed material of one source revision. Its `Debug` shows counts and the name only.
pub struct SourceTls {
    ca: Vec<CertificateDer<'static>>,
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    server_name: Option<ServerName<'static>>,
    config: OnceLock<Arc<ClientConfig>>,
}

impl fmt::Debug for SourceTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceTls")
            .field("ca_certificates", &self.ca.len())
            .field("client_certificate", &self.client.is_some())
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl SourceTls {
    /// Parses and checks everything: every CA certificate usable as a root, the client
    /// certificate and key given together and matching, the server name a DNS name or an IP
    /// address. `Err` lists every problem.
    pub fn parse(input: TlsInput<'_>) -> Result<SourceTls, Vec<MaterialError>> {
        let mut errors = Vec::new();
        let ca = input
            .ca_pem
            .and_then(|text| note(&mut errors, "ca_pem", roots(text)))
            .unwrap_or_default();
        let client = identity(input.client_cert, input.client_key, &mut errors);
        let server_name = input.server_name.and_then(|name| {
            let parsed = ServerName::try_from(name.to_owned())
                .map_err(|_| "must be a DNS name or an IP address".to_owned());
            note(&mut errors, "server_name", parsed)
        });
        if errors.is_empty() {
            Ok(SourceTls {
                ca,
                client,
                server_name,
                config: OnceLock::new(),
            })
        } else {
            Err(errors)
        }
    }

    /// The name to present (SNI) and verify instead of the URL's host, if configured.
    pub fn server_name(&self) -> Option<&ServerName<'static>> {
        self.server_name.as_ref()
    }

    /// The client configuration of this source: `context`'s roots plus the source's, and its
    /// client certificate. Built on first use, then shared.
    pub fn client_config(&self, context: &TlsContext) -> Result<Arc<ClientConfig>, rustls::Error> {
        if let Some(config) = self.config.get() {
            return Ok(config.clone());
        }
        let client = self
            .client
            .as_ref()
            .map(|(chain, key)| (chain.clone(), key.clone_key()));
        let config = context.config_with(&self.ca, client)?;
        Ok(self.config.get_or_init(|| config).clone())
    }
}

fn note<T>(
    errors: &mut Vec<MaterialError>,
    field: &'static str,
    result: Result<T, String>,
) -> Option<T> {
    result.map_err(|message| errors.push((field, message))).ok()
}

/// The certificates of a CA bundle, each usable as a trusted root.
fn roots(text: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = certificates(text.as_bytes()).map_err(|err| pem_message(&err, "certificate"))?;
    super::roots::add_all(&mut RootCertStore::empty(), certs.clone())?;
    Ok(certs)
}

/// The client certificate chain and its key, when both are given and they match.
fn identity(
    cert: Option<&str>,
    key: Option<&str>,
    errors: &mut Vec<MaterialError>,
) -> Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let (cert, key) = match (cert, key) {
        (None, None) => return None,
        (Some(_), None) => {
            errors.push(("client_key", "is required with client_cert".to_owned()));
            return None;
        }
        (None, Some(_)) => {
            errors.push(("client_key", "needs client_cert".to_owned()));
            return None;
        }
        (Some(cert), Some(key)) => (cert, key),
    };
    let chain = note(errors, "client_cert", leaf_first_chain(cert));
    let key = note(
        errors,
        "client_key",
        private_key(key.as_bytes()).map_err(|err| pem_message(&err, "private key")),
    );
    let (chain, key) = (chain?, key?);
    let provider = TlsContext::provider();
    match rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider) {
        Ok(_) => Some((chain, key)),
        Err(rustls::Error::InconsistentKeys(_)) => {
            let message = "does not match the public key of client_cert".to_owned();
            errors.push(("client_key", message));
            None
        }
        Err(_) => {
            let message = "is not a supported private key (RSA, ECDSA P-256/P-384 or Ed25519)";
            errors.push(("client_key", message.to_owned()));
            None
        }
    }
}

/// A certificate chain whose first certificate parses as an end-entity certificate.
fn leaf_first_chain(text: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = certificates(text.as_bytes()).map_err(|err| pem_message(&err, "certificate"))?;
    let leaf = chain.first().ok_or("holds no certificate")?;
    rustls::server::ParsedCertificate::try_from(leaf)
        .map_err(|err| format!("the first certificate cannot be parsed: {err}"))?;
    Ok(chain)
}

fn pem_message(err: &PemError, what: &str) -> String {
    match err {
        PemError::Empty => format!("holds no PEM {what}"),
        PemError::Malformed(why) => format!("is not readable PEM: {why}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    struct Pki {
        ca: String,
        cert: String,
        key: String,
        other_key: String,
    }

    fn pki() -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["client.test".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        Pki {
            ca: ca.pem(),
            cert: cert.pem(),
            key: key.serialize_pem(),
            other_key: rcgen::KeyPair::generate().unwrap().serialize_pem(),
        }
    }

    fn fields(result: Result<SourceTls, Vec<MaterialError>>) -> Vec<&'static str> {
        result
            .unwrap_err()
            .into_iter()
            .map(|(field, _)| field)
            .collect()
    }

    #[test]
    fn complete_material_parses_and_builds_one_config() {
        let pki = pki();
        let tls = SourceTls::parse(TlsInput {
            ca_pem: Some(&pki.ca),
            client_cert: Some(&pki.cert),
            client_key: Some(&pki.key),
            server_name: Some("feed.internal"),
        })
        .unwrap();
        assert_eq!(
            tls.server_name().map(ServerName::to_str).as_deref(),
            Some("feed.internal")
        );
        let debug = format!("{tls:?}");
        assert!(!debug.contains("PRIVATE"), "{debug}");
        let context = TlsContext::new(RootCertStore::empty()).unwrap();
        let first = tls.client_config(&context).unwrap();
        let again = tls.client_config(&context).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert!(!Arc::ptr_eq(&first, &context.shared()));
        assert!(first.client_auth_cert_resolver.has_certs());
    }

    #[test]
    fn every_problem_names_its_field() {
        let pki = pki();
        let bad_ca = SourceTls::parse(TlsInput {
            ca_pem: Some("not PEM"),
            ..TlsInput::default()
        });
        assert_eq!(fields(bad_ca), ["ca_pem"]);
        let lone_cert = SourceTls::parse(TlsInput {
            client_cert: Some(&pki.cert),
            ..TlsInput::default()
        });
        assert_eq!(fields(lone_cert), ["client_key"]);
        let lone_key = SourceTls::parse(TlsInput {
            client_key: Some(&pki.key),
            ..TlsInput::default()
        });
        assert_eq!(fields(lone_key), ["client_key"]);
        let mismatch = SourceTls::parse(TlsInput {
            client_cert: Some(&pki.cert),
            client_key: Some(&pki.other_key),
            ..TlsInput::default()
        })
        .unwrap_err();
        assert_eq!(mismatch.len(), 1);
        assert_eq!(mismatch[0].0, "client_key");
        assert!(
            mismatch[0].1.contains("does not match"),
            "{}",
            mismatch[0].1
        );
        assert!(!mismatch[0].1.contains("PRIVATE"));
        let garbage = SourceTls::parse(TlsInput {
            client_cert: Some("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            client_key: Some("nothing"),
            server_name: Some("not a name!"),
            ..TlsInput::default()
        });
        assert_eq!(
            fields(garbage),
            ["client_cert", "client_key", "server_name"]
        );
    }
}
