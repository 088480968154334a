//! Links: the links a client follows stay on the proxy.
//!
//! Graph answers a collection with an absolute `@odata.nextLink` (and a delta query with an
//! `@odata.deltaLink`), and a create with an absolute `Location`. A client whose base URL is
//! graph-vcr follows them straight to the real host: offline CI fails, and online the calls
//! reach a tenant behind the proxy's back. So every such link that points at the upstream (or
//! any Graph host) is rewritten:
//!
//! - **stored** with the origin [`STORED_ORIGIN`], whatever upstream it came from, so a
//!   recording made by base URL replays through the forward proxy and the other way round;
//! - **served** with the origin the client used: `http://HOST` of its `Host` header by base
//!   URL, `https://graph.microsoft.com` (the host it asked for) as `HTTPS_PROXY` ([`ClientOrigin`]).
//!
//! Bodies are rewritten in place as text, not parsed and re-serialized: only the origin of a
//! link value changes, so every other byte the service sent is kept, and the work is one linear
//! scan, done only when the body names a link at all.

use crate::interaction::{Body, RecordedResponse};
use crate::upstream::UpstreamResponse;
use bytes::Bytes;
use http::HeaderValue;
use http::header::{CONTENT_ENCODING, LOCATION};
use http::request::Parts;

/// The origin links are stored with.
pub const STORED_ORIGIN: &str = "https://graph.microsoft.com";

/// Graph's hosts in every cloud: a link to any of them is a link to the service.
const GRAPH_HOSTS: [&str; 5] = [
    "graph.microsoft.com",
    "canary.graph.microsoft.com",
    "graph.microsoft.us",
    "dod-graph.microsoft.us",
    "microsoftgraph.chinacloudapi.cn",
];

/// The JSON members whose values are links a client follows.
const LINK_MEMBERS: [&[u8]; 2] = [b"@odata.nextLink\"", b"@odata.deltaLink\""];

/// Set by forward mode on a request it decrypted: the origin the client asked for
/// (`https://graph.microsoft.com`). Without it the client used graph-vcr as its base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOrigin(pub String);

/// The origin the client used for this request, which links in its answer must point at.
pub fn client_origin(parts: &Parts) -> String {
    if let Some(ClientOrigin(o)) = parts.extensions.get::<ClientOrigin>() {
        return o.clone();
    }
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()));
    match host {
        // A Host that is not a plain authority is not echoed into links.
        Some(h) if !h.is_empty() && h.bytes().all(is_authority_byte) => format!("http://{h}"),
        _ => STORED_ORIGIN.to_string(),
    }
}

fn is_authority_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_')
}

/// The origins whose links are the service's own: the upstream's, and every Graph host's.
pub fn service_origins(upstream: &str) -> Vec<String> {
    let mut origins: Vec<String> = GRAPH_HOSTS.iter().map(|h| format!("https://{h}")).collect();
    let upstream = upstream.trim_end_matches('/');
    if !origins.iter().any(|o| o.eq_ignore_ascii_case(upstream)) {
        origins.push(upstream.to_string());
    }
    origins
}

/// A response about to be stored: its links with [`STORED_ORIGIN`]. The gate has decoded the
/// body already, so it is searched as sent.
pub fn to_stored(response: &mut RecordedResponse, upstream: &str) {
    let from = service_origins(upstream);
    for (name, value) in &mut response.headers {
        if name.eq_ignore_ascii_case("location")
            && let Some(v) = rewrite_link(value, &from, STORED_ORIGIN)
        {
            *value = v;
        }
    }
    if let Some(bytes) = response.body.to_bytes()
        && let Some(rewritten) = rewrite_body(&bytes, &from, STORED_ORIGIN)
    {
        response.body = Body::from_bytes(&rewritten);
    }
}

