//! Verdict: what a request's headers alone say, remembered per worker thread.
//!
//! The header checks (`Authorization`, `Content-Type`, `Accept`) and the token's grant run on
//! every assign request, memo hits included, and a run sends the same few header values again
//! and again. Each worker thread keeps the verdict on the last values it saw, so a repeat
//! costs three comparisons instead of splitting and parsing the values and building the grant
//! from the token's claims. (The kept values never leave the process and die with the thread.)

use super::permissions::Granted;
use super::{Deviation, check_headers, gate};
use http::HeaderMap;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use std::cell::RefCell;

/// The header values a verdict depends on, as sent.
#[derive(PartialEq, Eq)]
struct Inputs {
    authorization: Option<Box<[u8]>>,
    content_type: Option<Box<[u8]>>,
    accept: Option<Box<[u8]>>,
}

struct Verdict {
    inputs: Inputs,
    /// The header deviations, gated.
    found: Vec<Deviation>,
    granted: Option<Granted>,
}

fn matches(kept: &Option<Box<[u8]>>, headers: &HeaderMap, name: http::HeaderName) -> bool {
    kept.as_deref() == headers.get(name).map(http::HeaderValue::as_bytes)
}

/// Runs `f` on the header deviations of `headers` (gated) and the grant of their token.
pub(super) fn with<R>(
    headers: &HeaderMap,
    f: impl FnOnce(&[Deviation], Option<&Granted>) -> R,
) -> R {
    thread_local! {
        static LAST: RefCell<Option<Verdict>> = const { RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        let fresh = match last.as_ref() {
            Some(v) => {
                !(matches(&v.inputs.authorization, headers, AUTHORIZATION)
                    && matches(&v.inputs.content_type, headers, CONTENT_TYPE)
                    && matches(&v.inputs.accept, headers, ACCEPT))
            }
            None => true,
        };
        if fresh {
            let mut found = Vec::new();
            check_headers(headers, &mut found);
            gate(&mut found);
            let value = |name| {
                headers
                    .get(name)
                    .map(|v: &http::HeaderValue| v.as_bytes().into())
            };
            *last = Some(Verdict {
                inputs: Inputs {
                    authorization: value(AUTHORIZATION),
                    content_type: value(CONTENT_TYPE),
                    accept: value(ACCEPT),
                },
                found,
                granted: Granted::of_headers(headers),
            });
        }
        match last.as_ref() {
            Some(v) => f(&v.found, v.granted.as_ref()),
            None => f(&[], None),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn codes(headers: &HeaderMap) -> Vec<&'static str> {
        with(headers, |found, _| {
            found.iter().map(|d| d.code.as_str()).collect()
        })
    }

    #[test]
    fn a_changed_header_is_checked_afresh() {
        let mut good = HeaderMap::new();
        good.insert(AUTHORIZATION, HeaderValue::from_static("Bearer a.b.c"));
        good.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let mut basic = good.clone();
        basic.insert(AUTHORIZATION, HeaderValue::from_static("Basic dXNlcg=="));
        let mut text = good.clone();
        text.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let mut refuses = good.clone();
        refuses.insert(ACCEPT, HeaderValue::from_static("text/html"));
        for _ in 0..2 {
            assert!(codes(&good).is_empty());
            assert_eq!(codes(&basic), ["auth-not-bearer"]);
            assert!(codes(&good).is_empty());
            assert_eq!(codes(&text), ["content-type-not-json"]);
            assert_eq!(codes(&refuses), ["accept-excludes-json"]);
            let mut none = good.clone();
            none.remove(AUTHORIZATION);
            assert_eq!(codes(&none), ["auth-missing"]);
        }
    }
}
