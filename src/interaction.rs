//! Interaction: one recorded request and its response, as stored in a cassette.
//!
//! This is the on-disk record format (serialized as JSON inside sled). Everything in it has
//! been redacted before it is built; see `redact`. Bodies that are UTF-8 are kept as text so a
//! person can read an exported cassette; anything else is base64.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

/// Version of this record format, stored in every record.
pub const FORMAT: u32 = 1;

/// A message body as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Body {
    Empty,
    Text(String),
    Base64(String),
}

impl Body {
    pub fn from_bytes(bytes: &[u8]) -> Self {
        if bytes.is_empty() {
            Self::Empty
        } else {
            match std::str::from_utf8(bytes) {
                Ok(s) => Self::Text(s.to_string()),
                Err(_) => Self::Base64(STANDARD.encode(bytes)),
            }
        }
    }

    /// How long its text is as stored (base64 for binary).
    pub fn len(&self) -> usize {
        match self {
            Self::Empty => 0,
            Self::Text(s) | Self::Base64(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes, or `None` for base64 that does not decode (a hand-edited cassette).
    pub fn to_bytes(&self) -> Option<Vec<u8>> {
        match self {
            Self::Empty => Some(Vec::new()),
            Self::Text(s) => Some(s.as_bytes().to_vec()),
            Self::Base64(b) => STANDARD.decode(b).ok(),
        }
    }
}

/// The request half.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub method: String,
    /// `v1.0`, `beta`, or absent for a path outside the Graph versions.
    pub version: Option<String>,
    /// The path as sent (redacted of nothing: paths carry no secrets in Graph).
    pub path: String,
    /// The query as sent, redacted.
    pub query: Option<String>,
    /// Headers worth keeping, credentials redacted, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body as sent, redacted.
    pub body: Body,
    /// The canonical form that the key was computed from (text for JSON, else absent).
    pub canonical_body: Option<String>,
}

/// The response half.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interaction {
    pub format: u32,
    /// Hex SHA-256 of the normalized request (see `key`).
    pub key: String,
    /// Which identical request this was: the nth gets the nth response on replay.
    pub position: u32,
    /// The action label (see `classify::Classified::action_label`).
    pub action: String,
    /// RFC 3339, UTC.
    pub recorded_at: String,
    /// The upstream base URL the response came from.
    pub upstream: String,
    pub request: RecordedRequest,
    pub response: RecordedResponse,
}

/// What replay needs of a record: which one it is and its response. Decoding only this (serde
/// skips the other fields without allocating them) keeps a replayed call cheap.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Recorded {
    pub key: String,
    pub position: u32,
    pub response: RecordedResponse,
}