/// The upstream's answer about to be passed on: its links with the client's origin. A
/// compressed body that holds links is passed on decoded.
pub fn to_client(response: &mut UpstreamResponse, from: &[String], to: &str) {
    if let Some(v) = response.headers.get(LOCATION).and_then(|v| v.to_str().ok())
        && let Some(v) = rewrite_link(v, from, to)
        && let Ok(v) = HeaderValue::from_str(&v)
    {
        response.headers.insert(LOCATION, v);
    }
    let encoding = response
        .headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let decoded = match &encoding {
        None => None,
        Some(e) => match crate::redact::decode(e, &response.body) {
            Some(d) => Some(d),
            // Not decodable: passed on as it came.
            None => return,
        },
    };
    let plain = decoded.as_deref().unwrap_or(&response.body);
    if let Some(rewritten) = rewrite_body(plain, from, to) {
        response.body = Bytes::from(rewritten);
        response.headers.remove(CONTENT_ENCODING);
    }
}

/// A stored body about to be served: links with the client's origin. `origin` is asked only
/// when the body has a link, so a replayed body without one (nearly all) costs one search.
pub fn served_body<'a>(body: &'a [u8], origin: &dyn Fn() -> String) -> std::borrow::Cow<'a, [u8]> {
    if find_link(body, 0).is_none() {
        return std::borrow::Cow::Borrowed(body);
    }
    let to = origin();
    match (to != STORED_ORIGIN)
        .then(|| rewrite_body(body, &[STORED_ORIGIN], &to))
        .flatten()
    {
        Some(v) => std::borrow::Cow::Owned(v),
        None => std::borrow::Cow::Borrowed(body),
    }
}

/// A stored `Location` value about to be served.
pub fn served_location(value: &str, to: &str) -> Option<String> {
    (to != STORED_ORIGIN)
        .then(|| rewrite_link(value, &[STORED_ORIGIN], to))
        .flatten()
}

/// `link` with its origin replaced by `to`, when its origin is one of `from`.
fn rewrite_link(link: &str, from: &[impl AsRef<str>], to: &str) -> Option<String> {
    let len = origin_match(link.as_bytes(), from)?;
    Some(format!("{to}{}", &link[len..]))
}

/// The length of the origin of `from` that `text` starts with (case-insensitively, `/` also
/// escaped as `\/`), ending where the origin ends: at `/`, `?`, `#`, `"` or the end.
fn origin_match(text: &[u8], from: &[impl AsRef<str>]) -> Option<usize> {
    from.iter().find_map(|origin| {
        let len = prefix_len(text, origin.as_ref().as_bytes())?;
        match text.get(len) {
            None | Some(b'/' | b'?' | b'#' | b'"' | b'\\') => Some(len),
            _ => None,
        }
    })
}

/// How many bytes of `text` spell `origin`, where `text` may write each `/` as `\/`.
fn prefix_len(text: &[u8], origin: &[u8]) -> Option<usize> {
    let mut at = 0;
    for &want in origin {
        match text.get(at) {
            Some(b'\\') if want == b'/' && text.get(at + 1) == Some(&b'/') => at += 2,
            Some(c) if c.eq_ignore_ascii_case(&want) => at += 1,
            _ => return None,
        }
    }
    Some(at)
}

/// `body` with the origin of every link member's value that is one of `from` replaced by
/// `to`; `None` when no link changed (the common case, found without allocating).
pub fn rewrite_body(body: &[u8], from: &[impl AsRef<str>], to: &str) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut at = 0;
    while let Some(found) = find_link(body, at) {
        at = found.value;
        if let Some(len) = origin_match(&body[found.value..], from) {
            let o = out.get_or_insert_with(|| Vec::with_capacity(body.len() + 64));
            o.extend_from_slice(&body[copied..found.value]);
            o.extend_from_slice(to.as_bytes());
            copied = found.value + len;
            at = copied;
        }
    }
    let mut out = out?;
    out.extend_from_slice(&body[copied..]);
    Some(out)
}

struct Found {
    /// Where the link value's text starts (after its opening quote).
    value: usize,
}

