//! Shared by the benchmarks: the seed call and a generated cassette of seed-style calls.
#![allow(dead_code)]

use graph_vcr::export::{self, Document};
use graph_vcr::interaction::{Body, RecordedResponse};
use graph_vcr::key::KeyOptions;

pub const PATH: &str = "/v1.0/deviceManagement/deviceEnrollmentConfigurations/b0c1d2e3-0000-4000-8000-000000000001/assign";

#[allow(unused_imports)] // not every test binary uses it
pub use graph_vcr::contract::SEED_EXAMPLE_BODY as SEED_BODY;

/// The body of call `i`: the seed body with its own collectionId.
pub fn body(i: usize) -> String {
    SEED_BODY.replace("Collection Id value", &format!("collection-{i}"))
}

/// A cassette of `n` seed-style interactions, each with its own collectionId.
pub fn document(n: usize) -> Document {
    let opts = KeyOptions::default();
    let interactions = (0..n)
        .map(|i| {
            let response = RecordedResponse {
                status: 204,
                headers: vec![(
                    "request-id".into(),
                    format!("00000000-0000-4000-8000-{i:012}"),
                )],
                body: Body::Empty,
            };
            export::made_up(
                "POST",
                PATH,
                &body(i),
                response,
                "2026-11-28T00:00:00.000Z",
                &opts,
            )
        })
        .collect();
    Document {
        format: export::FORMAT_NAME.into(),
        version: export::DOCUMENT_VERSION,
        name: "bench".into(),
        key_options: opts,
        interactions,
    }
}
