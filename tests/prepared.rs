//! Property of replay's compact responses (`respond::Prepared`, one buffer per response, header
//! values sliced out of it): any recorded response that prepares is served back exactly — its
//! status, every header in order (less the framing ones graph-vcr sets itself), its body.

use bytes::Bytes;
use graph_vcr::interaction::{Body, RecordedResponse};
use graph_vcr::respond::Prepared;
use http_body_util::BodyExt;
use proptest::prelude::*;

fn header() -> impl Strategy<Value = (String, String)> {
    (
        prop_oneof![
            "[a-z][a-z0-9-]{0,20}".prop_map(String::from),
            Just("request-id".to_string()),
            Just("content-length".to_string()),
            Just("x-graph-vcr-outcome".to_string()),
            // Longer than a u8 length could hold.
            "x-[a-z]{300,320}".prop_map(String::from),
        ],
        prop_oneof![
            "[ -~]{0,40}".prop_map(|s| s.trim().to_string()),
            "[a-z]{300,400}".prop_map(String::from),
        ],
    )
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        "[ -~]{1,200}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 1..300),
    ]
}

fn served(response: &RecordedResponse) -> (u16, Vec<(String, String)>, Bytes) {
    let Ok(prepared) = Prepared::from_parts("k", 0, response) else {
        panic!("a valid response did not prepare: {response:?}");
    };
    let r = prepared.respond(None, &|| graph_vcr::links::STORED_ORIGIN.to_string());
    let status = r.status().as_u16();
    let headers = r
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = futures_body(r.into_body());
    (status, headers, body)
}

fn futures_body(body: http_body_util::Full<Bytes>) -> Bytes {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        panic!("no runtime");
    };
    match rt.block_on(body.collect()) {
        Ok(c) => c.to_bytes(),
        Err(e) => match e {},
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_prepared_response_is_served_back_exactly(
        status in 100u16..600,
        headers in prop::collection::vec(header(), 0..8),
        bytes in body(),
    ) {
        let recorded = RecordedResponse { status, headers: headers.clone(), body: Body::from_bytes(&bytes) };
        let (got_status, got_headers, got_body) = served(&recorded);
        prop_assert_eq!(got_status, status);
        prop_assert_eq!(&got_body[..], &bytes[..]);
        // What was recorded, less framing and graph-vcr's own outcome header, grouped by name
        // in first-seen order as a HeaderMap iterates.
        let mut want: Vec<(String, String)> = headers
            .into_iter()
            .filter(|(n, _)| n != "content-length" && n != "x-graph-vcr-outcome")
            .collect();
        let mut names: Vec<String> = Vec::new();
        for (n, _) in &want {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        want.sort_by_key(|(n, _)| names.iter().position(|x| x == n));
        want.push(("x-graph-vcr-outcome".into(), "replayed".into()));
        let mut got = got_headers;
        let outcome = got.iter().position(|(n, _)| n == "x-graph-vcr-outcome");
        if let Some(at) = outcome {
            let o = got.remove(at);
            got.push(o);
        }
        prop_assert_eq!(got, want);
    }
}
