//! `config.tls` of generic sources: its secret `client_key` is taken out of the request (and
//! dropped with its certificate), and the material is checked when the source is saved, every
//! problem named `config.tls.<field>`. Pure.

use serde_json::{Map, Value};

use super::config::{GenericSettings, SourceSecrets};
use crate::tls::{SourceTls, TlsInput};
use crate::validation::Errors;

/// Removes `config.tls.client_key` from a `config` object: the key if one is given (a wrongly
/// typed one is reported), `None` to keep what is stored.
pub fn take_client_key(
    config: &mut Map<String, Value>,
    errors: &mut Errors,
    patching: bool,
) -> Option<Option<String>> {
    let Some(Value::Object(tls)) = config.get_mut("tls") else {
        return None;
    };
    match tls.remove("client_key") {
        None => None,
        // A PATCH's `null` removes the stored key (its certificate must go too).
        Some(Value::Null) => patching.then_some(None),
        Some(Value::String(key)) => Some(Some(key)),
        Some(_) => {
            errors.add("config.tls.client_key", "must be a PEM string");
            None
        }
    }
}

/// A stored key goes with its certificate: when `config` has no `tls.client_cert` any more and
/// no new key was given, the stored key is dropped. (A key given without a certificate is
/// reported by [`check_tls`].)
pub fn reconcile_client_key(
    config: &Map<String, Value>,
    key_given: bool,
    secrets: &mut SourceSecrets,
) {
    let has_cert = config
        .get("tls")
        .and_then(|tls| tls.get("client_cert"))
        .is_some_and(|cert| !cert.is_null());
    if !has_cert && !key_given {
        secrets.client_key = None;
    }
}

/// Checks `config.tls` with the key that will be stored: parsable PEM, a key matching its
/// certificate, a valid server name, and a `wss://` URL (TLS settings of a `ws://` source would
/// never apply).
pub fn check_tls(settings: &GenericSettings, secrets: &SourceSecrets, errors: &mut Errors) {
    let Some(tls) = &settings.tls else {
        if secrets.client_key.is_some() {
            errors.add("config.tls.client_key", "needs config.tls.client_cert");
        }
        return;
    };
    if !settings.url.starts_with("wss://") {
        errors.add("config.tls", "applies to wss:// URLs only");
    }
    let input = TlsInput {
        ca_pem: tls.ca_pem.as_deref(),
        client_cert: tls.client_cert.as_deref(),
        client_key: secrets.client_key.as_deref(),
        server_name: tls.server_name.as_deref(),
    };
    if let Err(problems) = SourceTls::parse(input) {
        for (field, message) in problems {
            errors.add(format!("config.tls.{field}"), message);
        }
    }
}
