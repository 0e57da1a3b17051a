//! Certificates made at test time with rcgen: a private CA, server certificates it issued for
//! `localhost`, for another name and an expired one for `localhost`, a client certificate, and
//! a second CA nobody trusts (to issue a client certificate the servers refuse).

#![allow(dead_code)] // Not every test uses every certificate.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    date_time_ymd,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate with its key, as PEM and as DER.
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Identity {
    /// The private key, for a rustls server or client configuration.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

/// Everything a TLS test needs.
pub struct TestPki {
    /// The private CA (PEM), trusted by configuration in the tests.
    pub ca_pem: String,
    /// Server certificate for `localhost` (and no IP address).
    pub localhost: Identity,
    /// Server certificate for `other.test` only.
    pub other_name: Identity,
    /// Server certificate for `localhost` that expired in 2021.
    pub expired: Identity,
    /// A client certificate issued by the CA.
    pub client: Identity,
    /// A client certificate issued by a CA nobody trusts.
    pub stranger: Identity,
}

/// Generates a fresh PKI (ECDSA P-256 keys; a few milliseconds).
pub fn generate() -> TestPki {
    let (ca_pem, ca) = authority("Switchboard test CA");
    let (_, stranger_ca) = authority("Untrusted test CA");
    TestPki {
        ca_pem,
        localhost: issue(&ca, &["localhost"], Validity::Current, false),
        other_name: issue(&ca, &["other.test"], Validity::Current, false),
        expired: issue(&ca, &["localhost"], Validity::Expired, false),
        client: issue(&ca, &["switchboard-client"], Validity::Current, true),
        stranger: issue(&stranger_ca, &["stranger-client"], Validity::Current, true),
    }
}

enum Validity {
    Current,
    Expired,
}

fn authority(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).expect("CA certificate");
    (cert.pem(), Issuer::new(params, key))
}

fn issue(
    ca: &Issuer<'static, KeyPair>,
    names: &[&str],
    validity: Validity,
    client: bool,
) -> Identity {
    let key = KeyPair::generate().expect("key");
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = CertificateParams::new(names.clone()).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, &names[0]);
    if let Validity::Expired = validity {
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2021, 1, 1);
    }
    if client {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    }
    let cert = params.signed_by(&key, ca).expect("certificate");
    Identity {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert: cert.der().clone(),
        key_der: key.serialize_der(),
    }
}
