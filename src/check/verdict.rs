//! Verdict: what a request's headers alone say, remembered per worker thread.
//!
//! The header checks (`Authorization`, `Content-Type`, `Accept`) and the token's grant run on
//! every assign request, memo hits included, and a run sends the same few header values again
//! and again. Each worker thread keeps the verdict on the last values it saw, so a repeat
//! costs three comparisons instead of splitting and parsing the values and building the grant
//! from the token's claims. (The kept values never leave the process and die with the thread.)

use super::permissions::Granted;
use super::{Deviation, check_headers, gate};
use crate::headers::Asked;
use http::HeaderValue;
use std::cell::RefCell;

/// The values a verdict depends on: `Authorization`, `Content-Type`, `Accept`.
fn inputs<'a>(headers: &Asked<'a>) -> [Option<&'a HeaderValue>; 3] {
    [headers.authorization, headers.content_type, headers.accept]
}

struct Verdict {
    /// The values of [`inputs`], as sent.
    inputs: [Option<Box<[u8]>>; 3],
    /// The header deviations, gated.
    found: Vec<Deviation>,
    granted: Option<Granted>,
}

impl Verdict {
    fn of(headers: &Asked<'_>) -> Self {
        let mut found = Vec::new();
        check_headers(headers.map, &mut found);
        gate(&mut found);
        Self {
            inputs: inputs(headers).map(|v| v.map(|v| v.as_bytes().into())),
            found,
            granted: Granted::of_headers(headers.map),
        }
    }

    fn holds_for(&self, headers: &Asked<'_>) -> bool {
        self.inputs
            .iter()
            .zip(inputs(headers))
            .all(|(kept, sent)| kept.as_deref() == sent.map(HeaderValue::as_bytes))
    }
}

/// Runs `f` on the header deviations of `headers` (gated) and the grant of their token.
pub(super) fn with<R>(
    headers: &Asked<'_>,
    f: impl FnOnce(&[Deviation], Option<&Granted>) -> R,
) -> R {
    thread_local! {
        static LAST: RefCell<Option<Verdict>> = const { RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        let verdict = match &mut *last {
            Some(v) if v.holds_for(headers) => v,
            slot => slot.insert(Verdict::of(headers)),
        };
        f(&verdict.found, verdict.granted.as_ref())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};

    fn codes(headers: &HeaderMap) -> Vec<&'static str> {
        with(&Asked::of(headers), |found, _| {
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
