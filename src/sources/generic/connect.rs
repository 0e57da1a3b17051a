//! Everything about opening a connection that is computed once per revision: the URL, the
//! `hmac_bearer` signer and the outbound messages with their `{{secret:NAME}}` placeholders filled.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use serde_json::Value as Json;
use sha2::Sha256;

use super::AdapterError;
use crate::redact::redact_url;
use crate::sources::config::{AppPing, UpgradeAuth};

const OPEN: &str = "{{secret:";
const CLOSE: &str = "}}";

/// Signs `Authorization: Bearer <key_id>.<unix_ts>.<hex HMAC-SHA256(secret, "<key_id>.<unix_ts>")>`.
/// Holds the keyed MAC state, never the secret text; its `Debug` shows the key id only.
#[derive(Clone)]
pub(super) struct HmacBearer {
    key_id: String,
    mac: Hmac<Sha256>,
}

impl HmacBearer {
    /// Looks the secret up in `values` and keys the MAC with its UTF-8 bytes.
    pub(super) fn new(
        auth: &UpgradeAuth,
        values: &BTreeMap<String, String>,
    ) -> Result<HmacBearer, AdapterError> {
        let UpgradeAuth::HmacBearer { key_id, secret } = auth;
        if key_id.is_empty() || !key_id.bytes().all(|b| b.is_ascii_graphic() && b != b'.') {
            return Err(AdapterError::BadUpgradeAuth(
                "key_id must be non-empty printable ASCII without '.'",
            ));
        }
        let key = values
            .get(secret)
            .ok_or_else(|| AdapterError::UnknownSecret {
                field: "config.upgrade_auth.secret".to_owned(),
                name: secret.clone(),
            })?;
        let mac = Hmac::<Sha256>::new_from_slice(key.as_bytes())
            .map_err(|_| AdapterError::BadUpgradeAuth("the secret cannot key HMAC-SHA256"))?;
        Ok(HmacBearer {
            key_id: key_id.clone(),
            mac,
        })
    }

    /// The header value for a request made at `now_unix`.
    pub(super) fn header_value(&self, now_unix: u64) -> String {
        let signed = format!("{}.{now_unix}", self.key_id);
        let mut mac = self.mac.clone();
        mac.update(signed.as_bytes());
        let signature = hex::encode(mac.finalize().into_bytes());
        format!("Bearer {signed}.{signature}")
    }
}

impl fmt::Debug for HmacBearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HmacBearer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// The URL to connect to: `secret_url` when set (it carries credentials), else `url`; either must
/// be a `ws://` or `wss://` URL. Errors never repeat the URL.
pub(super) fn resolve_url(url: &str, secret_url: Option<&str>) -> Result<String, AdapterError> {
    let raw = secret_url.unwrap_or(url);
    let parsed =
        url::Url::parse(raw).map_err(|err| AdapterError::BadUrl(format!("is not a URL: {err}")))?;
    match parsed.scheme() {
        "ws" | "wss" => Ok(raw.to_owned()),
        _ => Err(AdapterError::BadUrl(
            "must be a ws:// or wss:// URL".to_owned(),
        )),
    }
}

/// The user info of `url` as an `Authorization: Basic` value (user name and password
/// percent-decoded, joined by `:`), and `url` without it. A URL without user info is returned
/// as it is, with no header.
pub(super) fn take_user_info(url: &str) -> (String, Option<String>) {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return (url.to_owned(), None);
    };
    if parsed.username().is_empty() && parsed.password().is_none() {
        return (url.to_owned(), None);
    }
    let decode = |text: &str| percent_encoding::percent_decode_str(text).collect::<Vec<u8>>();
    let mut credentials = decode(parsed.username());
    credentials.push(b':');
    credentials.extend(decode(parsed.password().unwrap_or_default()));
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    let value = format!("Basic {}", BASE64.encode(credentials));
    (parsed.to_string(), Some(value))
}

/// `url` for logs: [`redact_url`], then any user name and the whole query hidden too.
pub(super) fn shown_url(url: &str) -> String {
    let redacted = redact_url(url);
    let Ok(mut parsed) = url::Url::parse(&redacted) else {
        return redacted;
    };
    let had_query = parsed.query().is_some();
    parsed.set_query(None);
    parsed.set_fragment(None);
    if !parsed.username().is_empty() {
        let _ = parsed.set_username("***");
    }
    let mut shown = parsed.to_string();
    if had_query {
        shown.push_str("?***");
    }
    shown
}

/// Renders every `on_connect` message (see [`render`]).
pub(super) fn on_connect_messages(
    messages: &[Json],
    values: &BTreeMap<String, String>,
) -> Result<Vec<String>, AdapterError> {
    messages
        .iter()
        .enumerate()
        .map(|(i, message)| render(message, values, &format!("config.on_connect[{i}]")))
        .collect()
}

/// Renders the `app_ping` message; an interval of zero counts as one second (a zero-period timer
/// would spin).
pub(super) fn app_ping(
    ping: Option<&AppPing>,
    values: &BTreeMap<String, String>,
) -> Result<Option<(Duration, String)>, AdapterError> {
    ping.map(|ping| {
        let text = render(&ping.message, values, "config.app_ping.message")?;
        Ok((Duration::from_secs(ping.interval_s.max(1).into()), text))
    })
    .transpose()
}

/// The text of an outbound message: a JSON string is sent as is with its placeholders replaced by
/// the raw secrets; any other JSON value is sent as its JSON text, its placeholders replaced inside
/// string content (keys included) so that the secrets come out escaped and the text stays JSON.
pub(super) fn render(
    message: &Json,
    values: &BTreeMap<String, String>,
    field: &str,
) -> Result<String, AdapterError> {
    let unknown = |name: String| AdapterError::UnknownSecret {
        field: field.to_owned(),
        name,
    };
    match message {
        Json::String(text) => fill(text, values).map_err(unknown),
        other => Ok(fill_json(other, values).map_err(unknown)?.to_string()),
    }
}

fn fill_json(value: &Json, values: &BTreeMap<String, String>) -> Result<Json, String> {
    Ok(match value {
        Json::String(text) => Json::String(fill(text, values)?),
        Json::Array(items) => Json::Array(
            items
                .iter()
                .map(|item| fill_json(item, values))
                .collect::<Result<_, _>>()?,
        ),
        Json::Object(map) => Json::Object(
            map.iter()
                .map(|(key, item)| Ok((fill(key, values)?, fill_json(item, values)?)))
                .collect::<Result<_, String>>()?,
        ),
        scalar => scalar.clone(),
    })
}

/// Replaces every `{{secret:NAME}}` of `text` (name trimmed, as `validate::placeholders` reads
/// it) in one left-to-right pass: a secret's own text is never expanded. `Err` names the first
/// unknown secret.
pub(super) fn fill(text: &str, values: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        let (before, tail) = rest.split_at(start);
        let after = &tail[OPEN.len()..];
        let Some(end) = after.find(CLOSE) else {
            break;
        };
        let name = after[..end].trim();
        let secret = values.get(name).ok_or_else(|| name.to_owned())?;
        out.push_str(before);
        out.push_str(secret);
        rest = &after[end + CLOSE.len()..];
    }
    out.push_str(rest);
    Ok(out)
}
