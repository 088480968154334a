//! Sanitize: a tenant's identifiers and a team's own chosen values, replaced before a request
//! is analyzed (so keyed, checked, stored and journaled in that form) and before a response is
//! stored.
//!
//! Two parts, applied in this order wherever they apply:
//! 1. the project's rules (`rules`, the `[[sanitize]]` tables of `graph-vcr.toml`): by JSON
//!    pointer, field, header, query parameter or regex; a fixed value or an alias;
//! 2. pseudonymisation of identifiers (`--pseudonymize`, remembered in the cassette): every
//!    GUID, address and `*.onmicrosoft.com` domain (`identifiers`) replaced by its alias
//!    (`aliases`).
//!
//! Both are idempotent (an alias maps to itself, a fixed value to itself), so replay applies
//! them to incoming requests and a request carrying the original ids and one carrying ids
//! read back from a replayed response both key as the recording did. Record forwards the
//! request as the client sent it: only what is stored, keyed and written is sanitized.
//!
//! The pseudonym key: `GRAPH_VCR_PSEUDONYM_KEY`, else `DIR/graph-vcr.pseudonym-key` (made
//! by the first recording that needs it, readable by its owner only). A cassette remembers the
//! key's id, never the key. See `docs/DECISIONS.md` for what each choice protects against.

mod aliases;
mod identifiers;
pub mod rules;

pub use aliases::Aliaser;
pub use rules::{RuleSpec, Rules};

use crate::interaction::{Body, Interaction, RecordedResponse};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// The cassette meta member that says its identifiers are pseudonymised.
pub const META_FIELD: &str = "pseudonymized";
/// Where CI keeps the pseudonym key (a secret of at least 16 characters).
pub const KEY_ENV: &str = "GRAPH_VCR_PSEUDONYM_KEY";
/// Where the key is kept beside the cassettes when the environment has none.
pub const KEY_FILE: &str = "graph-vcr.pseudonym-key";

/// What a cassette remembers of its pseudonymisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pseudonymized {
    /// Which key made its aliases (a digest of it; the key itself is never stored).
    pub key_id: String,
    /// Whether identifiers (GUIDs, addresses, tenant domains) are aliased, or only the values
    /// pseudonymising rules pick.
    pub identifiers: bool,
}

#[derive(Debug, Error)]
pub enum SanitizeError {
    #[error("pseudonym key {path}: {source}")]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the pseudonym key in {0} is shorter than 16 characters")]
    KeyTooShort(String),
    #[error(
        "cassette {cassette} was pseudonymised with key {recorded}, and the key here ({KEY_ENV} or \
         {KEY_FILE}) is {current}: its aliases would not match. Use the key it was made with"
    )]
    KeyMismatch {
        cassette: String,
        recorded: String,
        current: String,
    },
    #[error(
        "cassette {0} is pseudonymised and the key it was made with is not here: set {KEY_ENV} \
         or put it in {KEY_FILE} in the cassette directory"
    )]
    NoKey(String),
    #[error(
        "cassette {0} holds recordings made without --pseudonymize; pseudonymise them first \
         (graph-vcr cassette sanitize {0} --pseudonymize) or record into a new cassette"
    )]
    PlainCassette(String),
}

/// The pseudonym key and its public id.
#[derive(Debug, Clone)]
pub struct PseudonymKey {
    pub aliaser: Aliaser,
    pub id: String,
    /// Where it came from, for messages (never the key itself).
    pub source: String,
}

impl PseudonymKey {
    fn of(secret: &[u8], source: String) -> Result<Self, SanitizeError> {
        if secret.len() < 16 {
            return Err(SanitizeError::KeyTooShort(source));
        }
        Ok(Self {
            aliaser: Aliaser::new(secret),
            id: Aliaser::key_id(secret),
            source,
        })
    }

    /// The key from the environment, else from `dir`'s key file; `None` when neither has one.
    pub fn load(dir: &Path) -> Result<Option<Self>, SanitizeError> {
        if let Some(secret) = std::env::var_os(KEY_ENV).filter(|v| !v.is_empty()) {
            return Self::of(secret.as_encoded_bytes(), KEY_ENV.to_string()).map(Some);
        }
        let path = dir.join(KEY_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Self::of(bytes.trim_ascii(), path.display().to_string()).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SanitizeError::KeyFile { path, source }),
        }
    }

    /// [`PseudonymKey::load`], or a new random key written to `dir`'s key file.
    pub fn load_or_create(dir: &Path) -> Result<Self, SanitizeError> {
        if let Some(key) = Self::load(dir)? {
            return Ok(key);
        }
        let path = dir.join(KEY_FILE);
        let io = |source| SanitizeError::KeyFile {
            path: path.clone(),
            source,
        };
        let mut secret = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
            .map_err(|_| io(std::io::Error::other("no system randomness")))?;
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::create_dir_all(dir).map_err(io)?;
        write_owner_only(&path, hex.as_bytes()).map_err(io)?;
        tracing::warn!(file = %path.display(),
            "made a new pseudonym key; keep it out of version control, and give CI the same value in {KEY_ENV}");
        Self::of(hex.as_bytes(), path.display().to_string())
    }
}

