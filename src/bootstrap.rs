//! First start: with no API key at all, create org `default` and an admin key
//! (`SWITCHBOARD_BOOTSTRAP_API_KEY`, else random: announced before anything that depends on it
//! is stored, then saved to the data dir, 0600, when it can be). Also `switchboard orgs create`.
//! Nothing here prints: the caller decides how a new key is shown (the binary prints it once).

use anyhow::Context as _;
use sea_orm::DatabaseConnection;
use secrecy::ExposeSecret as _;

use crate::auth::{self, GeneratedKey};
use crate::config::Settings;
use crate::db;
use crate::keyring_setup::write_private;

/// Name of the file holding a generated bootstrap key.
pub const BOOTSTRAP_KEY_FILE: &str = "bootstrap-admin-key";

/// Creates an org with an admin key named `bootstrap admin`; returns the key.
pub async fn create_org_with_admin(
    db: &DatabaseConnection,
    name: &str,
    key: GeneratedKey,
) -> anyhow::Result<GeneratedKey> {
    let txn = db::WriteTxn::begin(db)
        .await
        .context("starting a transaction")?;
    let org = db::orgs::insert_org(&txn, name)
        .await
        .with_context(|| format!("creating org `{name}`"))?;
    db::api_keys::insert_api_key(
        &txn,
        db::api_keys::NewApiKey {
            org_id: org.id,
            name: "bootstrap admin",
            role: auth::Role::Admin.as_str(),
            prefix: &key.prefix,
            key_hash: &key.hash,
        },
    )
    .await
    .context("storing the admin key")?;
    txn.commit().await.context("committing the new org")?;
    Ok(key)
}

/// A random admin key made on first start, handed to the announcer before it is stored.
#[derive(Debug, Clone, Copy)]
pub struct NewAdminKey<'a> {
    /// The key itself (shown once).
    pub key: &'a str,
    /// Where it will also be saved (when the data dir can be written).
    pub file: &'a std::path::Path,
}

/// On first start creates org `default` and its admin key; returns the key when one was made.
/// A random key goes to `announce` *before* it is committed, so that it is shown even when the
/// key file cannot be written afterwards (that is only a warning: the key was shown). The next
/// start finds a key and skips all of this.
pub async fn bootstrap(
    db: &DatabaseConnection,
    settings: &Settings,
    announce: impl FnOnce(NewAdminKey<'_>),
) -> anyhow::Result<Option<String>> {
    if db::api_keys::count_all_api_keys(db)
        .await
        .context("counting API keys")?
        > 0
    {
        return Ok(None);
    }
    let (key, given) = match &settings.bootstrap_api_key {
        Some(key) => {
            let key = key.expose_secret().to_owned();
            anyhow::ensure!(
                key.starts_with(auth::KEY_PREFIX) && key.len() >= 24,
                "SWITCHBOARD_BOOTSTRAP_API_KEY must start with `{}` and be at least 24 characters",
                auth::KEY_PREFIX
            );
            (auth::key_parts(key), true)
        }
        None => (auth::generate_key(), false),
    };
    let path = settings.data_dir.join(BOOTSTRAP_KEY_FILE);
    if !given {
        announce(NewAdminKey {
            key: &key.key,
            file: &path,
        });
    }
    let key = create_org_with_admin(db, db::orgs::OPERATOR_ORG, key).await?;
    if !given && let Err(err) = write_private(&path, &key.key) {
        tracing::warn!(path = %path.display(), error = format!("{err:#}"),
            "could not save the bootstrap admin key (it was shown on standard output)");
    }
    tracing::info!(prefix = %key.prefix, "first start: created org `default` and its admin key");
    Ok(Some(key.key))
}
