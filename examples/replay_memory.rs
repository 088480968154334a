//! Where replay's memory goes: builds a cassette of N seed-style calls, waits for replay to
//! index it, then answers each of them once in process (as the load benchmark does over HTTP) and exits; run it under
//! `valgrind --tool=massif` for a heap profile. `cargo run --release --example replay_memory -- N [DIR]` (twice with DIR: build, then measure).

#[path = "../benches/common/mod.rs"]
mod common;

use graph_vcr::cassette::{Access, Store, compact_dir};
use graph_vcr::export;
use graph_vcr::proxy::Proxy;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::ERROR)
        .init();
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    // Building the cassette in this process would leave its memory in the figures: with a
    // second argument, the cassette directory is built by one run and measured by the next.
    let tmp = tempfile::tempdir()?;
    let dir = match std::env::args().nth(2) {
        Some(d) => std::path::PathBuf::from(d),
        None => tmp.path().join("cassettes"),
    };
    if !dir.exists() {
        let store = Store::open(&dir, Access::ReadWrite)?;
        export::import(&store, common::document(n), None, false, "bench")?;
        drop(store);
        // Compacted, as `cassette import` and a record run leave a directory.
        if let Some(c) = compact_dir(&dir)? {
            eprintln!(
                "compacted in {:?}: {} bytes, {} before",
                c.took, c.after, c.before
            );
        }
        if std::env::args().nth(2).is_some() {
            eprintln!("built {}; run again to measure", dir.display());
            return Ok(());
        }
    }
    let started = std::time::Instant::now();
    let proxy = Proxy::new(common::replay_config(dir)?)?;
    eprintln!("proxy ready; resident: {}", common::rss(std::process::id()));
    while proxy.is_indexing() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    if !proxy.is_indexed() {
        return Err("indexing failed (see the log above)".into());
    }
    eprintln!(
        "indexed after {:?}; resident: {}",
        started.elapsed(),
        common::rss(std::process::id())
    );
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
