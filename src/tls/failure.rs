//! What a failed TLS handshake means. A certificate the client refuses (unknown issuer, expired
//! or not yet valid, issued for another name, otherwise invalid), a server that refuses our
//! certificate or lack of one, and an incompatible server are terminal: retrying cannot fix
//! them. A handshake that times out, is reset or breaks off is transient.

use std::io;

use rustls::{AlertDescription, CertificateError, Error as TlsError};

/// A classified handshake failure, with a status detail that says which failure and which name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeFailure {
    /// Whether retrying is pointless.
    pub terminal: bool,
    /// What happened, for the source status.
    pub detail: String,
}

impl HandshakeFailure {
    fn terminal(detail: String) -> HandshakeFailure {
        HandshakeFailure {
            terminal: true,
            detail,
        }
    }

    fn transient(detail: String) -> HandshakeFailure {
        HandshakeFailure {
            terminal: false,
            detail,
        }
    }
}

/// The rustls error inside an I/O error, if any (tokio-rustls wraps them so).
pub fn tls_error(err: &io::Error) -> Option<&TlsError> {
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<TlsError>())
}

/// Classifies an I/O error of a handshake with `name` (the name verified: the URL's host or the
/// configured server name).
pub fn classify_io(err: &io::Error, name: &str) -> HandshakeFailure {
    if let Some(tls) = tls_error(err) {
        return classify(tls, name);
    }
    let what = match err.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
            "the connection was reset".to_owned()
        }
        io::ErrorKind::UnexpectedEof | io::ErrorKind::BrokenPipe => {
            "the server closed the connection".to_owned()
        }
        io::ErrorKind::TimedOut => "it timed out".to_owned(),
        _ => err.to_string(),
    };
    HandshakeFailure::transient(format!("TLS handshake with {name} failed: {what}"))
}

/// A handshake with `name` that did not finish within `seconds`.
pub fn timed_out(name: &str, seconds: u64) -> HandshakeFailure {
    HandshakeFailure::transient(format!(
        "TLS handshake with {name} timed out after {seconds} s"
    ))
}

/// Classifies a rustls error of a handshake with `name`.
pub fn classify(err: &TlsError, name: &str) -> HandshakeFailure {
    match err {
        TlsError::InvalidCertificate(cert) => HandshakeFailure::terminal(certificate(cert, name)),
        TlsError::AlertReceived(alert) if refuses_us(*alert) => {
            HandshakeFailure::terminal(format!(
                "TLS: {name} refused the handshake ({alert:?} alert): it wants a client \
                 certificate it trusts (config.tls.client_cert and client_key)"
            ))
        }
        TlsError::PeerIncompatible(why) => HandshakeFailure::terminal(format!(
            "TLS: {name} has no protocol version or cipher suite in common with us ({why:?})"
        )),
        TlsError::NoCertificatesPresented => {
            HandshakeFailure::terminal(format!("TLS: {name} presented no certificate"))
        }
        other => HandshakeFailure::transient(format!("TLS handshake with {name} failed: {other}")),
    }
}

/// Alerts a server sends when it refuses the client's certificate (or its lack of one).
fn refuses_us(alert: AlertDescription) -> bool {
    use AlertDescription::*;
    matches!(
        alert,
        CertificateRequired
            | BadCertificate
            | UnsupportedCertificate
            | CertificateRevoked
            | CertificateExpired
            | CertificateUnknown
            | UnknownCA
            | AccessDenied
            | HandshakeFailure
    )
}

