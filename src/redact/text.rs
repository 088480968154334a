//! Text: credentials found by their shape, in bytes of any kind (header values, query strings,
//! form bodies, JSON strings, connection strings, messages, whole serialized records).
//!
//! One pass, left to right; each rule starts at a byte that cheaply rules most positions out:
//! - a JWT: `eyJ` + base64url, two dots (also written `%2E`), a signature;
//! - a scheme and its token: `Bearer`, `Basic` followed by a space, `+` or `%20`;
//! - a secret parameter's value: `name=value` (also `name%3Dvalue`) with a name
//!   [`rules::is_secret_param`] accepts: query strings, form bodies, `sig=` in a SAS URL,
//!   `AccountKey=` in a connection string;
//! - a secret member in JSON-like text: `"name": "value"` (also with `\"` quotes, as inside a
//!   serialized string) with a name [`rules::is_secret_field`] accepts.

use super::{REDACTED, Secrets, rules};
use std::borrow::Cow;

fn is_b64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

fn is_token_char(c: u8) -> bool {
    is_b64url(c) || matches!(c, b'.' | b'~' | b'+' | b'/' | b'=' | b'%')
}

fn is_param_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'$')
}

/// Where a secret parameter's value ends: the next separator of queries, forms, connection
/// strings, quoted text or markup (`%26` is an encoded `&`).
fn value_end(s: &[u8], start: usize) -> usize {
    let mut i = start;
    while i < s.len() {
        match s[i] {
            b'&' | b';' | b',' | b'"' | b'\'' | b'<' | b'>' | b'#' | b'\\' | b')' => break,
            c if c.is_ascii_whitespace() => break,
            b'%' if s[i..].len() >= 3 && s[i + 1..i + 3].eq_ignore_ascii_case(b"26") => break,
            _ => i += 1,
        }
    }
    i
}

/// A dot between JWT parts: `.` or `%2E`. Its length.
fn dot(s: &[u8]) -> Option<usize> {
    match s {
        [b'.', ..] => Some(1),
        [b'%', b'2', b'e' | b'E', ..] => Some(3),
        _ => None,
    }
}

/// Length of a JWT starting at `s[0]`, if one does.
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
        if part < 2 {
            if i - start < 8 {
                return None;
            }
            i += dot(&s[i..])?;
        }
    }
    Some(i)
}

/// `Bearer`/`Basic` + separator at `s[0]`: where its token starts.
fn scheme_token_start(s: &[u8]) -> Option<usize> {
    let scheme = [&b"bearer"[..], b"basic"]
        .into_iter()
        .find(|p| s.len() > p.len() && s[..p.len()].eq_ignore_ascii_case(p))?;
    let rest = &s[scheme.len()..];
    let sep = match rest {
        [b' ' | b'+', ..] => 1,
        [b'%', b'2', b'0', ..] => 3,
        _ => return None,
    };
    Some(scheme.len() + sep)
}

/// At `s[eq]` (`=` or `%3D`): the secret value's span after it, if the name before it is a
/// secret parameter.
fn param_value(s: &[u8], eq: usize) -> Option<(usize, usize)> {
    let skip = match &s[eq..] {
        [b'=', ..] => 1,
        [b'%', b'3', b'd' | b'D', ..] => 3,
        _ => return None,
    };
    let mut start = eq;
    while start > 0 && is_param_name_char(s[start - 1]) {
        start -= 1;
    }
    // In an encoded URL the name follows an escape (`%3Fcode`, `%26key`): not its hex digits.
    if start > 0 && s[start - 1] == b'%' && eq - start > 2 {
        start += 2;
    }
    let name = std::str::from_utf8(&s[start..eq]).ok()?;
    if name.is_empty() || !rules::is_secret_param(name) {
        return None;
    }
    let from = eq + skip;
    Some((from, value_end(s, from)))
}

/// At `s[q]` (a `"`, maybe after a `\`): `"name" : "value"` with a secret name; the value's
/// span inside its quotes.
fn member_value(s: &[u8], q: usize) -> Option<(usize, usize)> {
    let escaped = q > 0 && s[q - 1] == b'\\';
    let quote: &[u8] = if escaped { b"\\\"" } else { b"\"" };
    let name_start = q + 1;
    let name_len = s[name_start..]
        .iter()
        .take(128)
        .position(|c| *c == b'"' || *c == b'\\')?;
    let name = std::str::from_utf8(&s[name_start..name_start + name_len]).ok()?;
    if !rules::is_secret_field(name) {
        return None;
    }
    let mut i = name_start + name_len;
    i += usize::from(escaped);
    if s.get(i) != Some(&b'"') {
        return None;
    }
    i += 1;
    while s.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    if s.get(i) != Some(&b':') {
        return None;
    }
    i += 1;
    while s.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    if !s[i..].starts_with(quote) {
        return None;
    }
    let from = i + quote.len();
    // The value ends at its closing quote: one with an even number of backslashes before it,
    // or, inside a serialized string (`\"`), with one backslash more than a multiple of four
    // (an inner escaped quote arrives as `\\\"`).
    let mut end = from;
    while end < s.len() {
        if s[end] == b'"' {
            let k = s[from..end]
                .iter()
                .rev()
                .take_while(|c| **c == b'\\')
                .count();
            let closes = if escaped { k % 4 == 1 } else { k % 2 == 0 };
            if closes {
                end -= usize::from(escaped);
                break;
            }
        }
        end += 1;
    }
    Some((from, end))
}

