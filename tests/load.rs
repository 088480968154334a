//! Under load: replay answers every one of 100,000 requests from 64 keep-alive clients
//! correctly; record stores every answered request exactly once per occurrence.

mod common;

use bytes::Bytes;
use common::*;
use graph_vcr::cassette::{Access, Store};
use graph_vcr::export::{self, Document};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

fn body(i: usize) -> String {
    SDK_BODY.replace("Collection Id value", &format!("collection-{i}"))
}

/// A cassette of `n` calls; call i answers 204 with request-id `synthetic_request_id(i)`.
fn document(n: usize) -> Document {
    export::synthetic("load", SEED_PATH, n, body)
}

/// Sends `per_client` requests on each of `clients` keep-alive connections; request j of
/// client c uses body `(c + j * clients) % distinct`. Returns (index, status, request-id).
async fn hammer(
    addr: SocketAddr,
    clients: usize,
    per_client: usize,
    distinct: usize,
    cassette: &str,
) -> Result<Vec<(usize, u16, String)>, Error> {
    let bodies: Arc<Vec<Bytes>> = Arc::new((0..distinct).map(|i| Bytes::from(body(i))).collect());
    let mut tasks = Vec::new();
    for c in 0..clients {
        let bodies = Arc::clone(&bodies);
        let cassette = cassette.to_string();
        tasks.push(tokio::spawn(async move {
            let mut connection = KeepAlive::connect(addr).await?;
            let mut out = Vec::with_capacity(per_client);
            for j in 0..per_client {
                let i = (c + j * clients) % bodies.len();
                let (status, rid, _) = connection
                    .assign(bodies[i].clone(), Some(cassette.as_str()))
                    .await?;
                out.push((i, status, rid));
            }
            Ok::<_, Error>(out)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_answers_100000_requests_from_64_clients_correctly() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("cassettes");
    {
        let store = Store::open(&dir, Access::ReadWrite)?;
        export::import(&store, document(1_000), None, false, "load")?;
    }
    let proxy = Proxy::start(&[
        "replay",
        "--cassettes",
        s(&dir)?,
        "--cassette",
        "load",
        "--log",
        "warn",
    ])?;
    let answers = hammer(proxy.addr, 64, 1_563, 1_000, "load").await?;
    assert_eq!(answers.len(), 64 * 1_563);
    let wrong: Vec<_> = answers
        .iter()
        .filter(|(i, status, rid)| *status != 204 || *rid != export::synthetic_request_id(*i))
        .take(5)
        .collect();
    assert!(wrong.is_empty(), "wrong answers, e.g. {wrong:?}");
    let exit = proxy.signal("TERM")?;
    assert!(exit.status.success(), "{}", exit.stderr);
    assert!(
        exit.stderr
            .contains(": 100032 replayed, 0 recorded, 0 miss;"),
        "{}",
        exit.stderr
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_under_load_stores_each_answered_request_exactly_once_per_occurrence() -> TestResult
{
    let tmp = tempfile::tempdir()?;
    let (proxy, stand_in, dir) = forwarding("record", tmp.path(), &["--log", "warn"]).await?;
    // 500 distinct calls, each made 4 times, spread over 64 concurrent clients.
    let answers = hammer(proxy.addr, 64, 32, 500, "under-load").await?;
    assert_eq!(answers.len(), 2048);
    assert!(answers.iter().all(|(_, status, _)| *status == 204));
    let exit = proxy.signal("TERM")?;
    assert!(exit.stderr.contains("2048 recorded"), "{}", exit.stderr);
    assert_eq!(stand_in.received().len(), 2048);
    stand_in.stop().await;

    let mut positions: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for i in &exported(&dir, "under-load")? {
        // Format 2 stores no key: the request's path and body are what it is keyed on.
        let request = format!("{} {}", i["request"]["path"], i["request"]["json"]);
        positions
            .entry(request)
            .or_default()
            .insert(i["position"].as_u64().unwrap_or(99));
    }
    let mut expected: BTreeMap<usize, u64> = BTreeMap::new();
    for (i, _, _) in &answers {
        *expected.entry(*i).or_default() += 1;
    }
    assert_eq!(positions.len(), 500, "one key per distinct call");
    for (key, set) in &positions {
        let n = set.len() as u64;
        assert!(expected.values().any(|&e| e == n), "{key}: {set:?}");
        assert_eq!(
            set,
            &(0..n).collect::<BTreeSet<u64>>(),
            "{key}: positions are 0..n exactly"
        );
    }
    let total: usize = positions.values().map(BTreeSet::len).sum();
    assert_eq!(total, 2048, "every answered request recorded once");
    Ok(())
}
