//! Replay's in-memory index (src/index.rs): a cassette larger than the scan's chunk is served
//! correctly while it is being indexed and after; the memo is pre-filled from the stored
//! requests; and what needs the stored requests once the scan has closed sled (a miss's
//! nearest recording, the report's unplayed recordings) opens it again.

mod common;

use bytes::Bytes;
use common::*;
use graph_vcr::cassette::{Access, Store};
use graph_vcr::export;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Many of the scan's 2,048-record chunks, so it reopens sled again and again.
const N: usize = 20_000;

fn body(i: usize) -> String {
    SDK_BODY.replace("Collection Id value", &format!("collection-{i}"))
}

/// Sends each body on one keep-alive connection: (status, request-id, body text) per body.
async fn send_all(
    addr: SocketAddr,
    bodies: &[String],
) -> Result<Vec<(u16, String, String)>, Error> {
    let mut connection = KeepAlive::connect(addr).await?;
    let mut out = Vec::new();
    for b in bodies {
        let (status, rid, body) = connection.assign(Bytes::from(b.clone()), None).await?;
        out.push((status, rid, String::from_utf8_lossy(&body).into_owned()));
    }
    Ok(out)
}

/// Waits (up to 120 s) for the proxy to log that every recording is in memory.
async fn wait_for_index(proxy: &Proxy) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !proxy.stderr().contains("cassettes indexed") {
        assert!(
            Instant::now() < deadline,
            "never indexed:\n{}",
            proxy.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_replayed(indices: &[usize], answers: &[(u16, String, String)]) {
    for (i, (status, rid, text)) in indices.iter().zip(answers) {
        assert_eq!(*status, 204, "call {i}: {text}");
        assert_eq!(*rid, export::synthetic_request_id(*i), "call {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_cassette_is_served_while_indexing_and_from_memory_after() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("cassettes");
    {
        let store = Store::open(&dir, Access::ReadWrite)?;
        export::import(
            &store,
            export::synthetic("big", SEED_PATH, N, body),
            None,
            false,
            "big",
        )?;
    }
    let report = tmp.path().join("report.json");
    let proxy = Proxy::start(&[
        "replay",
        "--cassettes",
        dir.to_str().ok_or("path")?,
        "--cassette",
        "big",
        "--log",
        "info",
        "--allow-misses",
        "--report-json",
        report.to_str().ok_or("path")?,
    ])?;

    // At once: most of these arrive before the scan reaches them (point lookups).
    let early: Vec<usize> = (0..64).map(|k| k * 311).collect();
    let answers = send_all(
        proxy.addr,
        &early.iter().map(|i| body(*i)).collect::<Vec<_>>(),
    )
    .await?;
    assert_replayed(&early, &answers);

    wait_for_index(&proxy).await;
    assert!(
        proxy.stderr().contains(&format!("recordings={N}")),
        "{}",
        proxy.stderr()
    );

    // Calls never sent before, as recorded: each is answered from the pre-filled memo.
    let late: Vec<usize> = (0..200).map(|k| 1 + k * 97).collect();
    let answers = send_all(
        proxy.addr,
        &late.iter().map(|i| body(*i)).collect::<Vec<_>>(),
    )
    .await?;
    assert_replayed(&late, &answers);

    // The same call in other bytes: keyed afresh, found in the index.
    let spaced = body(7).replace(':', " : ");
    let answers = send_all(proxy.addr, &[spaced]).await?;
    assert_replayed(&[7], &answers);

    // Not recorded: the miss names the nearest recording, read from the reopened store.
    let answers = send_all(proxy.addr, &[body(N + 5)]).await?;
    let (status, _, text) = &answers[0];
    assert_eq!(*status, 501, "{text}");
    assert!(text.contains("Nearest recording"), "{text}");

    // The nearest recording wherever it is in the cassette (not only among the first
    // 10,000 in key order, as a scan would find it): recording j differs from these requests
    // in `id` alone, every other one in `id` and `collectionId`.
    let near: Vec<usize> = (0..20).map(|k| 3 + k * 991).collect();
    let changed: Vec<String> = near
        .iter()
        .map(|j| {
            body(*j).replace(
                "705b021c-021c-705b-1c02-5b701c025b70",
                "00000000-0000-4000-8000-00000000000f",
            )
        })
        .collect();
    let answers = send_all(proxy.addr, &changed).await?;
    for (j, (status, _, text)) in near.iter().zip(&answers) {
        assert_eq!(*status, 501, "{text}");
        let diff: serde_json::Value = serde_json::from_str(text)?;
        let lines = &diff["error"]["innerError"]["nearest"]["differences"];
        assert_eq!(
            lines.as_array().map(Vec::len),
            Some(1),
            "request like recording {j}: {lines}"
        );
        assert!(
            lines[0].as_str().unwrap_or("").contains("/id:"),
            "{j}: {lines}"
        );
    }

    let exit = proxy.signal("TERM")?;
    assert!(exit.status.success(), "{}", exit.stderr);
    let played = early.len() + late.len() + 1;
    assert!(
        exit.stderr
            .contains(&format!("{} requests in ", played + 1 + near.len()))
            && exit.stderr.contains(&format!(
                ": {played} replayed, 0 recorded, {} miss;",
                1 + near.len()
            )),
        "{}",
        exit.stderr
    );
    // Every late call skips the analysis (early ones too, if the scan got there first); the
    // spaced one cannot.
    let remembered: usize = exit
        .stderr
        .lines()
        .find_map(|line| line.split_once(" requests answered from the memo"))
        .and_then(|(n, _)| n.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0);
    assert!(
        (late.len()..=late.len() + early.len()).contains(&remembered),
        "{remembered} answered from the memo:\n{}",
        exit.stderr
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report)?)?;
    let distinct: std::collections::BTreeSet<usize> =
        early.iter().chain(&late).chain(&[7]).copied().collect();
    assert_eq!(
        report["unplayed"].as_array().map(Vec::len),
        Some(N - distinct.len()),
        "{}",
        report["totals"]
    );
    Ok(())
}

/// A record that does not decode, and one whose response cannot be served, are each answered
/// 500 `graphVcrCorruptCassette` naming the record: the same answer from the point lookup made
/// while the scan is still busy elsewhere, and from memory once it has read them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_recording_is_a_500_naming_it_during_and_after_indexing() -> TestResult {
    use graph_vcr::cassette::CassetteName;
    use graph_vcr::interaction::{Body, RecordedResponse};
    use graph_vcr::key::{Key, KeyOptions};
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("cassettes");
    let made_up = |i: usize| {
        let response = RecordedResponse {
            status: 204,
            headers: vec![("request-id".into(), export::synthetic_request_id(i))],
            body: Body::Empty,
        };
        export::made_up(
            "POST",
            SEED_PATH,
            &body(i),
            response,
            "2026-11-28T00:00:00.000Z",
            &KeyOptions::default(),
        )
    };
    let key_of = |i: &graph_vcr::interaction::Interaction| {
        Key::from_hex(&i.key).ok_or_else(|| Error::from("key"))
    };
    let (not_json, bad_body) = (made_up(1), made_up(2));
    {
        let store = Store::open(&dir, Access::ReadWrite)?;
        // Scanned first (cassettes are scanned in name order), keeping the scan busy.
        export::import(
            &store,
            export::synthetic("a-filler", SEED_PATH, 6_000, body),
            None,
            false,
            "a-filler",
        )?;
        let broken = store.cassette(&CassetteName::new("broken")?)?;
        broken.put(&key_of(&not_json)?, 0, b"not json".to_vec())?;
        let mut unservable = bad_body.clone();
        unservable.response.body = Body::Base64("!!! not base64".into());
        broken.put(&key_of(&bad_body)?, 0, serde_json::to_vec(&unservable)?)?;
        let fine = made_up(3);
        broken.put(&key_of(&fine)?, 0, serde_json::to_vec(&fine)?)?;
        store.flush_blocking()?;
    }
    let proxy = Proxy::start(&[
        "replay",
        "--cassettes",
        dir.to_str().ok_or("path")?,
        "--cassette",
        "broken",
        "--log",
        "info",
        "--allow-misses",
    ])?;
    let bodies = [body(1), body(2), body(3)];
    let check = |answers: Vec<(u16, String, String)>, when: &str| -> TestResult {
        for ((status, _, text), recording) in answers.iter().take(2).zip([&not_json, &bad_body]) {
            assert_eq!(*status, 500, "{when}: {text}");
            let error: serde_json::Value = serde_json::from_str(text)?;
            assert_eq!(
                error["error"]["code"], "graphVcrCorruptCassette",
                "{when}: {text}"
            );
            assert!(
                text.contains(&recording.key),
                "{when}: names the record: {text}"
            );
        }
        assert_eq!(
            answers[2].0, 204,
            "{when}: the sound recording still replays"
        );
        Ok(())
    };
    let early = send_all(proxy.addr, &bodies).await?;
    let indexed_early = proxy.stderr().contains("cassettes indexed");
    check(early, "while indexing")?;

    wait_for_index(&proxy).await;
    check(send_all(proxy.addr, &bodies).await?, "indexed")?;
    assert!(
        !indexed_early,
        "the scan finished before the first requests: they did not test the point lookup"
    );
    Ok(())
}