fn certificate(err: &CertificateError, name: &str) -> String {
    use CertificateError::*;
    match err {
        UnknownIssuer => format!(
            "TLS: unknown issuer: the certificate of {name} is not signed by a trusted \
             authority (add its CA with config.tls.ca_pem or SWITCHBOARD_TLS_CA_FILE)"
        ),
        ExpiredContext { time, not_after } => format!(
            "TLS: certificate expired: the certificate of {name} was valid until {} (now {})",
            rfc3339(not_after.as_secs()),
            rfc3339(time.as_secs())
        ),
        Expired => format!("TLS: certificate expired: the certificate of {name} has expired"),
        NotValidYetContext { time, not_before } => format!(
            "TLS: certificate not yet valid: the certificate of {name} is valid from {} (now {})",
            rfc3339(not_before.as_secs()),
            rfc3339(time.as_secs())
        ),
        NotValidYet => format!("TLS: certificate not yet valid: the certificate of {name}"),
        NotValidForNameContext {
            expected,
            presented,
        } => format!(
            "TLS: name mismatch: the certificate presented for {} is for {} (set \
             config.tls.server_name when the feed is reached by another name)",
            expected.to_str(),
            if presented.is_empty() {
                "no name".to_owned()
            } else {
                presented
                    .iter()
                    .map(|name| plain_name(name))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ),
        NotValidForName => format!("TLS: name mismatch: the certificate is not valid for {name}"),
        other => format!("TLS: invalid certificate from {name}: {other:?}"),
    }
}

/// A name as webpki reports it (`DnsName("a.test")`, `IpAddress(10.0.0.1)`), without the
/// wrapping.
fn plain_name(reported: &str) -> &str {
    for prefix in ["DnsName(\"", "UniformResourceIdentifier(\""] {
        if let Some(name) = reported
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix("\")"))
        {
            return name;
        }
    }
    reported
        .strip_prefix("IpAddress(")
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or(reported)
}

fn rfc3339(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .map_or_else(|| format!("{secs} s"), |at| at.to_rfc3339())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rustls::pki_types::{ServerName, UnixTime};

    #[test]
    fn certificate_problems_are_terminal_and_say_which() {
        let unknown = classify(
            &TlsError::InvalidCertificate(CertificateError::UnknownIssuer),
            "feed.test",
        );
        assert!(unknown.terminal);
        assert!(
            unknown.detail.contains("unknown issuer"),
            "{}",
            unknown.detail
        );
        assert!(unknown.detail.contains("feed.test"));

        let expired = classify(
            &TlsError::InvalidCertificate(CertificateError::ExpiredContext {
                time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(86_400)),
                not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(0)),
            }),
            "feed.test",
        );
        assert!(expired.terminal);
        assert!(
            expired.detail.contains("certificate expired")
                && expired.detail.contains("1970-01-01T00:00:00+00:00"),
            "{}",
            expired.detail
        );

        let mismatch = classify(
            &TlsError::InvalidCertificate(CertificateError::NotValidForNameContext {
                expected: ServerName::try_from("feed.test").unwrap().to_owned(),
                presented: vec![
                    "DnsName(\"other.test\")".to_owned(),
                    "IpAddress(10.0.0.1)".to_owned(),
                ],
            }),
            "feed.test",
        );
        assert!(mismatch.terminal);
        assert!(
            mismatch.detail.contains("name mismatch"),
            "{}",
            mismatch.detail
        );
        assert!(
            mismatch
                .detail
                .contains("presented for feed.test is for other.test, 10.0.0.1"),
            "{}",
            mismatch.detail
        );
    }

    #[test]
    fn refusals_are_terminal_and_breaks_are_transient() {
        let refused = classify(
            &TlsError::AlertReceived(AlertDescription::CertificateRequired),
            "feed.test",
        );
        assert!(refused.terminal, "{}", refused.detail);
        let reset = classify_io(
            &io::Error::from(io::ErrorKind::ConnectionReset),
            "feed.test",
        );
        assert!(!reset.terminal);
        assert!(reset.detail.contains("reset"), "{}", reset.detail);
        let eof = classify_io(&io::Error::from(io::ErrorKind::UnexpectedEof), "feed.test");
        assert!(!eof.terminal);
        assert!(!timed_out("feed.test", 10).terminal);
        let wrapped = io::Error::new(
            io::ErrorKind::InvalidData,
            TlsError::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert!(classify_io(&wrapped, "feed.test").terminal);
        let garbage = classify(&TlsError::DecryptError, "feed.test");
        assert!(!garbage.terminal);
    }
}
