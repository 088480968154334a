//! The bare server of the wrk benchmark (`bench/wrk/ratio.sh`): hyper 1's HTTP/1.1 server on
//! tokio's multi-threaded runtime, reading each request's body and answering `204 No
//! Content`, and nothing else (the same server `benches/load.rs` measures against). What
//! graph-vcr's replay is measured against, built with the same profile.
//!
//! Usage: `cargo run --release --example bare_hyper -- 127.0.0.1:18081`

#[path = "../benches/common/mod.rs"]
mod common;

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18081".into());
    common::bare_server(&addr)
}
