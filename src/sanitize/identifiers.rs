//! Identifiers: finding a tenant's GUIDs, addresses (UPNs, e-mail) and `*.onmicrosoft.com`
//! domains in any text (a path, a query, a header, a JSON or other body) and replacing each
//! with its alias.
//!
//! The scan works on the bytes as sent, so it must not cut an escape in two: a match that
//! begins inside a percent-escape (`%27alice%40contoso.com`) or a JSON escape (`\nalice@…`,
//! `\u00e9…`) starts again after it. Aliases use only `[a-z0-9.-]` (and the `@` or `%40` the
//! address was written with), so JSON and URLs stay valid. OData annotations
//! (`value@odata.nextLink`, `@microsoft.graph.conflictBehavior`) are not addresses.

use super::aliases::{Aliaser, is_guid};
use regex::bytes::Regex;
use std::borrow::Cow;
use std::sync::LazyLock;

static IDENTIFIER: LazyLock<Regex> = LazyLock::new(|| {
    // A constant pattern: a unit test compiles it.
    #[allow(clippy::expect_used)]
    Regex::new(concat!(
        r"(?i-u)(?P<local>[a-z0-9_][a-z0-9._+'#&=~-]*)(?P<at>@|%40)(?P<edomain>(?:[a-z0-9-]+\.)+[a-z]{2,})",
        r"|(?P<domain>(?:[a-z0-9-]+\.)+onmicrosoft\.com)",
        r"|(?P<guid>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})",
    ))
    .expect("the identifier pattern compiles")
});

/// Namespaces of OData annotations, which look like addresses (`value@odata.count`).
const ANNOTATIONS: [&str; 3] = ["odata.", "microsoft.graph.", "core."];

/// `text` with every identifier replaced by its alias (borrowed when there was none).
pub fn pseudonymize<'a>(aliaser: &Aliaser, text: &'a [u8]) -> Cow<'a, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut pos = 0;
    while pos < text.len() {
        let Some(caps) = IDENTIFIER.captures_at(text, pos) else {
            break;
        };
        let Some(whole) = caps.get(0) else { break };
        if let Some(after) = escape_end(text, whole.start()) {
            pos = after;
            continue;
        }
        let alias = alias_of(aliaser, &caps, text, whole.start(), whole.end());
        let Some(alias) = alias else {
            pos = whole.start() + 1;
            continue;
        };
        if alias.as_bytes() != whole.as_bytes() {
            let buf = out.get_or_insert_with(|| Vec::with_capacity(text.len()));
            buf.extend_from_slice(&text[copied..whole.start()]);
            buf.extend_from_slice(alias.as_bytes());
            copied = whole.end();
        }
        pos = whole.end();
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut buf) => {
            buf.extend_from_slice(&text[copied..]);
            Cow::Owned(buf)
        }
    }
}

/// The alias for one match, or `None` when it is not an identifier after all (part of a
/// longer word, or an OData annotation).
fn alias_of(
    aliaser: &Aliaser,
    caps: &regex::bytes::Captures<'_>,
    text: &[u8],
    start: usize,
    end: usize,
) -> Option<String> {
    let str_of = |name: &str| {
        caps.name(name)
            .and_then(|m| std::str::from_utf8(m.as_bytes()).ok())
    };
    if let (Some(local), Some(at), Some(domain)) =
        (str_of("local"), str_of("at"), str_of("edomain"))
    {
        let lower = domain.to_ascii_lowercase();
        if ANNOTATIONS.iter().any(|a| lower.starts_with(a)) {
            return None;
        }
        return Some(aliaser.address(local, domain, at));
    }
    let word = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    let inside_a_word = (start > 0 && word(text.get(start - 1)) && !ends_an_escape(text, start))
        || word(text.get(end));
    if let Some(domain) = str_of("domain") {
        return (!inside_a_word).then(|| aliaser.domain(domain));
    }
    let guid = str_of("guid")?;
    (is_guid(guid.as_bytes()) && !inside_a_word && text.get(end) != Some(&b'-'))
        .then(|| aliaser.guid(guid).into_owned())
}

/// Whether an escape (`%27`, `\n`, `\u00e9`) ends just before `at`: its last character is
/// then no part of the word that follows.
fn ends_an_escape(text: &[u8], at: usize) -> bool {
    let hex = |i: usize| text.get(i).is_some_and(u8::is_ascii_hexdigit);
    (at >= 3 && text[at - 3] == b'%' && hex(at - 2) && hex(at - 1))
        || (at >= 2 && text[at - 2] == b'\\')
        || (at >= 6 && text[at - 6] == b'\\' && text[at - 5] == b'u' && (at - 4..at).all(hex))
}

/// When `start` falls inside a percent-escape or a JSON escape: where that escape ends.
fn escape_end(text: &[u8], start: usize) -> Option<usize> {
    let hex = |i: usize| text.get(i).is_some_and(u8::is_ascii_hexdigit);
    for back in 1..=2 {
        if start >= back
            && text[start - back] == b'%'
            && hex(start - back + 1)
            && hex(start - back + 2)
        {
            return Some(start - back + 3);
        }
    }
    for back in 1..=5 {
        if start < back || text[start - back] != b'\\' {
            continue;
        }
        let esc = start - back;
        let end = if text.get(esc + 1) == Some(&b'u') && (2..6).all(|k| hex(esc + k)) {
            esc + 6
        } else {
            esc + 2
        };
        if end > start {
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> String {
        let a = Aliaser::new(b"test key 0123456789");
        String::from_utf8_lossy(&pseudonymize(&a, text.as_bytes())).into_owned()
    }

    const ID: &str = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";

    #[test]
    fn guids_addresses_and_domains_are_replaced() {
        let text = format!(
            r#"{{"id":"{ID}","upn":"Alice@Contoso.onmicrosoft.com","mail":"bob@contoso.com","d":"contoso.onmicrosoft.com"}}"#
        );
        let out = run(&text);
        for real in [ID, "Alice", "alice", "Contoso", "contoso", "bob"] {
            assert!(!out.contains(real), "{real} left in {out}");
        }
        assert!(
            serde_json::from_str::<serde_json::Value>(&out).is_ok(),
            "{out}"
        );
        assert_eq!(run(&out), out, "aliases map to themselves");
    }

    #[test]
    fn escapes_are_not_cut() {
        let q = format!(
            "$filter=userPrincipalName%20eq%20%27alice%40contoso.com%27%20and%20id%20eq%20%27{ID}%27"
        );
        let out = run(&q);
        assert!(!out.contains("alice") && !out.contains(ID), "{out}");
        assert!(
            out.contains("%27user-") && out.contains("%27%20and"),
            "{out}"
        );
        let json = r#"{"note":"line\nalice@contoso.com \u00e9bob@contoso.com"}"#;
        let out = run(json);
        assert!(
            serde_json::from_str::<serde_json::Value>(&out).is_ok(),
            "{out}"
        );
        assert!(!out.contains("alice") && !out.contains("bob"), "{out}");
    }

    #[test]
    fn annotations_and_longer_words_stay() {
        let text = format!(
            r#"{{"value@odata.nextLink":"x","a@microsoft.graph.conflictBehavior":"y","k":"x{ID}","g":"{ID}-1"}}"#
        );
        assert_eq!(run(&text), text);
    }

    #[test]
    fn guest_upns_go_whole() {
        let out = run("alice_contoso.com#EXT#@fabrikam.onmicrosoft.com");
        assert!(!out.contains("alice") && !out.contains("fabrikam"), "{out}");
    }
}
