//! Redact: the one gate that everything graph-vcr persists or prints passes through.
//!
//! Cassettes (request and response: headers, query, bodies), imports, exports, `cassette
//! show`, `textconv`, the journal, the reports, deviation and miss messages, and log lines all
//! go through the functions here, and nothing else in the crate decides what a secret is. The
//! rules, and why they are what they are, are in `docs/REDACTION.md`. In short:
//! 1. headers by name ([`rules::is_credential_header`]): the value goes, its scheme stays;
//! 2. JSON members by name ([`rules::is_secret_field`]): every scalar under them goes, the
//!    shape stays (a client parsing a replayed response still finds a list where it expects
//!    one); every other string is scanned by shape (3);
//! 3. any text by shape ([`text`]): JWTs, `Bearer`/`Basic` tokens, secret parameters
//!    (`client_secret=`, `code=`, `sig=`, `AccountKey=`), secret members in JSON-like text;
//! 4. a body that looks like JSON but does not parse (or is not UTF-8) cannot be searched, so
//!    it is replaced whole by a placeholder naming its size and digest ([`unreadable`]);
//! 5. [`Secrets`]: the exact values found by 1-3 in one exchange are scrubbed from everything
//!    that exchange writes, so a token echoed in an unrecognisable place still goes.
//!
//! Values nobody keys on are redacted generously: a false positive costs a reader a value, a
//! false negative leaks a credential.

mod rules;
mod text;

pub use rules::{is_credential_header, is_secret_field, is_secret_param};

use crate::interaction::{Body, Interaction, RecordedResponse};
use crate::json::Json;
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// What a secret is replaced with.
pub const REDACTED: &str = "REDACTED";

/// How an unreadable body's placeholder starts (see [`unreadable`]).
pub const UNREADABLE: &str = "REDACTED: unreadable body";

/// Secret values seen in one exchange, scrubbed from everything it writes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Secrets(Vec<Box<[u8]>>);

/// Values shorter than this are not remembered: scrubbing `a` from a record would destroy it
/// and protect nothing (the rules above still redact them where they stand).
const MIN_SECRET: usize = 8;

impl Secrets {
    /// Remembers one value.
    pub fn add(&mut self, value: &[u8]) {
        let value = value.trim_ascii();
        if value.len() >= MIN_SECRET
            && value != REDACTED.as_bytes()
            && !self.0.iter().any(|s| **s == *value)
        {
            self.0.push(value.into());
        }
    }

    /// Remembers a credential header's value: what follows the scheme, and each cookie.
    pub fn add_header_value(&mut self, value: &str) {
        self.add(secret_part(value).as_bytes());
        for part in value.split(';') {
            if let Some((_, v)) = part.split_once('=') {
                self.add(v.as_bytes());
            }
        }
    }

