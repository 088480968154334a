//! What each way of writing a cassette leaves in sled's log, and what that costs every later
//! replay: for N seed-style recordings written as `cassette import` writes them (one batch),
//! as a record run writes them (one by one as they arrive, 32 at a time), and as a record run
//! that refreshes an existing cassette writes them (the same N again over the first), it
//! prints the log's size and how long `Store::open` of it for replay takes (the private copy
//! and sled's open, which overwrites every free segment), before and after `compact_dir`.
//! Then, for replay's private import of a directory of exports, how long reopening the
//! scratch database takes (replay's scan reopens it every 2,048 records) when it was written
//! in one batch and when record by record in key order (`Cassette::fill`).
//! `cargo run --release --example sled_layout -- [N]` (default 20,000). A benchmark: it
//! measures, it asserts nothing (docs/PERFORMANCE.md, session 14).

#[path = "../benches/common/mod.rs"]
mod common;

use graph_vcr::cassette::{Access, CassetteName, Store, StoreError, compact_dir};
use graph_vcr::export;
use graph_vcr::key::Key;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// How many records a simulated record run has in flight at once.
const IN_FLIGHT: usize = 32;

fn main() -> Result<(), Error> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!("{n} recordings; open = Store::open for replay, median of 3");
    println!("| written as | log | open | compacted log | open after | compaction took |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for style in ["imported", "recorded", "re-recorded"] {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("cassettes");
        match style {
            "imported" => import(&dir, n)?,
            "recorded" => rt.block_on(record(&dir, n, 1))?,
            _ => rt.block_on(record(&dir, n, 2))?,
        }
        let (size, open) = (log_size(&dir), open_time(&dir)?);
        let compacted = compact_dir(&dir)?.ok_or("the directory has blobs")?;
        println!(
            "| {style} | {} | {} | {} | {} | {} |",
            mb(size),
            ms(open),
            mb(log_size(&dir)),
            ms(open_time(&dir)?),
            ms(compacted.took)
        );
    }
    println!();
    println!(
        "replay's private import of a directory of exports; reopen = ClosedStore::open, median of 3"
    );
    println!("| written as | reopen |");
    println!("| --- | ---: |");
    for fill in [false, true] {
        let store = Store::private(Path::new("exports"))?;
        let cassette = store.cassette(&CassetteName::new("bench")?)?;
        let records = (0..n).map(|i| (key(i), 0, recording(i, 0)));
        if fill {
            cassette.fill(&serde_json::json!({}), records)?;
        } else {
            cassette.replace_all(&serde_json::json!({}), records)?;
        }
        store.flush_blocking()?;
        drop(cassette);
        let closed = store.close().map_err(|_| "a scratch store closes")?;
        let reopen = median_of_3(|| closed.open())?;
        let style = if fill {
            "fill (record by record, in key order)"
        } else {
            "one batch"
        };
        println!("| {style} | {} |", ms(reopen));
    }
    Ok(())
}

fn import(dir: &Path, n: usize) -> Result<(), Error> {
    let store = Store::open(dir, Access::ReadWrite)?;
    export::import(&store, common::document(n), None, false, "bench")?;
    Ok(())
}

/// A record run's writes: each recording handed to the recorder and awaited, `IN_FLIGHT` at
/// a time, `passes` times over the same keys (a refresh replaces each recording).
async fn record(dir: &Path, n: usize, passes: usize) -> Result<(), Error> {
    let store = Arc::new(Store::open(dir, Access::ReadWrite)?);
    let cassette = Arc::new(store.cassette(&CassetteName::new("bench")?)?);
    for pass in 0..passes {
        let mut writes = tokio::task::JoinSet::new();
        for i in 0..n {
            if writes.len() == IN_FLIGHT
                && let Some(done) = writes.join_next().await
            {
                done??;
            }
            let (store, cassette) = (Arc::clone(&store), Arc::clone(&cassette));
            let record = recording(i, pass);
            writes.spawn(async move { store.record(&cassette, &key(i), 0, record).await });
        }
        while let Some(done) = writes.join_next().await {
            done??;
        }
    }
    store.stop_recording();
    Ok(())
}

/// A distinct key per `i`, spread over the key space as request digests are.
fn key(i: usize) -> Key {
    let mut x = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut key = [0u8; 32];
    for chunk in key.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    Key(key)
}

/// A recording about the size of a seed call's (2 KB of JSON).
fn recording(i: usize, pass: usize) -> Vec<u8> {
    format!(
        "{{\"request\":{},\"pass\":{pass},\"pad\":\"{:0>1500}\"}}",
        common::body(i),
        i
    )
    .into_bytes()
}

fn log_size(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("db")).map_or(0, |m| m.len())
}

fn open_time(dir: &Path) -> Result<Duration, Error> {
    median_of_3(|| Store::open(dir, Access::ReadOnly))
}

/// The median time of three calls of `open`, each store dropped before the next.
fn median_of_3(mut open: impl FnMut() -> Result<Store, StoreError>) -> Result<Duration, Error> {
    let mut times = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let store = open()?;
        times.push(started.elapsed());
        drop(store);
        // sled's threads let go of the database a moment after the store is dropped.
        std::thread::sleep(Duration::from_millis(50));
    }
    times.sort();
    Ok(times[1])
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}