fn write_owner_only(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// What is sanitized in one cassette.
#[derive(Debug, Clone, Default)]
pub struct Sanitizer {
    rules: Arc<Rules>,
    identifiers: bool,
    aliaser: Option<Aliaser>,
}

impl Sanitizer {
    pub fn new(rules: Arc<Rules>, identifiers: bool, aliaser: Option<Aliaser>) -> Self {
        Self {
            rules,
            identifiers,
            aliaser,
        }
    }

    /// Whether it changes nothing (no rules, no pseudonymisation): then it is not run at all.
    pub fn is_noop(&self) -> bool {
        self.rules.is_empty() && !self.identifiers
    }

    /// Whether it should alias but has no key to alias with (replay without the key): requests
    /// carrying the original values then miss, while ids read from replayed answers match.
    pub fn lacks_key(&self) -> bool {
        self.aliaser.is_none() && (self.identifiers || self.rules.pseudonymizes())
    }

    fn identifiers<'a>(&self, text: Cow<'a, [u8]>) -> Cow<'a, [u8]> {
        match (&self.aliaser, self.identifiers) {
            (Some(a), true) => match identifiers::pseudonymize(a, &text) {
                Cow::Borrowed(_) => text,
                Cow::Owned(b) => Cow::Owned(b),
            },
            _ => text,
        }
    }

    /// Text: a path, a deviation message (regex rules, then identifiers).
    pub fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let ruled = self.rules.text(text.as_bytes(), self.aliaser.as_ref());
        utf8(text, self.identifiers(ruled))
    }

    /// A query string.
    pub fn query<'a>(&self, query: &'a str) -> Cow<'a, str> {
        let ruled = self.rules.query(query, self.aliaser.as_ref());
        let out = match &ruled {
            Cow::Borrowed(_) => self.identifiers(Cow::Borrowed(query.as_bytes())),
            Cow::Owned(s) => Cow::Owned(self.identifiers(Cow::Borrowed(s.as_bytes())).into_owned()),
        };
        utf8(query, out)
    }

    /// A body, JSON or not.
    pub fn body<'a>(&self, body: &'a [u8]) -> Cow<'a, [u8]> {
        self.identifiers(self.rules.body(body, self.aliaser.as_ref()))
    }

    /// Stored headers, in place.
    pub fn headers(&self, headers: &mut [(String, String)]) {
        for (name, value) in headers.iter_mut() {
            let ruled = self.rules.header(name, value, self.aliaser.as_ref());
            let current = ruled.unwrap_or_else(|| value.clone());
            *value = utf8(
                &current,
                self.identifiers(Cow::Borrowed(current.as_bytes())),
            )
            .into_owned();
        }
    }

    /// A stored body, in place.
    pub fn stored_body(&self, body: &mut Body) {
        let Some(bytes) = (match body {
            Body::Empty => None,
            Body::Text(t) => Some(t.as_bytes()),
            // Binary: nothing to read an identifier in (a base64 text is not decoded).
            Body::Base64(_) => None,
        }) else {
            return;
        };
        if let Cow::Owned(clean) = self.body(bytes) {
            *body = Body::from_bytes(&clean);
        }
    }

    /// A stored response, in place: its headers and body.
    pub fn response(&self, response: &mut RecordedResponse) {
        self.headers(&mut response.headers);
        self.stored_body(&mut response.body);
    }

    /// A whole stored interaction, in place (`cassette sanitize`); import re-keys it after.
    pub fn interaction(&self, i: &mut Interaction) {
        if let Cow::Owned(p) = self.text(&i.request.path) {
            i.request.path = p;
        }
        if let Some(q) = &i.request.query
            && let Cow::Owned(clean) = self.query(q)
        {
            i.request.query = Some(clean);
        }
        self.headers(&mut i.request.headers);
        self.stored_body(&mut i.request.body);
        self.response(&mut i.response);
    }
}

fn utf8<'a>(original: &'a str, out: Cow<'_, [u8]>) -> Cow<'a, str> {
    match out {
        Cow::Borrowed(_) => Cow::Borrowed(original),
        Cow::Owned(b) => Cow::Owned(String::from_utf8_lossy(&b).into_owned()),
    }
}

