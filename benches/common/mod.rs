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

/// A replay proxy's configuration for `dir`, serving cassette `bench` by default.
pub fn replay_config(
    dir: std::path::PathBuf,
) -> Result<graph_vcr::proxy::ProxyConfig, graph_vcr::cassette::StoreError> {
    use graph_vcr::mode::{Mode, OnExhausted};
    use graph_vcr::proxy::{CassetteOptions, ProxyConfig};
    Ok(ProxyConfig {
        mode: Mode::Replay,
        cassettes: CassetteOptions {
            cassettes: dir,
            cassette: graph_vcr::cassette::CassetteName::new("bench")?,
            record_all: false,
        },
        key: KeyOptions::default(),
        upstream: None,
        on_exhausted: OnExhausted::Repeat,
        check: Default::default(),
        journal: Default::default(),
        limits: Default::default(),
    })
}

/// The resident set of process `pid`, as /proc reports it.
pub fn rss(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l.trim_start_matches("VmRSS:").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}