    /// Remembers the credential headers of `headers`.
    pub fn add_headers(&mut self, headers: &http::HeaderMap) {
        for (name, value) in headers {
            if is_credential_header(name.as_str()) {
                self.add_header_value(&String::from_utf8_lossy(value.as_bytes()));
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The gate's last step: every credential shape, then every remembered value, replaced.
    /// Secrets replaced inside serialized JSON keep it valid: every replacement is plain ASCII
    /// and a remembered value never spans a quote it did not contain.
    pub fn scrub(&self, bytes: Vec<u8>) -> Vec<u8> {
        let mut out = match text::scrub(&bytes, None) {
            Cow::Owned(b) => b,
            Cow::Borrowed(_) => bytes,
        };
        for secret in &self.0 {
            if let Some(replaced) = replace_all(&out, secret) {
                out = replaced;
            }
        }
        out
    }

    /// [`Secrets::scrub`] for text.
    pub fn scrub_text(&self, text: &str) -> String {
        self.scrub_cow(text).into_owned()
    }

    /// [`Secrets::scrub`] for text, borrowed when there was nothing to scrub (the usual case:
    /// no allocation per deviation message).
    pub fn scrub_cow<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let bytes = text.as_bytes();
        let found = matches!(text::scrub(bytes, None), Cow::Owned(_))
            || self
                .0
                .iter()
                .any(|s| bytes.windows(s.len()).any(|w| w == &**s));
        if !found {
            return Cow::Borrowed(text);
        }
        let scrubbed = self.scrub(bytes.to_vec());
        Cow::Owned(String::from_utf8_lossy(&scrubbed).into_owned())
    }
}

fn replace_all(haystack: &[u8], needle: &[u8]) -> Option<Vec<u8>> {
    let first = haystack.windows(needle.len()).position(|w| w == needle)?;
    let mut out = Vec::with_capacity(haystack.len());
    out.extend_from_slice(&haystack[..first]);
    let mut i = first;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(REDACTED.as_bytes());
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The secret part of a credential header value (what follows the scheme).
pub fn secret_part(value: &str) -> &str {
    match value.split_once(' ') {
        Some((scheme, rest)) if scheme.chars().all(|c| c.is_ascii_alphabetic()) => rest.trim(),
        _ => value.trim(),
    }
}

/// The stored form of a header value: a credential header keeps only a short alphabetic
/// scheme (`Bearer REDACTED`), anything else is scanned by shape.
pub fn header_value<'a>(name: &str, value: &'a str) -> Cow<'a, str> {
    if !is_credential_header(name) {
        return text(value);
    }
    match value.split_once(' ') {
        Some((scheme, _))
            if (1..=16).contains(&scheme.len())
                && scheme.chars().all(|c| c.is_ascii_alphabetic()) =>
        {
            Cow::Owned(format!("{scheme} {REDACTED}"))
        }
        _ => Cow::Borrowed(REDACTED),
    }
}

/// Text scanned by shape (rule 3).
pub fn text(input: &str) -> Cow<'_, str> {
    match text::scrub(input.as_bytes(), None) {
        Cow::Borrowed(_) => Cow::Borrowed(input),
        // Only ASCII spans were replaced by ASCII, so the result is still UTF-8.
        Cow::Owned(b) => Cow::Owned(String::from_utf8_lossy(&b).into_owned()),
    }
}

/// Bytes scanned by shape (rule 3).
pub fn bytes(input: &[u8]) -> Cow<'_, [u8]> {
    text::scrub(input, None)
}

/// A query string: secret parameters and credential shapes, remembered in `secrets`.
pub fn query<'a>(query: &'a str, secrets: &mut Secrets) -> Cow<'a, str> {
    match text::scrub(query.as_bytes(), Some(secrets)) {
        Cow::Borrowed(_) => Cow::Borrowed(query),
        Cow::Owned(b) => Cow::Owned(String::from_utf8_lossy(&b).into_owned()),
    }
}

/// Redacts a JSON value in place (rule 2). Returns whether anything changed.
pub fn json(value: &mut Json<'_>, secrets: &mut Secrets) -> bool {
    match value {
        Json::Object(map) => {
            let mut changed = false;
            for (k, v) in map.iter_mut() {
                changed |= if is_secret_field(k) {
                    all_scalars(v, secrets)
                } else {
                    json(v, secrets)
                };
            }
            changed
        }
        Json::Array(items) => items.iter_mut().fold(false, |c, v| json(v, secrets) | c),
        Json::String(s) => match text::scrub(s.as_bytes(), Some(secrets)) {
            Cow::Owned(r) => {
                *s = Cow::Owned(String::from_utf8_lossy(&r).into_owned());
                true
            }
            Cow::Borrowed(_) => false,
        },
        _ => false,
    }
}

