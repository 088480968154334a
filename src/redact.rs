//! Redact: keep credentials off disk.
//!
//! Everything graph-vcr writes (cassettes today, journals and reports later) passes through
//! here first. Three layers, because any one of them can miss:
//! 1. credential headers by name (`Authorization`, `Cookie`, `Set-Cookie`, API keys, ...);
//! 2. values anywhere (headers, query, bodies) that look like a bearer token or a JWT, and JSON
//!    fields or query parameters whose names say they hold a secret;
//! 3. a final scrub of the serialized record for the exact secret values seen in the request's
//!    credential headers, so even a token of no recognisable shape cannot slip through.

use serde_json::Value;
use std::borrow::Cow;

/// What a secret is replaced with.
pub const REDACTED: &str = "REDACTED";

/// Whether a header carries credentials by its name alone.
pub fn is_credential_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "authorization"
            | "proxy-authorization"
            | "cookie"
            | "set-cookie"
            | "x-api-key"
            | "api-key"
            | "apikey"
            | "ocp-apim-subscription-key"
            | "x-functions-key"
    ) || is_secret_name(&n)
}

/// Whether a JSON field or query parameter name says it holds a secret.
///
/// Runs for every field of every body recorded or audited, so an ASCII name of up to 64 bytes
/// (every Graph property) is folded on the stack; longer or non-ASCII names take a `String`.
pub fn is_secret_name(name: &str) -> bool {
    const SHORT: usize = 64;
    if name.is_ascii() && name.len() <= SHORT {
        let mut buf = [0u8; SHORT];
        let mut len = 0;
        for b in name.bytes().filter(|b| *b != b'_' && *b != b'-') {
            buf[len] = b.to_ascii_lowercase();
            len += 1;
        }
        // ASCII in, ASCII out: the buffer is UTF-8.
        std::str::from_utf8(&buf[..len]).is_ok_and(names_a_secret)
    } else {
        let n: String = name
            .chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect();
        names_a_secret(&n)
    }
}

/// [`is_secret_name`] on a name already lower-cased, with `_` and `-` taken out.
fn names_a_secret(n: &str) -> bool {
    n.contains("secret")
        || n.contains("password")
        || n.ends_with("token")
        || matches!(
            n,
            "apikey" | "assertion" | "clientassertion" | "sig" | "signature"
        )
}

/// The redacted form of a credential header value: the scheme survives (`Bearer REDACTED`), so
/// a reader still sees how the client authenticated.
pub fn redact_credential_value(value: &str) -> String {
    match value.split_once(' ') {
        Some((scheme, _))
            if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphabetic()) =>
        {
            format!("{scheme} {REDACTED}")
        }
        _ => REDACTED.to_string(),
    }
}

/// The secret part of a credential header value (what follows the scheme), for the final scrub.
pub fn secret_part(value: &str) -> &str {
    match value.split_once(' ') {
        Some((scheme, rest)) if scheme.chars().all(|c| c.is_ascii_alphabetic()) => rest.trim(),
        _ => value.trim(),
    }
}

fn is_b64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

fn is_token_char(c: u8) -> bool {
    is_b64url(c) || matches!(c, b'.' | b'~' | b'+' | b'/' | b'=')
}

