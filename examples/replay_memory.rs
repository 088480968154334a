//! Where replay's memory goes: builds a cassette of N seed-style calls, then answers each of
//! them once in process (as the load benchmark does over HTTP) and exits; run it under
//! `valgrind --tool=massif` for a heap profile. `cargo run --release --example replay_memory -- N`.

#[path = "../benches/common/mod.rs"]
mod common;

use graph_vcr::cassette::{Access, Store};
use graph_vcr::export;
use graph_vcr::proxy::Proxy;

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
    let proxy = Proxy::new(common::replay_config(dir)?)?;
    eprintln!("proxy ready; resident: {}", common::rss(std::process::id()));
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
    eprintln!(
        "{ok} of {n} replayed; resident: {}",
        common::rss(std::process::id())
    );
    Ok(())
}
