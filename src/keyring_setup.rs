//! Where the keyring comes from at start-up: `SWITCHBOARD_SECRET_KEYS`, else (SQLite only) a key
//! file generated in the data dir with mode 0600. PostgreSQL without keys refuses to start.

use std::path::Path;

use anyhow::{Context as _, bail};
use secrecy::ExposeSecret as _;

use crate::config::Settings;
use crate::crypto::Keyring;

/// Name of the generated key file inside the data dir.
pub const KEY_FILE: &str = "secret-keys";

/// Loads (or, on SQLite, creates) the keyring.
pub fn load_keyring(settings: &Settings) -> anyhow::Result<Keyring> {
    if let Some(spec) = &settings.secret_keys {
        return Keyring::parse(spec.expose_secret()).context("reading SWITCHBOARD_SECRET_KEYS");
    }
    if !settings.is_sqlite() {
        bail!(
            "SWITCHBOARD_SECRET_KEYS is not set. With PostgreSQL the encryption keys must come from the \
             environment: generate one with `switchboard keys generate` and set \
             SWITCHBOARD_SECRET_KEYS=<the printed entry>"
        );
    }
    let path = settings.data_dir.join(KEY_FILE);
    if path.exists() {
        let spec = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        return Keyring::parse(spec.trim())
            .with_context(|| format!("reading the keyring in {}", path.display()));
    }
    let keyring = Keyring::generate("k1").context("generating a keyring")?;
    write_private(&path, &keyring.to_spec())?;
    tracing::warn!(
        path = %path.display(),
        "SWITCHBOARD_SECRET_KEYS is not set: generated an encryption key file; back it up, \
         secrets cannot be read without it"
    );
    Ok(keyring)
}

/// Writes `contents` to a new file readable only by its owner.
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .with_context(|| format!("writing {}", path.display()))
}
