//! Where replay's memory goes: builds a cassette of N seed-style calls, then answers each of
//! them once in process (as the load benchmark does over HTTP) and exits; run it under
//! `valgrind --tool=massif` for a heap profile. `cargo run --release --example replay_memory -- N`.

#[path = "../benches/common/mod.rs"]
mod common;

use graph_vcr::cassette::{Access, CassetteName, Store};
use graph_vcr::export;
use graph_vcr::key::KeyOptions;
use graph_vcr::mode::{Mode, OnExhausted};
use graph_vcr::proxy::{CassetteOptions, Proxy, ProxyConfig};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("cassettes");
    {
        let store = Store::open(&dir, Access::ReadWrite)?;
        export::import(&store, common::document(n), None, false, "bench")?;
    }
    let proxy = Proxy::new(ProxyConfig {
        mode: Mode::Replay,
        cassettes: CassetteOptions {
            cassettes: dir,
            cassette: CassetteName::new("bench")?,
            record_all: false,
        },
        key: KeyOptions::default(),
        upstream: None,
        on_exhausted: OnExhausted::Repeat,
        check: Default::default(),
        journal: Default::default(),
        limits: Default::default(),
    })?;
    eprintln!("proxy ready; resident: {}", rss());
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let mut ok = 0;
    for i in 0..n {
        let req = http::Request::post(common::PATH)
            .header(
                "authorization",
                "Bearer eyJ0eXAiOiJKV1QifQ.eyJhdWQiOiJiZW5jaCJ9.c2ln",
            )
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(common::body(
                i,
            ))))?;
        if rt.block_on(proxy.handle(req)).status() == http::StatusCode::NO_CONTENT {
            ok += 1;
        }
    }
    eprintln!("{ok} of {n} replayed; resident: {}", rss());
    Ok(())
}

/// This process's resident set, as /proc reports it.
fn rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l.trim_start_matches("VmRSS:").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}
