//! The sealed `secrets` column of stored rows: which slot each table's secrets are bound to, and
//! sealing and opening a source's or a webhook's secret set. The API (when a row is written), the
//! source actors (when a source starts) and `keys rotate` all go through here, so the slot a blob
//! is bound to is named once.

use entity::{webhook, websocket_source};
use uuid::Uuid;

use crate::crypto::{Keyring, SecretSlot};
use crate::sources::config::SourceSecrets;
use crate::webhooks::verifier::WebhookSecrets;

/// The slot a source's secrets are sealed in (bound to its table, column and id).
pub fn source_slot(id: Uuid) -> SecretSlot<'static> {
    SecretSlot::new("websocket_sources", "secrets", id)
}

/// The slot a webhook's secrets are sealed in (bound to its table, column and id).
pub fn webhook_slot(id: Uuid) -> SecretSlot<'static> {
    SecretSlot::new("webhooks", "secrets", id)
}

/// Seals a source's secret set for the row `id`; an empty set is stored as no blob at all.
pub fn seal_source_secrets(
    keyring: &Keyring,
    id: Uuid,
    secrets: &SourceSecrets,
) -> anyhow::Result<Option<Vec<u8>>> {
    if *secrets == SourceSecrets::default() {
        return Ok(None);
    }
    let plain = serde_json::to_vec(secrets)?;
    Ok(Some(keyring.seal(&plain, source_slot(id))?))
}

/// Opens a source's sealed secrets with `keyring` (a row without a blob has none).
pub fn open_source_secrets(
    keyring: &Keyring,
    m: &websocket_source::Model,
) -> anyhow::Result<SourceSecrets> {
    let Some(blob) = &m.secrets else {
        return Ok(SourceSecrets::default());
    };
    let plain = keyring.open(blob, source_slot(m.id))?;
    Ok(serde_json::from_slice(&plain)?)
}

/// Seals a webhook's secret set for the row `id`.
pub fn seal_webhook_secrets(
    keyring: &Keyring,
    id: Uuid,
    secrets: &WebhookSecrets,
) -> anyhow::Result<Vec<u8>> {
    let plain = serde_json::to_vec(secrets)?;
    Ok(keyring.seal(&plain, webhook_slot(id))?)
}

/// Opens a webhook's secret set with `keyring` (`None` for an insecure webhook, which has none);
/// a failure names the webhook.
pub fn open_webhook_secrets(
    keyring: &Keyring,
    m: &webhook::Model,
) -> anyhow::Result<Option<WebhookSecrets>> {
    let Some(blob) = &m.secrets else {
        return Ok(None);
    };
    let plain = keyring.open(blob, webhook_slot(m.id)).map_err(|e| {
        anyhow::Error::new(e).context(format!("opening secrets of webhook {}", m.id))
    })?;
    Ok(Some(serde_json::from_slice(&plain)?))
}
