//! The roots every outbound TLS connection trusts: the bundled Mozilla roots or the operating
//! system's store (`SWITCHBOARD_TLS_ROOTS`), plus the PEM bundle of `SWITCHBOARD_TLS_CA_FILE`.
//! Loaded at start-up; a problem stops start-up with a message naming the setting.

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;

use super::pem::{PemError, certificates};
use crate::config::{ConfigError, Settings, TlsRoots};

const ROOTS_SETTING: &str = "SWITCHBOARD_TLS_ROOTS";
const CA_FILE_SETTING: &str = "SWITCHBOARD_TLS_CA_FILE";

/// The root store of `settings`: the base roots of `tls_roots`, then every certificate of
/// `tls_ca_file`.
pub fn load_roots(settings: &Settings) -> Result<RootCertStore, ConfigError> {
    let mut roots = match settings.tls_roots {
        TlsRoots::Webpki => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
        TlsRoots::Native => native_roots()?,
    };
    if let Some(path) = &settings.tls_ca_file {
        let text = std::fs::read(path).map_err(|err| {
            invalid(
                CA_FILE_SETTING,
                format!("cannot read {}: {err}", path.display()),
            )
        })?;
        let certs = certificates(&text).map_err(|err| {
            invalid(
                CA_FILE_SETTING,
                format!("{}: {}", path.display(), pem_message(&err)),
            )
        })?;
        add_all(&mut roots, certs).map_err(|message| {
            invalid(CA_FILE_SETTING, format!("{}: {message}", path.display()))
        })?;
    }
    Ok(roots)
}

/// Adds every certificate as a trusted root; `Err` says which one cannot be one, and why.
pub fn add_all(
    roots: &mut RootCertStore,
    certs: Vec<CertificateDer<'static>>,
) -> Result<(), String> {
    for (i, cert) in certs.into_iter().enumerate() {
        roots
            .add(cert)
            .map_err(|err| format!("certificate {} cannot be a trusted root: {err}", i + 1))?;
    }
    Ok(())
}

fn native_roots() -> Result<RootCertStore, ConfigError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none found".to_owned(), ToString::to_string);
        return Err(invalid(
            ROOTS_SETTING,
            format!("`native`: no usable certificate in the operating system's store ({why})"),
        ));
    }
    Ok(roots)
}

fn pem_message(err: &PemError) -> String {
    match err {
        PemError::Empty => "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned(),
        PemError::Malformed(why) => format!("is not a readable PEM bundle: {why}"),
    }
}

fn invalid(setting: &'static str, message: String) -> ConfigError {
    ConfigError::Invalid { setting, message }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn settings(ca_file: Option<std::path::PathBuf>, roots: TlsRoots) -> Settings {
        Settings {
            tls_ca_file: ca_file,
            tls_roots: roots,
            ..Settings::default()
        }
    }

    #[test]
    fn the_bundled_roots_are_the_default() {
        let roots = load_roots(&Settings::default()).unwrap();
        assert_eq!(roots.len(), webpki_roots::TLS_SERVER_ROOTS.len());
    }

    #[test]
    fn a_ca_file_adds_its_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, ca.pem()).unwrap();
        let roots = load_roots(&settings(Some(path), TlsRoots::Webpki)).unwrap();
        assert_eq!(roots.len(), webpki_roots::TLS_SERVER_ROOTS.len() + 1);
    }

    #[test]
    fn a_missing_or_unreadable_ca_file_names_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = load_roots(&settings(Some(missing), TlsRoots::Webpki)).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("SWITCHBOARD_TLS_CA_FILE"), "{text}");
        assert!(text.contains("cannot read"), "{text}");

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate at all").unwrap();
        let text = load_roots(&settings(Some(garbage), TlsRoots::Webpki))
            .unwrap_err()
            .to_string();
        assert!(text.contains("SWITCHBOARD_TLS_CA_FILE"), "{text}");
        assert!(text.contains("holds no PEM certificate"), "{text}");

        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let text = load_roots(&settings(Some(broken), TlsRoots::Webpki))
            .unwrap_err()
            .to_string();
        assert!(text.contains("SWITCHBOARD_TLS_CA_FILE"), "{text}");
        assert!(text.contains("cannot be a trusted root"), "{text}");
    }
}
