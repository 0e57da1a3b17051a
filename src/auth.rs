//! API keys: generation, hashing and roles. Keys are stored only as SHA-256 hashes; the visible
//! prefix narrows the lookup (the `Caller` extractor in `api::caller` checks the hash in constant
//! time).

use rand::Rng as _;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

/// Every key starts with this, so leaked keys are easy to recognise and scan for.
pub const KEY_PREFIX: &str = "sbk_";
pub(crate) const PREFIX_LEN: usize = 12;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including sources, webhooks and API keys.
    Admin,
    /// Read everything; manage automations; cancel runs; replay events.
    Member,
    /// Read and work on runs.
    Worker,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Worker => "worker",
        }
    }

    /// Parses the stored name.
    pub fn parse(value: &str) -> Option<Role> {
        match value {
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            "worker" => Some(Role::Worker),
            _ => None,
        }
    }
}

/// A freshly generated key: shown once, then only its hash and prefix exist.
pub struct GeneratedKey {
    /// The whole key, to hand to the user once.
    pub key: String,
    /// The visible prefix.
    pub prefix: String,
    /// SHA-256 hex of the key.
    pub hash: String,
}

/// Generates a random key.
pub fn generate_key() -> GeneratedKey {
    let random: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    key_parts(format!("{KEY_PREFIX}{random}"))
}

/// Prefix and hash of a given key (used for `SWITCHBOARD_BOOTSTRAP_API_KEY`).
pub fn key_parts(key: String) -> GeneratedKey {
    GeneratedKey {
        prefix: visible_prefix(&key),
        hash: hash_key(&key),
        key,
    }
}

/// The part of a key that may be shown.
pub fn visible_prefix(key: &str) -> String {
    key.chars().take(PREFIX_LEN).collect()
}

/// Lower-case hex SHA-256 of a key.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}
