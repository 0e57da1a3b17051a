//! Reading PEM text: certificate bundles and private keys (PKCS #8, PKCS #1 and SEC 1).

use rustls::pki_types::pem::{self, PemObject as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why PEM text gave nothing usable. Messages never quote key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PemError {
    /// No section of the wanted kind.
    Empty,
    /// A section is broken (what the parser said; for keys, only which kind of problem).
    Malformed(String),
}

/// Every `CERTIFICATE` section of `text`, in order (other sections are skipped); at least one.
pub fn certificates(text: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = CertificateDer::pem_slice_iter(text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| PemError::Malformed(err.to_string()))?;
    if certs.is_empty() {
        return Err(PemError::Empty);
    }
    Ok(certs)
}

/// The first private key section of `text`.
pub fn private_key(text: &[u8]) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_slice(text).map_err(|err| match err {
        pem::Error::NoItemsFound => PemError::Empty,
        pem::Error::Base64Decode(_) => PemError::Malformed("bad base64".to_owned()),
        pem::Error::MissingSectionEnd { .. } => {
            PemError::Malformed("a section has no END line".to_owned())
        }
        _ => PemError::Malformed("unreadable section".to_owned()),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn bundles_and_keys_are_read_and_garbage_is_refused() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.test".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let bundle = format!("{}{}", cert.pem(), cert.pem());
        assert_eq!(certificates(bundle.as_bytes()).unwrap().len(), 2);
        assert!(private_key(key.serialize_pem().as_bytes()).is_ok());
        assert_eq!(certificates(b"hello"), Err(PemError::Empty));
        assert_eq!(
            private_key(cert.pem().as_bytes()).unwrap_err(),
            PemError::Empty
        );
        let cut = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n";
        assert!(matches!(
            private_key(cut.as_bytes()),
            Err(PemError::Malformed(_))
        ));
    }
}
