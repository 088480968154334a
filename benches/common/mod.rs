//! Shared by the benchmarks: the seed call and a generated cassette of seed-style calls.
#![allow(dead_code)]

use graph_vcr::export::{self, Document};

pub const PATH: &str = "/v1.0/deviceManagement/deviceEnrollmentConfigurations/b0c1d2e3-0000-4000-8000-000000000001/assign";

#[allow(unused_imports)] // not every test binary uses it
pub use graph_vcr::contract::SEED_EXAMPLE_BODY as SEED_BODY;

/// The body of call `i`: the seed body with its own collectionId.
pub fn body(i: usize) -> String {
    SEED_BODY.replace("Collection Id value", &format!("collection-{i}"))
}

/// A cassette of `n` seed-style interactions, each with its own collectionId.
pub fn document(n: usize) -> Document {
    export::synthetic("bench", PATH, n, body)
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
            assign_only: false,
            record_all: false,
            record_throttling: false,
        },
        key: graph_vcr::key::KeyOptions::default(),
        upstream: None,
        on_exhausted: OnExhausted::Repeat,
        check: Default::default(),
        journal: Default::default(),
        limits: Default::default(),
        memo: true,
        throttle: Default::default(),
        sanitize: Default::default(),
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

/// The bare server the load benchmarks measure graph-vcr against: hyper 1's HTTP/1.1 server
/// on tokio's multi-threaded runtime, reading each request's body and answering `204 No
/// Content`, and nothing else. Prints `listening on http://ADDR` and serves until killed.
///
/// Two knobs calibrate the wrk benchmark (`docs/PERFORMANCE.md`, session 9), read once at
/// start: `BARE_SPIN_NS=N` busy-waits N ns per request (what N ns of handler time costs in
/// req/s), `BARE_GRAPH_HEADERS=1` adds the three headers graph-vcr's replayed answer carries
/// (what those bytes alone cost).
pub fn bare_server(addr: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use http_body_util::{BodyExt, Empty};
    let spin = std::time::Duration::from_nanos(
        std::env::var("BARE_SPIN_NS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    );
    let graph_headers = std::env::var_os("BARE_GRAPH_HEADERS").is_some();
    tokio::runtime::Runtime::new()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("listening on http://{}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let _ = req.into_body().collect().await;
                        if !spin.is_zero() {
                            let t = std::time::Instant::now();
                            while t.elapsed() < spin {
                                std::hint::spin_loop();
                            }
                        }
                        let mut r = http::Response::new(Empty::<bytes::Bytes>::new());
                        *r.status_mut() = http::StatusCode::NO_CONTENT;
                        if graph_headers {
                            let h = r.headers_mut();
                            let v = http::HeaderValue::from_static;
                            h.insert("request-id", v("00000000-0000-4000-8000-000000000000"));
                            h.insert("x-graph-vcr-outcome", v("replayed"));
                            h.insert("x-graph-vcr-deviations", v("odata-type-without-hash"));
                        }
                        Ok::<_, std::convert::Infallible>(r)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