/// Everything under a secret member: each non-null scalar becomes `REDACTED`.
fn all_scalars(value: &mut Json<'_>, secrets: &mut Secrets) -> bool {
    match value {
        Json::Null => false,
        Json::String(s) if s == REDACTED => false,
        Json::Object(map) => map
            .values_mut()
            .fold(false, |c, v| all_scalars(v, secrets) | c),
        Json::Array(items) => items
            .iter_mut()
            .fold(false, |c, v| all_scalars(v, secrets) | c),
        scalar => {
            if let Json::String(s) = scalar {
                secrets.add(s.as_bytes());
            }
            *scalar = Json::String(Cow::Borrowed(REDACTED));
            true
        }
    }
}

/// A body through the gate: the bytes that may be stored, and the body as JSON (redacted) or
/// why it is not JSON, for the stages after it.
#[derive(Debug)]
pub struct Gated<'a> {
    pub stored: Cow<'a, [u8]>,
    pub json: Result<Json<'a>, serde_json::Error>,
}

/// A body of any kind through the gate: JSON by rule 2, text (forms, plain text) by rule 3,
/// anything that cannot be searched by rule 4.
pub fn body<'a>(raw: &'a [u8], secrets: &mut Secrets) -> Gated<'a> {
    match Json::parse(raw) {
        Ok(mut v) => {
            let stored = if json(&mut v, secrets) {
                serde_json::to_vec(&v).map_or_else(|_| Cow::Owned(unreadable(raw)), Cow::Owned)
            } else {
                Cow::Borrowed(raw)
            };
            Gated {
                stored,
                json: Ok(v),
            }
        }
        Err(e) => {
            let stored = if raw.starts_with(UNREADABLE.as_bytes()) {
                Cow::Borrowed(raw)
            } else if looks_like_json(raw) || std::str::from_utf8(raw).is_err() {
                Cow::Owned(unreadable(raw))
            } else {
                text::scrub(raw, Some(secrets))
            };
            Gated {
                stored,
                json: Err(e),
            }
        }
    }
}

fn looks_like_json(raw: &[u8]) -> bool {
    matches!(
        raw.iter().find(|c| !c.is_ascii_whitespace()),
        Some(b'{' | b'[' | b'"')
    )
}

/// Rule 4: what replaces a body the gate cannot search. It names the size and a digest, so the
/// same bytes key the same way run after run, and a reader can tell two such bodies apart.
pub fn unreadable(raw: &[u8]) -> Vec<u8> {
    let digest = Sha256::digest(raw);
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{UNREADABLE} ({} bytes, sha256 {hex}…): it looks like JSON but does not parse, or is not UTF-8, so graph-vcr cannot tell its secrets from the rest",
        raw.len()
    )
    .into_bytes()
}

/// A stored body through the gate again (imports, exports, `show`): the same rules, for what
/// an older version or a hand edit put there.
fn stored_body(body: &mut Body, secrets: &mut Secrets) {
    let Some(raw) = body.to_bytes() else {
        // Base64 that does not decode: nothing can be said of what it holds.
        *body = Body::Text(String::from_utf8_lossy(&unreadable(b"")).into_owned());
        return;
    };
    if let Cow::Owned(clean) = self::body(&raw, secrets).stored {
        *body = Body::from_bytes(&clean);
    }
}

/// Most bytes a compressed body may expand to before it is treated as unreadable: a small
/// compressed body must not take the process's memory (`upstream::MAX_RESPONSE_BODY`).
const MAX_DECODED: u64 = crate::upstream::MAX_RESPONSE_BODY as u64;

/// A body sent with a `Content-Encoding` cannot be searched as it is: gzip and deflate are
/// decoded (and the header dropped, so the record serves the decoded body); any other
/// encoding, or a body that does not decode within [`MAX_DECODED`], is unreadable (rule 4).
fn decode_content(headers: &mut Vec<(String, String)>, body: &mut Body) {
    let Some(at) = headers
        .iter()
        .position(|(k, _)| k.eq_ignore_ascii_case("content-encoding"))
    else {
        return;
    };
    let encoding = headers[at].1.trim().to_ascii_lowercase();
    headers.remove(at);
    if encoding == "identity" {
        return;
    }
    let raw = body.to_bytes().unwrap_or_default();
    *body = match decode(&encoding, &raw) {
        Some(decoded) => Body::from_bytes(&decoded),
        None => Body::from_bytes(&unreadable(&raw)),
    };
}

