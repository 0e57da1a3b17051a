//! `switchboard keys rotate`: re-seal every stored secret under the primary key, in one
//! transaction, checking every blob opens first.

use anyhow::Context as _;
use sea_orm::DatabaseConnection;

use crate::crypto::Keyring;
use crate::db;
use crate::sealed::{source_slot, webhook_slot};

/// What a rotation did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RotateReport {
    /// Blobs moved to the primary key.
    pub resealed: usize,
    /// Blobs already under the primary key.
    pub current: usize,
}

/// Re-seals every source and webhook secret blob under the primary key.
pub async fn reseal_all(
    conn: &DatabaseConnection,
    keyring: &Keyring,
) -> anyhow::Result<RotateReport> {
    let txn = db::WriteTxn::begin(conn)
        .await
        .context("starting a transaction")?;
    let mut report = RotateReport::default();
    for mut row in db::sources::all_sources(&txn)
        .await
        .context("reading sources")?
    {
        let Some(blob) = &row.secrets else { continue };
        let resealed = keyring
            .reseal(blob, source_slot(row.id))
            .with_context(|| format!("re-encrypting the secrets of source {}", row.id))?;
        match resealed {
            Some(new) => {
                row.secrets = Some(new);
                db::sources::update_source(&txn, row)
                    .await
                    .context("storing a source")?;
                report.resealed += 1;
            }
            None => report.current += 1,
        }
    }
    for mut row in db::webhooks::all_webhooks(&txn)
        .await
        .context("reading webhooks")?
    {
        let Some(blob) = &row.secrets else { continue };
        let resealed = keyring
            .reseal(blob, webhook_slot(row.id))
            .with_context(|| format!("re-encrypting the secret of webhook {}", row.id))?;
        match resealed {
            Some(new) => {
                row.secrets = Some(new);
                db::webhooks::update_webhook(&txn, row)
                    .await
                    .context("storing a webhook")?;
                report.resealed += 1;
            }
            None => report.current += 1,
        }
    }
    txn.commit().await.context("committing the rotation")?;
    Ok(report)
}

/// Start-up check: every stored blob was sealed under a key id the keyring has, and one blob per
/// key id opens. A wrong or missing key fails loudly here, naming the key id, instead of later.
pub async fn verify_all(conn: &DatabaseConnection, keyring: &Keyring) -> anyhow::Result<()> {
    let mut checked = std::collections::HashSet::new();
    let sources = db::sources::all_sources(conn)
        .await
        .context("reading sources")?;
    let webhooks = db::webhooks::all_webhooks(conn)
        .await
        .context("reading webhooks")?;
    let blobs = sources
        .iter()
        .filter_map(|r| r.secrets.as_deref().map(|b| (b, source_slot(r.id))))
        .chain(
            webhooks
                .iter()
                .filter_map(|r| r.secrets.as_deref().map(|b| (b, webhook_slot(r.id)))),
        );
    for (blob, slot) in blobs {
        let kid = Keyring::sealed_kid(blob).context("reading a stored secret")?;
        if checked.insert(kid.to_owned()) {
            keyring.open(blob, slot).with_context(|| {
                format!(
                    "stored secrets cannot be read with SWITCHBOARD_SECRET_KEYS (row {} of {})",
                    slot.row_id, slot.table
                )
            })?;
        }
    }
    Ok(())
}
