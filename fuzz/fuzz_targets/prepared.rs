//! Replay's compact responses (`respond::Prepared`): any recorded response, however malformed,
//! either prepares or is refused as corrupt (no panic); one that prepares is served back with
//! its status and body intact.
#![no_main]

use graph_vcr::interaction::{Body, RecordedResponse};
use graph_vcr::respond::Prepared;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Two bytes of status, then NUL-separated header names and values until an empty name,
    // then the body (base64 when the first byte after that is odd, else raw bytes).
    let Some((status, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let status = u16::from_le_bytes(*status);
    let mut parts = rest.split(|b| *b == 0);
    let mut headers = Vec::new();
    loop {
        let Some(name) = parts.next() else { break };
        if name.is_empty() {
            break;
        }
        let value = parts.next().unwrap_or_default();
        headers.push((
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
    let tail: Vec<u8> = parts.collect::<Vec<_>>().join(&0u8);
    let body = match tail.split_first() {
        Some((flag, b)) if flag % 2 == 1 => Body::Base64(String::from_utf8_lossy(b).into_owned()),
        _ => Body::from_bytes(&tail),
    };
    let expected = body.to_bytes();
    let response = RecordedResponse { status, headers, body };
    let Ok(prepared) = Prepared::from_parts("k", 0, &response) else {
        return;
    };
    let served = prepared.respond(&http::HeaderMap::new());
    assert_eq!(served.status().as_u16(), status);
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    let got = match rt.block_on(served.into_body().collect()) {
        Ok(c) => c.to_bytes(),
        Err(e) => match e {},
    };
    assert_eq!(Some(got.to_vec()), expected, "the body changed");
});