/// The span to redact starting at `i`, if a rule matches there: (start, end) of the secret.
fn span_at(s: &[u8], i: usize) -> Option<(usize, usize)> {
    match s[i] {
        b'e' => jwt_len(&s[i..]).map(|n| (i, i + n)),
        b'b' | b'B' => {
            let start = i + scheme_token_start(&s[i..])?;
            let mut end = start;
            while end < s.len() && is_token_char(s[end]) {
                end += 1;
            }
            Some((start, end))
        }
        b'=' | b'%' => param_value(s, i),
        b'"' => member_value(s, i),
        _ => None,
    }
}

/// Replaces every credential-shaped span of `input`, remembering each value in `secrets`.
pub fn scrub<'a>(input: &'a [u8], mut secrets: Option<&mut Secrets>) -> Cow<'a, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < input.len() {
        let span = span_at(input, i).filter(|(start, end)| {
            end > start && !input[*start..].starts_with(REDACTED.as_bytes())
        });
        match span {
            Some((start, end)) if start >= copied => {
                if let Some(s) = secrets.as_deref_mut() {
                    s.add(&input[start..end]);
                }
                let buf = out.get_or_insert_with(|| Vec::with_capacity(input.len()));
                buf.extend_from_slice(&input[copied..start]);
                buf.extend_from_slice(REDACTED.as_bytes());
                copied = end;
                i = end;
            }
            _ => i += 1,
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

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str =
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2dyYXBoIn0.c2lnbmF0dXJlLXNpZw";

    fn s(text: &str) -> String {
        String::from_utf8_lossy(&scrub(text.as_bytes(), None)).into_owned()
    }

    #[test]
    fn each_shape() {
        let cases = [
            (format!("t {JWT} x"), "t REDACTED x".to_string()),
            (JWT.replace('.', "%2E"), "REDACTED".into()),
            ("Bearer opaque-tok_1 end".into(), "Bearer REDACTED end".into()),
            ("Bearer%20opaque-tok_1".into(), "Bearer%20REDACTED".into()),
            ("basic dXNlcjpwYXNz".into(), "basic REDACTED".into()),
            (
                "https://a.blob.core.windows.net/c?sv=2020&sig=abc%2Bdef%3D&se=1".into(),
                "https://a.blob.core.windows.net/c?sv=2020&sig=REDACTED&se=1".into(),
            ),
            (
                "client_id=x&client_secret=s3cr3t&refresh_token=0.AXabc&code=c0de&client_assertion=a".into(),
                "client_id=x&client_secret=REDACTED&refresh_token=REDACTED&code=REDACTED&client_assertion=REDACTED".into(),
            ),
            (
                "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=k3y==;EndpointSuffix=x".into(),
                "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=REDACTED;EndpointSuffix=x".into(),
            ),
            ("?key=abc&$skiptoken=page2".into(), "?key=REDACTED&$skiptoken=page2".into()),
            ("next%3Fcode%3Dabc%26x%3D1".into(), "next%3Fcode%3DREDACTED%26x%3D1".into()),
            (
                r#"junk {"password": "hunter22", "id": "1"}"#.into(),
                r#"junk {"password": "REDACTED", "id": "1"}"#.into(),
            ),
            (
                r#"{"m":"{\"secretText\":\"abc\\\"def\"}"}"#.into(),
                r#"{"m":"{\"secretText\":\"REDACTED\"}"}"#.into(),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(s(&input), want, "{input}");
            // Idempotent: a second pass changes nothing.
            assert!(
                matches!(scrub(want.as_bytes(), None), Cow::Borrowed(_)),
                "{want}"
            );
        }
    }

    #[test]
    fn plain_text_is_borrowed() {
        for plain in [
            "eyJhbGciOi is not a token",
            "$select=id&$top=5&$skiptoken=X",
            r#"{"code":"InternalError","message":"x"}"#,
            "Content-Type is \"text/plain; charset=utf-8\"",
            "Bearer REDACTED",
        ] {
            assert!(
                matches!(scrub(plain.as_bytes(), None), Cow::Borrowed(_)),
                "{plain}"
            );
        }
    }

    #[test]
    fn values_are_remembered() {
        let mut secrets = Secrets::default();
        let _ = scrub(b"a=1&client_secret=long-secret-value", Some(&mut secrets));
        assert_eq!(
            secrets.scrub(b"echo long-secret-value".to_vec()),
            b"echo REDACTED".to_vec()
        );
    }
}