/// `raw` decoded from `encoding` (gzip, deflate, identity), or `None` for another encoding or
/// a body that does not decode within [`MAX_DECODED`] bytes.
pub fn decode(encoding: &str, raw: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut decoded = Vec::new();
    let read = match encoding.trim().to_ascii_lowercase().as_str() {
        "identity" => return Some(raw.to_vec()),
        "gzip" | "x-gzip" => flate2::read::MultiGzDecoder::new(raw)
            .take(MAX_DECODED + 1)
            .read_to_end(&mut decoded),
        "deflate" => flate2::read::ZlibDecoder::new(raw)
            .take(MAX_DECODED + 1)
            .read_to_end(&mut decoded),
        _ => return None,
    };
    match read {
        Ok(n) if (n as u64) <= MAX_DECODED => Some(decoded),
        _ => None,
    }
}

/// Stored headers through the gate (rule 1, or rule 3 for the others), their credentials
/// remembered in `secrets`.
pub fn stored_headers(headers: &mut [(String, String)], secrets: &mut Secrets) {
    for (name, value) in headers {
        if is_credential_header(name) {
            secrets.add_header_value(value);
        }
        if let Cow::Owned(clean) = header_value(name, value) {
            *value = clean;
        }
    }
}

/// A stored response through the gate: decoded first when compressed, then its headers and
/// body. The one part of a recording `analyze` has not already gated.
pub fn response(r: &mut RecordedResponse, secrets: &mut Secrets) {
    decode_content(&mut r.headers, &mut r.body);
    stored_headers(&mut r.headers, secrets);
    stored_body(&mut r.body, secrets);
}

/// Every part of a stored interaction through the gate: headers, query, bodies (decoded first
/// when compressed), the canonical body. Returns the secrets found, for the final scrub of
/// its serialized bytes ([`to_bytes`]).
pub fn interaction(i: &mut Interaction) -> Secrets {
    let mut secrets = Secrets::default();
    response(&mut i.response, &mut secrets);
    stored_headers(&mut i.request.headers, &mut secrets);
    if let Some(q) = &mut i.request.query
        && let Cow::Owned(clean) = query(q, &mut secrets)
    {
        *q = clean;
    }
    stored_body(&mut i.request.body, &mut secrets);
    if let Some(c) = &mut i.request.canonical_body {
        let gated = body(c.as_bytes(), &mut secrets);
        if let Cow::Owned(clean) = gated.stored {
            *c = String::from_utf8_lossy(&clean).into_owned();
        }
    }
    if let Cow::Owned(clean) = text(&i.upstream) {
        i.upstream = clean;
    }
    secrets
}

/// An interaction as it may be shown or exported: gated, and scrubbed as it would be written.
pub fn gated(mut i: Interaction) -> Interaction {
    let secrets = interaction(&mut i);
    match to_bytes(&i, &secrets)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
    {
        Some(clean) => clean,
        // The scrub cannot break the JSON (see `Secrets::scrub`); if it ever did, the gated
        // interaction still is what the rules let through.
        None => i,
    }
}

