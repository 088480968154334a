//! Headers: which headers cross the proxy, and which are the proxy's own.
//!
//! Hop-by-hop headers belong to one connection and are never forwarded or stored (RFC 9110
//! §7.6.1). `x-graph-vcr-*` request headers are instructions to graph-vcr and never reach the
//! tenant.

use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderName};
use http::{HeaderMap, HeaderValue};

/// The request header that selects a cassette for one request.
pub const CASSETTE_HEADER: &str = "x-graph-vcr-cassette";
/// Response header saying how graph-vcr answered (`replayed`, `recorded`, `forwarded`, ...).
pub const OUTCOME_HEADER: &str = "x-graph-vcr-outcome";
/// Response header listing the contract deviations of the call.
pub const DEVIATIONS_HEADER: &str = "x-graph-vcr-deviations";

// The same names as `HeaderName`s, for the per-request path: looking a header up or inserting
// it by `&str` parses and validates the name every time.
pub const CASSETTE: HeaderName = HeaderName::from_static(CASSETTE_HEADER);
pub const OUTCOME: HeaderName = HeaderName::from_static(OUTCOME_HEADER);
pub const DEVIATIONS: HeaderName = HeaderName::from_static(DEVIATIONS_HEADER);
/// The client's request id, which Graph echoes in its answer.
pub const CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("client-request-id");

/// The request headers graph-vcr reads on every request, each the first value of its name (as
/// `HeaderMap::get` gives it), found in one pass over the map: a lookup by name hashes the
/// name (all of it, for a name `http` has no constant for), and there were five per request.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    pub map: &'a HeaderMap,
    pub authorization: Option<&'a HeaderValue>,
    pub content_type: Option<&'a HeaderValue>,
    pub accept: Option<&'a HeaderValue>,
    /// `x-graph-vcr-cassette`.
    pub cassette: Option<&'a HeaderValue>,
    pub client_request_id: Option<&'a HeaderValue>,
}

impl<'a> Asked<'a> {
    pub fn of(map: &'a HeaderMap) -> Self {
        let mut asked = Self {
            map,
            authorization: None,
            content_type: None,
            accept: None,
            cassette: None,
            client_request_id: None,
        };
        // Bounded by the request's header count (hyper's `--max-headers`).
        for (name, value) in map {
            let slot = if *name == AUTHORIZATION {
                &mut asked.authorization
            } else if *name == CONTENT_TYPE {
                &mut asked.content_type
            } else if *name == ACCEPT {
                &mut asked.accept
            } else if *name == CASSETTE {
                &mut asked.cassette
            } else if *name == CLIENT_REQUEST_ID {
                &mut asked.client_request_id
            } else {
                continue;
            };
            slot.get_or_insert(value);
        }
        asked
    }
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether `name` is hop-by-hop, by the fixed list or by the message's `Connection` header.
pub fn is_hop_by_hop(name: &HeaderName, headers: &HeaderMap) -> bool {
    let n = name.as_str();
    HOP_BY_HOP.contains(&n)
        || headers.get_all(http::header::CONNECTION).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(n)))
        })
}

/// Whether `name` is one of graph-vcr's own control headers.
pub fn is_control(name: &HeaderName) -> bool {
    name.as_str().starts_with("x-graph-vcr-")
}

/// The end-to-end headers of a message, without hop-by-hop, control, `host` and
/// `content-length` (which the outgoing side sets from the actual body).
pub fn end_to_end(headers: &HeaderMap) -> impl Iterator<Item = (&HeaderName, &http::HeaderValue)> {
    headers.iter().filter(move |(name, _)| {
        !is_hop_by_hop(name, headers)
            && !is_control(name)
            && *name != http::header::HOST
            && *name != http::header::CONTENT_LENGTH
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_hop_by_hop_control_and_framing() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            "close, x-custom-hop"
                .parse()
                .unwrap_or(http::HeaderValue::from_static("")),
        );
        h.insert("x-custom-hop", http::HeaderValue::from_static("1"));
        h.insert(
            "transfer-encoding",
            http::HeaderValue::from_static("chunked"),
        );
        h.insert(CASSETTE_HEADER, http::HeaderValue::from_static("c"));
        h.insert("host", http::HeaderValue::from_static("h"));
        h.insert("content-length", http::HeaderValue::from_static("3"));
        h.insert("authorization", http::HeaderValue::from_static("Bearer t"));
        h.insert("client-request-id", http::HeaderValue::from_static("c1"));
        let kept: Vec<&str> = end_to_end(&h).map(|(n, _)| n.as_str()).collect();
        assert_eq!(kept, vec!["authorization", "client-request-id"]);
    }

    #[test]
    fn asked_headers_are_what_a_lookup_by_name_finds() {
        let v = HeaderValue::from_static;
        let mut h = HeaderMap::new();
        h.append("x-other", v("o"));
        h.append("Accept", v("application/json"));
        h.append("client-request-id", v("first"));
        h.append("X-Graph-Vcr-Cassette", v("tenant"));
        h.append("authorization", v("Bearer a.b.c"));
        // A name sent twice: the first value is the one a lookup gives.
        h.append("client-request-id", v("second"));
        h.append("accept", v("text/html"));
        let asked = Asked::of(&h);
        let names = [
            (asked.authorization, AUTHORIZATION),
            (asked.content_type, CONTENT_TYPE),
            (asked.accept, ACCEPT),
            (asked.cassette, CASSETTE),
            (asked.client_request_id, CLIENT_REQUEST_ID),
        ];
        for (found, name) in names {
            assert_eq!(found, h.get(&name), "{name}");
        }
        assert_eq!(asked.client_request_id, Some(&v("first")));
        assert_eq!(asked.accept, Some(&v("application/json")));
        assert_eq!(asked.content_type, None);
    }
}
