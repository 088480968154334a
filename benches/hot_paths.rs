//! Criterion benchmarks of the per-request hot paths: canonicalize + key for the seed body, the
//! contract check, and a cassette lookup (point read + decode) in a large cassette.

mod common;

use common::{PATH, SEED_BODY, document};
use criterion::{Criterion, criterion_group, criterion_main};
use graph_vcr::cassette::{Access, CassetteName, Store};
use graph_vcr::check::check_request;
use graph_vcr::classify::classify;
use graph_vcr::export;
use graph_vcr::key::{CanonicalBody, Key, KeyOptions};
use http::{HeaderMap, HeaderValue, Method};
use std::hint::black_box;

fn key_bench(c: &mut Criterion) {
    let opts = KeyOptions::default();
    c.bench_function("classify + canonicalize + key (seed body)", |b| {
        b.iter(|| {
            let cl = classify(black_box(PATH), None);
            let canonical = CanonicalBody::of(black_box(SEED_BODY.as_bytes()), cl.action, &opts);
            Key::compute("POST", &cl, &canonical)
        })
    });
}

fn check_bench(c: &mut Criterion) {
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_static("Bearer eyJ0eXAi.x.y"),
    );
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let cl = classify(PATH, None);
    c.bench_function("contract check (seed body)", |b| {
        b.iter(|| {
            check_request(
                &Method::POST,
                &cl,
                &headers,
                black_box(SEED_BODY.as_bytes()),
            )
        })
    });
}

fn lookup_bench(c: &mut Criterion) {
    let Ok(tmp) = tempfile::tempdir() else { return };
    let dir = tmp.path().join("cassettes");
    let Ok(store) = Store::open(&dir, Access::ReadWrite) else {
        return;
    };
    let doc = document(100_000);
    let keys: Vec<Key> = doc
        .interactions
        .iter()
        .step_by(997)
        .filter_map(|i| Key::from_hex(&i.key))
        .collect();
    if export::import(&store, doc, None, false, "bench").is_err() {
        return;
    }
    let Ok(name) = CassetteName::new("bench") else {
        return;
    };
    let Ok(cassette) = store.cassette(&name) else {
        return;
    };
    let mut i = 0;
    c.bench_function("cassette lookup + decode (100,000 interactions)", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            cassette.get_recorded(black_box(&keys[i]), 0)
        })
    });
}

/// The whole replay pipeline for one request, in process: what a replayed call costs beyond
/// HTTP parsing and the network.
/// Replay's whole pipeline in process, cycling through `n` recorded calls: at 100,000 each
/// call comes round once per 100,000 iterations, so this is the flatness target in process.
fn handle_bench_n(c: &mut Criterion, n: usize) {
    use graph_vcr::proxy::Proxy;
    let Ok(tmp) = tempfile::tempdir() else { return };
    let dir = tmp.path().join("cassettes");
    {
        let Ok(store) = Store::open(&dir, Access::ReadWrite) else {
            return;
        };
        if export::import(&store, document(n), None, false, "bench").is_err() {
            return;
        }
    }
    let Ok(config) = common::replay_config(dir) else {
        return;
    };
    let Ok(proxy) = Proxy::new(config) else {
        return;
    };
    // Measure replay's steady state: every recording indexed (src/index.rs).
    while proxy.is_indexing() {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    let bodies: Vec<bytes::Bytes> = (0..n)
        .map(|i| bytes::Bytes::from(common::body(i)))
        .collect();
    let mut i = 0;
    let name = format!(
        "proxy handle: replay hit ({} interactions)",
        if n == 1_000 { "1,000" } else { "100,000" }
    );
    c.bench_function(&name, |b| {
        b.iter(|| {
            i = (i + 1) % bodies.len();
            let req = http::Request::post(PATH)
                .header(
                    "authorization",
                    "Bearer eyJ0eXAiOiJKV1QifQ.eyJhdWQiOiJiZW5jaCJ9.c2ln",
                )
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(bodies[i].clone()));
            match req {
                Ok(req) => rt.block_on(proxy.handle(req)).status(),
                Err(_) => http::StatusCode::BAD_REQUEST,
            }
        })
    });
}

fn handle_bench(c: &mut Criterion) {
    handle_bench_n(c, 1_000);
    handle_bench_n(c, 100_000);
}

criterion_group!(benches, key_bench, check_bench, lookup_bench, handle_bench);
criterion_main!(benches);