/// Length of a JWT starting at `s[0]`, if one does (`eyJ…` `.` `…` `.` `…`).
fn jwt_len(s: &[u8]) -> Option<usize> {
    if !s.starts_with(b"eyJ") {
        return None;
    }
    let mut i = 0;
    for part in 0..3 {
        let start = i;
        while i < s.len() && is_b64url(s[i]) {
            i += 1;
        }
        // Header and payload are never tiny; the signature may be empty (alg "none").
        if part < 2 && i - start < 8 {
            return None;
        }
        if part < 2 {
            if s.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
    }
    Some(i)
}

/// Replaces JWTs and `Bearer <token>` spans in arbitrary bytes.
pub fn redact_bytes(input: &[u8]) -> Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    let mut copied = 0;
    while i < input.len() {
        // Only an 'e' (eyJ…) or a 'b' (Bearer) can start a span: skip everything else cheaply.
        let c = input[i];
        let span = if c == b'e'
            && let Some(n) = jwt_len(&input[i..])
        {
            Some((i, i + n))
        } else if (c == b'b' || c == b'B')
            && input.len() - i > 7
            && input[i..i + 7].eq_ignore_ascii_case(b"bearer ")
        {
            let start = i + 7;
            let mut end = start;
            while end < input.len() && is_token_char(input[end]) {
                end += 1;
            }
            (end > start && !input[start..end].starts_with(REDACTED.as_bytes()))
                .then_some((start, end))
        } else {
            None
        };
        match span {
            Some((start, end)) => {
                let buf = out.get_or_insert_with(Vec::new);
                buf.extend_from_slice(&input[copied..start]);
                buf.extend_from_slice(REDACTED.as_bytes());
                copied = end;
                i = end;
            }
            None => i += 1,
        }
    }
    match out {
        Some(mut buf) => {
            buf.extend_from_slice(&input[copied..]);
            Cow::Owned(buf)
        }
        None => Cow::Borrowed(input),
    }
}

/// [`redact_bytes`] for text.
pub fn redact_text(input: &str) -> Cow<'_, str> {
    match redact_bytes(input.as_bytes()) {
        Cow::Borrowed(_) => Cow::Borrowed(input),
        // Only ASCII spans were replaced by ASCII, so the result is still UTF-8.
        Cow::Owned(b) => Cow::Owned(String::from_utf8_lossy(&b).into_owned()),
    }
}

/// Redacts secret-named fields and token-shaped strings in a JSON value. Returns whether
/// anything changed.
pub fn redact_json(value: &mut Value) -> bool {
    match value {
        Value::Object(map) => {
            let mut changed = false;
            for (k, v) in map.iter_mut() {
                if is_secret_name(k) && !matches!(v, Value::Null) && v.as_str() != Some(REDACTED) {
                    *v = Value::String(REDACTED.into());
                    changed = true;
                } else {
                    changed |= redact_json(v);
                }
            }
            changed
        }
        Value::Array(items) => items.iter_mut().fold(false, |c, v| redact_json(v) | c),
        Value::String(s) => match redact_text(s) {
            Cow::Owned(r) => {
                *s = r;
                true
            }
            Cow::Borrowed(_) => false,
        },
        _ => false,
    }
}

/// Redacts a raw query string: secret-named parameters and token-shaped values.
pub fn redact_query(query: &str) -> Cow<'_, str> {
    let mut changed = false;
    let pairs: Vec<Cow<'_, str>> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret_name(name) => {
                changed = true;
                Cow::Owned(format!("{name}={REDACTED}"))
            }
            _ => {
                let r = redact_text(pair);
                changed |= matches!(r, Cow::Owned(_));
                r
            }
        })
        .collect();
    if changed {
        Cow::Owned(pairs.join("&"))
    } else {
        Cow::Borrowed(query)
    }
}

/// A request body with its secrets removed, and whether anything was removed.
pub fn redact_body(body: &[u8]) -> (Cow<'_, [u8]>, bool) {
    let mut parsed = serde_json::from_slice::<Value>(body);
    let stored = redact_parsed(body, &mut parsed);
    let changed = matches!(stored, Cow::Owned(_));
    (stored, changed)
}

/// [`redact_body`] for a body the caller has already parsed (or failed to): redacts the parsed
/// value in place, so later stages read it redacted, and returns the bytes to store.
pub fn redact_parsed<'a>(
    body: &'a [u8],
    parsed: &mut Result<Value, serde_json::Error>,
) -> Cow<'a, [u8]> {
    match parsed {
        Ok(v) => {
            if redact_json(v) {
                serde_json::to_vec(v).map_or_else(|_| redact_bytes(body), Cow::Owned)
            } else {
                Cow::Borrowed(body)
            }
        }
        Err(_) => redact_bytes(body),
    }
}

/// Secret values seen in one request, scrubbed from its record as the last step before a write.
#[derive(Debug, Default, Clone)]
pub struct Secrets(Vec<Vec<u8>>);