/// The gate's last step for a gated interaction: serialized, and scrubbed of `secrets` (what
/// the gate found in it and the exchange's own) and of every credential shape.
pub fn to_bytes(i: &Interaction, secrets: &Secrets) -> Result<Vec<u8>, serde_json::Error> {
    // Sized for the bodies (with room for their escapes) so a large one is not copied as
    // the buffer doubles.
    let bodies = i.request.body.len()
        + i.request.canonical_body.as_ref().map_or(0, String::len)
        + i.response.body.len();
    let mut out = Vec::with_capacity(bodies + bodies / 4 + 4096);
    serde_json::to_writer(&mut out, i)?;
    Ok(secrets.scrub(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str =
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2dyYXBoIn0.c2lnbmF0dXJlLXNpZw";

    #[test]
    fn credential_header_values_keep_only_a_short_scheme() {
        assert_eq!(
            header_value("Authorization", "Bearer abc.def"),
            "Bearer REDACTED"
        );
        assert_eq!(header_value("authorization", "opaque"), "REDACTED");
        assert_eq!(header_value("X-Auth", "x4 y"), "REDACTED");
        assert_eq!(
            header_value("accept", "application/json"),
            "application/json"
        );
        assert_eq!(
            header_value("location", &format!("https://x/?token={JWT}")),
            "https://x/?token=REDACTED"
        );
    }

    #[test]
    fn json_members_by_name_keep_their_shape() {
        let mut secrets = Secrets::default();
        let text = serde_json::json!({
            "access_token": "at-0123456789", "refresh_token": "0.AXabcdefgh",
            "secretText": "st-0123456789", "error": {"code": "InternalError"},
            "keyCredentials": [{"key": "MIIBkey0123", "keyId": "k1", "usage": 2}],
            "nested": [{"note": format!("Bearer {JWT}")}], "password": null,
        })
        .to_string();
        let mut v = Json::parse(text.as_bytes()).unwrap_or(Json::Null);
        assert!(json(&mut v, &mut secrets));
        let s = serde_json::to_string(&v).unwrap_or_default();
        for gone in [
            "at-0123456789",
            "0.AXabcdefgh",
            "st-0123456789",
            "MIIBkey0123",
            JWT,
        ] {
            assert!(!s.contains(gone), "{gone} in {s}");
        }
        assert!(
            s.contains("InternalError") && s.contains("\"password\":null"),
            "{s}"
        );
        let back: serde_json::Value = serde_json::from_str(&s).unwrap_or_default();
        assert!(back["keyCredentials"][0]["usage"] == "REDACTED", "{s}");
        assert_eq!(
            secrets.scrub(b"echo st-0123456789".to_vec()),
            b"echo REDACTED".to_vec()
        );
    }

    #[test]
    fn bodies_of_every_kind() {
        let mut secrets = Secrets::default();
        let form = b"grant_type=refresh_token&client_secret=s3cr3t-value&refresh_token=0.AXrt";
        let g = body(form, &mut secrets);
        assert_eq!(
            &*g.stored,
            &b"grant_type=refresh_token&client_secret=REDACTED&refresh_token=REDACTED"[..]
        );
        assert!(g.json.is_err());
        for broken in [
            &br#"{"password":"hunter2-pw","x":"\ud800"}"#[..],
            br#"{"password":"hunter2-pw","n":1e400}"#,
            br#"{"password":"hunter2-pw"} trailing"#,
            b"{\"password\":\"hunter2-pw\xff\"}",
        ] {
            let g = body(broken, &mut secrets);
            assert!(g.stored.starts_with(UNREADABLE.as_bytes()));
            assert!(!g.stored.windows(10).any(|w| w == b"hunter2-pw"));
            // The placeholder is stable and passes the gate unchanged.
            assert_eq!(body(broken, &mut secrets).stored, g.stored);
            assert!(matches!(
                body(&g.stored, &mut secrets).stored,
                Cow::Borrowed(_)
            ));
        }
        let plain = br#"{"assignments":[]}"#;
        assert!(matches!(body(plain, &mut secrets).stored, Cow::Borrowed(_)));
    }

    #[test]
    fn scrub_removes_remembered_secrets_of_any_shape() {
        let mut s = Secrets::default();
        s.add_header_value("Bearer plain-opaque-secret");
        s.add_header_value("session=cookie-value-123; theme=dark");
        let out = s.scrub(b"{\"x\":\"plain-opaque-secret\",\"y\":\"cookie-value-123\"}".to_vec());
        assert_eq!(out, b"{\"x\":\"REDACTED\",\"y\":\"REDACTED\"}".to_vec());
    }
}
