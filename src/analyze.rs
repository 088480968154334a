//! Analyze: what a request is, in one fixed order — redact, classify, check, key.
//!
//! 1. **redact** the query and the body through the gate (`redact`), so nothing after this
//!    step, and nothing stored, keyed or printed, ever holds a secret the gate knows of;
//! 2. **classify** the path and the redacted query (`classify`): API version, action,
//!    normalized path and query;
//! 3. **check** method, path and the redacted body against the action's contract (`check`);
//!    the header checks, the only part that differs between two identical bodies, are added
//!    per request by `Findings::with_headers`;
//! 4. **key** the canonical form of the redacted body (`key`).
//!
//! These are pure functions of the method, path, query, body and the run's options. A live
//! request, replay's memo pre-fill from stored requests, and `cassette import` all run this
//! one function, so each keys and checks a request exactly as the others would.

use crate::check::{self, Findings};
use crate::classify::{self, Classified};
use crate::key::{self, CanonicalBody, Key, KeyOptions, Sets};
use crate::redact::{self, Secrets};
use http::Method;
use std::borrow::Cow;

/// What the stages make of a request.
#[derive(Debug)]
pub struct Analyzed<'a> {
    pub classified: Classified,
    /// The query, redacted.
    pub query: Option<String>,
    /// The body as it may be stored: redacted.
    pub stored_body: Cow<'a, [u8]>,
    pub findings: Findings,
    pub canonical: CanonicalBody,
    pub key: Key,
}

impl Analyzed<'_> {
    pub fn action_label(&self) -> String {
        self.classified.action_label()
    }

    /// The same, holding its own stored body (for a body sanitized into a new buffer).
    pub fn into_owned(self) -> Analyzed<'static> {
        Analyzed {
            classified: self.classified,
            query: self.query,
            stored_body: Cow::Owned(self.stored_body.into_owned()),
            findings: self.findings,
            canonical: self.canonical,
            key: self.key,
        }
    }
}

/// The default of `--max-json-depth`: assign bodies nest five or six levels.
pub const DEFAULT_MAX_JSON_DEPTH: usize = 64;

/// A JSON body deeper than `--max-json-depth`: refused before any stage walks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooDeep(pub usize);

/// redact → classify → check (all but headers) → key. The caller has bounded the body's size;
/// its depth is bounded here, before anything parses it. Secrets the gate finds are added to
/// `secrets`.
pub fn analyze<'a>(
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &'a [u8],
    key_options: &KeyOptions,
    max_json_depth: usize,
    secrets: &mut Secrets,
) -> Result<Analyzed<'a>, TooDeep> {
    if key::json_depth_exceeds(body, max_json_depth) {
        return Err(TooDeep(max_json_depth));
    }
    // 1. redact: the body is parsed once (into a tree borrowing from `body`, `json::Json`),
    // redacted in place, then read by check and key.
    let query = query.map(|q| redact::query(q, secrets).into_owned());
    let gated = redact::body(body, secrets);
    // 2. classify
    let classified = classify::classify(path, query.as_deref());
    // 3. check
    let findings = check::check_without_headers(method, &classified, body, gated.json.as_ref());
    // 4. key
    let canonical = match gated.json {
        Ok(v) => CanonicalBody::from_json(v, Sets::of(&classified), key_options),
        Err(_) => CanonicalBody::of(&gated.stored, Sets::of(&classified), key_options),
    };
    let key = Key::compute(method.as_str(), &classified, &canonical);
    Ok(Analyzed {
        classified,
        query,
        stored_body: gated.stored,
        findings,
        canonical,
        key,
    })
}
