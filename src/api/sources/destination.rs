//! The part of a source URL's check that needs DNS: an unencrypted `ws://` URL with a host name
//! is allowed (with `SWITCHBOARD_ALLOW_PRIVATE_NETWORKS=true`) only when the name resolves, and
//! only to private or loopback addresses. Checked when a source is created or its URL changes;
//! every connect checks again after its own resolution.

use entity::websocket_source;
use serde_json::Value;

use crate::api::state::AppState;
use crate::dns::check_unencrypted_host;
use crate::error::ApiError;
use crate::netpolicy::NetworkPolicy;
use crate::sources::config::StoredConfig;

/// A 422 naming `config.url` when `row`'s URL (new, or changed from `previous`'s) is `ws://` to
/// a host that does not resolve to private or loopback addresses only.
pub async fn check_destination(
    state: &AppState,
    row: &websocket_source::Model,
    previous: Option<&websocket_source::Model>,
) -> Result<(), ApiError> {
    let Some(url) = url_of(row) else {
        return Ok(());
    };
    if previous.and_then(url_of).as_deref() == Some(url.as_str()) {
        return Ok(());
    }
    let policy = NetworkPolicy {
        allow_private: state.settings.allow_private_networks,
    };
    check_unencrypted_host(&policy, &url)
        .await
        .map_err(|message| ApiError::field("config.url", message))
}

/// The stored URL of a generic source (credentials redacted; the host is what counts here).
fn url_of(row: &websocket_source::Model) -> Option<String> {
    match StoredConfig::from_json(&row.config).settings.get("url") {
        Some(Value::String(url)) => Some(url.clone()),
        _ => None,
    }
}