impl Secrets {
    /// Remembers a credential header's secret part. Very short values are ignored: scrubbing
    /// `a` from a record would destroy it and protect nothing.
    pub fn add_header_value(&mut self, value: &str) {
        let secret = secret_part(value);
        if secret.len() >= 8 {
            self.0.push(secret.as_bytes().to_vec());
        }
        // Cookies: each value separately, as they may be echoed one at a time.
        for part in value.split(';') {
            if let Some((_, v)) = part.split_once('=')
                && v.trim().len() >= 8
            {
                self.0.push(v.trim().as_bytes().to_vec());
            }
        }
    }

    /// Replaces every occurrence of a remembered secret, and any JWT or bearer token, in
    /// `bytes`. Secrets are made of URL-safe characters, so replacing them inside serialized
    /// JSON keeps it valid.
    pub fn scrub(&self, bytes: Vec<u8>) -> Vec<u8> {
        let mut out = match redact_bytes(&bytes) {
            Cow::Owned(b) => b,
            Cow::Borrowed(_) => bytes,
        };
        for secret in &self.0 {
            out = replace_all(&out, secret, REDACTED.as_bytes());
        }
        out
    }
}

fn replace_all(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return haystack.to_vec();
    }
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str =
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2dyYXBoIn0.c2lnbmF0dXJlLXNpZw";

    #[test]
    fn credential_headers_by_name() {
        for h in [
            "Authorization",
            "cookie",
            "Set-Cookie",
            "X-Api-Key",
            "x-client-secret",
            "x-ms-token-aad-id-token",
        ] {
            assert!(is_credential_header(h), "{h}");
        }
        for h in ["content-type", "client-request-id", "request-id", "accept"] {
            assert!(!is_credential_header(h), "{h}");
        }
        assert_eq!(redact_credential_value("Bearer abc.def"), "Bearer REDACTED");
        assert_eq!(redact_credential_value("opaque"), "REDACTED");
    }

    #[test]
    fn jwts_and_bearer_tokens_in_text() {
        let text = format!("token {JWT} and Bearer opaque-token_123 end");
        let r = redact_text(&text);
        assert!(!r.contains(JWT) && !r.contains("opaque-token_123"), "{r}");
        assert_eq!(r, "token REDACTED and Bearer REDACTED end");
        assert!(matches!(
            redact_text("eyJhbGciOi is not a token"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn secret_named_json_fields_but_not_graph_error_codes() {
        let mut v = serde_json::json!({"client_secret": "s3cr3t", "error": {"code": "InternalError"},
            "nested": [{"refreshToken": "r"}, {"note": format!("Bearer {JWT}")}]});
        assert!(redact_json(&mut v));
        let s = v.to_string();
        assert!(
            !s.contains("s3cr3t") && !s.contains(JWT) && !s.contains("\"r\""),
            "{s}"
        );
        assert!(s.contains("InternalError"));
    }

    #[test]
    fn secret_names_in_any_case_and_spelling_short_or_long() {
        for secret in [
            "client_secret",
            "clientSecret",
            "Password",
            "refresh-token",
            "accessToken",
            "API_KEY",
            "sig",
            "ClientAssertion",
        ] {
            assert!(is_secret_name(secret), "{secret}");
            // The same name past the stack buffer, and with a non-ASCII letter, takes the
            // other path and must answer the same.
            let long = format!("{}{secret}", "x".repeat(80));
            let unicode = format!("é{secret}");
            let expected = !matches!(secret, "sig" | "API_KEY" | "ClientAssertion");
            assert_eq!(is_secret_name(&long), expected, "{long}");
            assert_eq!(is_secret_name(&unicode), expected, "{unicode}");
        }
        for plain in [
            "id",
            "groupId",
            "tokenType",
            "target",
            "signatureAlgorithm",
            "é",
            "",
        ] {
            assert!(!is_secret_name(plain), "{plain}");
        }
        assert!(is_secret_name(&format!("{}Secret", "ü".repeat(40))));
    }

    #[test]
    fn query_parameters() {
        assert_eq!(
            redact_query("a=1&access_token=xyz&sig=abc"),
            "a=1&access_token=REDACTED&sig=REDACTED"
        );
        assert!(matches!(
            redact_query("$select=id&$top=5"),
            Cow::Borrowed(_)
        ));
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