/// The next link member at or after `from`: `"…@odata.nextLink" : "`.
fn find_link(body: &[u8], from: usize) -> Option<Found> {
    let mut at = from;
    loop {
        let rest = body.get(at..)?;
        let offset = rest.iter().position(|b| *b == b'@')?;
        let start = at + offset;
        at = start + 1;
        let Some(member) = LINK_MEMBERS
            .iter()
            .find(|m| body.get(start..start + m.len()) == Some(**m))
        else {
            continue;
        };
        let mut i = start + member.len();
        while body.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        if body.get(i) != Some(&b':') {
            continue;
        }
        i += 1;
        while body.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        if body.get(i) == Some(&b'"') {
            return Some(Found { value: i + 1 });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(upstream: &str) -> Vec<String> {
        service_origins(upstream)
    }

    #[test]
    fn next_and_delta_links_get_the_new_origin_and_nothing_else_changes() {
        let body = br#"{"value":[{"id":"a","web":"https://graph.microsoft.com/x"}], "@odata.nextLink" : "https://localhost:8443/v1.0/deviceManagement/deviceConfigurations?$skiptoken=abc","x@odata.deltaLink":"https:\/\/graph.microsoft.com\/beta\/d?$deltatoken=1"}"#;
        let out = rewrite_body(body, &from("https://localhost:8443"), "http://127.0.0.1:9")
            .map(String::from_utf8);
        let out = out.and_then(Result::ok).unwrap_or_default();
        assert_eq!(
            out,
            r#"{"value":[{"id":"a","web":"https://graph.microsoft.com/x"}], "@odata.nextLink" : "http://127.0.0.1:9/v1.0/deviceManagement/deviceConfigurations?$skiptoken=abc","x@odata.deltaLink":"http://127.0.0.1:9\/beta\/d?$deltatoken=1"}"#
        );
    }

    #[test]
    fn other_hosts_and_lookalikes_are_left_alone() {
        for body in [
            r#"{"@odata.nextLink":"https://graph.microsoft.com.evil.example/v1.0/x"}"#,
            r#"{"@odata.nextLink":"https://example.com/v1.0/x"}"#,
            r#"{"@odata.nextLink":42}"#,
            r#"{"value":[],"note":"@odata.nextLink"}"#,
            r#"{"@odata.nextLink""#,
            "@",
        ] {
            assert!(
                rewrite_body(body.as_bytes(), &from("https://up.example"), "http://h").is_none(),
                "{body}"
            );
        }
    }

    #[test]
    fn the_client_origin_is_its_host_or_what_forward_mode_says() {
        let parts = |host: &str| {
            let (mut p, ()) = http::Request::new(()).into_parts();
            if let Ok(v) = http::HeaderValue::from_str(host) {
                p.headers.insert(http::header::HOST, v);
            }
            p
        };
        assert_eq!(
            client_origin(&parts("127.0.0.1:8080")),
            "http://127.0.0.1:8080"
        );
        // A Host that is not a plain authority is not echoed into links.
        assert_eq!(client_origin(&parts("evil.example/\"><x")), STORED_ORIGIN);
        let mut forwarded = parts("ignored");
        forwarded
            .extensions
            .insert(ClientOrigin("https://graph.microsoft.us".into()));
        assert_eq!(client_origin(&forwarded), "https://graph.microsoft.us");
    }

    #[test]
    fn stored_links_are_served_with_the_client_origin() {
        let stored = br#"{"@odata.nextLink":"https://graph.microsoft.com/v1.0/x?$skiptoken=1"}"#;
        assert_eq!(
            served_body(stored, &|| "http://127.0.0.1:7".to_string()).as_ref(),
            br#"{"@odata.nextLink":"http://127.0.0.1:7/v1.0/x?$skiptoken=1"}"#
        );
        assert_eq!(
            served_body(stored, &|| STORED_ORIGIN.to_string()).as_ref(),
            stored
        );
        let asked = std::cell::Cell::new(false);
        let plain = br#"{"value":[]}"#;
        served_body(plain, &|| {
            asked.set(true);
            STORED_ORIGIN.to_string()
        });
        assert!(
            !asked.get(),
            "a body without links does not ask for the origin"
        );
        assert_eq!(
            served_location("HTTPS://GRAPH.MICROSOFT.COM/v1.0/a/1", "http://h:1").as_deref(),
            Some("http://h:1/v1.0/a/1")
        );
    }
}
