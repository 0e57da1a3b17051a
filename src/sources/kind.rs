//! The kinds of WebSocket source. Requests and stored rows carry the kind as text; it is read
//! into [`SourceKind`] once, where it enters, and everything past that matches on the enum.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a source connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A generic WebSocket feed.
    Generic,
    /// Slack Socket Mode.
    Slack,
}

impl SourceKind {
    /// Every kind, in the order they are documented.
    pub const ALL: [SourceKind; 2] = [SourceKind::Generic, SourceKind::Slack];

    /// The kind's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Generic => "generic",
            Self::Slack => "slack",
        }
    }

    /// Reads a kind given in a request (`None` when it names no kind).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// Reads the kind of a stored row: a committed row holds a checked kind, and anything but
    /// `slack` has always been read as a generic feed.
    pub fn from_stored(name: &str) -> Self {
        Self::parse(name).unwrap_or(Self::Generic)
    }
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::SourceKind;

    #[test]
    fn names_read_back_and_serialize_as_stored() {
        for kind in SourceKind::ALL {
            assert_eq!(SourceKind::parse(kind.as_str()), Some(kind));
            assert_eq!(serde_json::json!(kind), serde_json::json!(kind.as_str()));
        }
        assert_eq!(SourceKind::parse("Slack"), None);
        assert_eq!(SourceKind::from_stored("unknown"), SourceKind::Generic);
    }
}