/// A run's sanitizing: the project's rules, `--pseudonymize`, and the key (if there is one).
#[derive(Debug, Clone, Default)]
pub struct Setup {
    pub rules: Arc<Rules>,
    /// `--pseudonymize`: new cassettes get their identifiers aliased.
    pub pseudonymize: bool,
    pub key: Option<PseudonymKey>,
}

impl Setup {
    /// Record and auto: the key is made when something needs it.
    pub fn for_recording(
        rules: Arc<Rules>,
        pseudonymize: bool,
        dir: &Path,
    ) -> Result<Self, SanitizeError> {
        let key = if pseudonymize || rules.pseudonymizes() {
            Some(PseudonymKey::load_or_create(dir)?)
        } else {
            PseudonymKey::load(dir)?
        };
        Ok(Self {
            rules,
            pseudonymize,
            key,
        })
    }

    /// Replay and `cassette sanitize`: the key if there is one; never made.
    pub fn for_reading(rules: Arc<Rules>, dir: &Path) -> Result<Self, SanitizeError> {
        Ok(Self {
            rules,
            pseudonymize: false,
            key: PseudonymKey::load(dir)?,
        })
    }

    /// The cassette's sanitizer, given what it remembers (`recorded`) and whether it holds
    /// recordings, and what the cassette should remember from now on (`Some` when that
    /// changes: a new cassette of a pseudonymising run).
    pub fn for_cassette(
        &self,
        name: &str,
        recorded: Option<&Pseudonymized>,
        has_recordings: bool,
        recording: bool,
    ) -> Result<(Sanitizer, Option<Pseudonymized>), SanitizeError> {
        let aliaser = self.key.as_ref().map(|k| k.aliaser.clone());
        if let (Some(r), Some(k)) = (recorded, &self.key)
            && r.key_id != k.id
        {
            return Err(SanitizeError::KeyMismatch {
                cassette: name.to_string(),
                recorded: r.key_id.clone(),
                current: k.id.clone(),
            });
        }
        if recording && recorded.is_some() && self.key.is_none() {
            return Err(SanitizeError::NoKey(name.to_string()));
        }
        let wants = recording && (self.pseudonymize || self.rules.pseudonymizes());
        let remember = match (recorded, &self.key) {
            (Some(r), _) if recording && self.pseudonymize && !r.identifiers && has_recordings => {
                return Err(SanitizeError::PlainCassette(name.to_string()));
            }
            (None, _) if wants && self.pseudonymize && has_recordings => {
                return Err(SanitizeError::PlainCassette(name.to_string()));
            }
            (Some(r), Some(k)) if recording && self.pseudonymize && !r.identifiers => {
                Some(Pseudonymized {
                    key_id: k.id.clone(),
                    identifiers: true,
                })
            }
            (None, Some(k)) if wants => Some(Pseudonymized {
                key_id: k.id.clone(),
                identifiers: self.pseudonymize,
            }),
            _ => None,
        };
        let identifiers = remember
            .as_ref()
            .or(recorded)
            .is_some_and(|p| p.identifiers);
        Ok((
            Sanitizer::new(Arc::clone(&self.rules), identifiers, aliaser),
            remember,
        ))
    }
}

impl Setup {
    /// `cassette sanitize`: like [`Setup::for_cassette`], except that turning
    /// pseudonymisation on for a cassette with recordings is what it is for.
    pub fn for_sanitizing(
        &self,
        name: &str,
        recorded: Option<&Pseudonymized>,
    ) -> Result<(Sanitizer, Option<Pseudonymized>), SanitizeError> {
        let identifiers = self.pseudonymize || recorded.is_some_and(|r| r.identifiers);
        let needs_key = identifiers || self.rules.pseudonymizes() || recorded.is_some();
        let remember = match (&self.key, recorded) {
            (Some(k), Some(r)) if r.key_id != k.id => {
                return Err(SanitizeError::KeyMismatch {
                    cassette: name.to_string(),
                    recorded: r.key_id.clone(),
                    current: k.id.clone(),
                });
            }
            (Some(k), _) if needs_key => Some(Pseudonymized {
                key_id: k.id.clone(),
                identifiers,
            }),
            (None, _) if needs_key => return Err(SanitizeError::NoKey(name.to_string())),
            _ => None,
        };
        let aliaser = self.key.as_ref().map(|k| k.aliaser.clone());
        Ok((
            Sanitizer::new(Arc::clone(&self.rules), identifiers, aliaser),
            remember,
        ))
    }
}

/// What a cassette's meta says of its pseudonymisation.
pub fn recorded(meta: Option<&serde_json::Value>) -> Option<Pseudonymized> {
    serde_json::from_value(meta?.get(META_FIELD)?.clone()).ok()
}
