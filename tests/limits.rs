//! Limits and faults: hostile clients, broken upstreams and bad directories get clear answers,
//! nothing half-recorded, and the proxy keeps serving.

mod common;

use common::*;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection or `limit` passes; returns what was read and
/// whether the connection was closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, false),
        }
    }
}

/// A recorder against a stand-in, with extra flags.
async fn recorder(tmp: &Path, extra: &[&str]) -> Result<(Proxy, StandIn), Error> {
    let (proxy, stand_in, _) = forwarding("record", tmp, extra).await?;
    Ok((proxy, stand_in))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_or_too_deep_are_refused_and_never_forwarded() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (proxy, stand_in) = recorder(
        tmp.path(),
        &["--max-body-size", "2048", "--max-json-depth", "16"],
    )
    .await?;
    let client = HttpClient::new();
    let big = format!(
        r#"{{"enrollmentConfigurationAssignments":[],"pad":"{}"}}"#,
        "x".repeat(4096)
    );
    let r = client.assign(&proxy.base, SEED_PATH, &big, &[]).await?;
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "graphVcrRequestTooLarge");
    let deep = format!(
        r#"{{"enrollmentConfigurationAssignments":{}{}}}"#,
        "[".repeat(40),
        "]".repeat(40)
    );
    let r = client.assign(&proxy.base, SEED_PATH, &deep, &[]).await?;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "graphVcrBodyTooDeep");
    // Just under both limits passes.
    assert_eq!(
        client
            .assign(&proxy.base, SEED_PATH, SDK_BODY, &[])
            .await?
            .status,
        204
    );
    assert_eq!(
        stand_in.received().len(),
        1,
        "a refused body reached the upstream"
    );
    let exit = proxy.signal("TERM")?;
    assert!(
        exit.stderr.contains("request body too large") && exit.stderr.contains("nests too deep"),
        "{}",
        exit.stderr
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_or_too_many_headers_get_431() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (proxy, stand_in) = recorder(
        tmp.path(),
        &["--max-header-size", "8192", "--max-headers", "10"],
    )
    .await?;
    let client = HttpClient::new();
    let huge = "a".repeat(16 * 1024);
    let r = client
        .send(
            "GET",
            &format!("{}/v1.0/me", proxy.base),
            &[("x-huge", &huge)],
            "",
        )
        .await?;
    assert_eq!(r.status, 431);
    let names: Vec<String> = (0..20).map(|i| format!("x-h{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    let r = client
        .send("GET", &format!("{}/v1.0/me", proxy.base), &many, "")
        .await?;
    assert_eq!(r.status, 431);
    assert_eq!(
        client
            .send("GET", &format!("{}/v1.0/me", proxy.base), &[], "")
            .await?
            .status,
        200
    );
    assert_eq!(stand_in.received().len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_idle_connections_are_closed() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (proxy, _stand_in) = recorder(
        tmp.path(),
        &["--header-timeout", "400ms", "--idle-timeout", "300ms"],
    )
    .await?;
    // Slow-loris: half a request head, then nothing.
    let mut slow = TcpStream::connect(proxy.addr).await?;
    slow.write_all(b"GET /v1.0/me HTTP/1.1\r\nhost: x\r\n")
        .await?;
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(
        closed && started.elapsed() < Duration::from_secs(3),
        "slow client kept for {:?}",
        started.elapsed()
    );

    // Idle keep-alive: one complete exchange, then silence.
    let mut idle = TcpStream::connect(proxy.addr).await?;
    idle.write_all(b"GET /v1.0/me HTTP/1.1\r\nhost: x\r\n\r\n")
        .await?;
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await?;
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut idle, Duration::from_secs(5)).await;
    assert!(
        closed && started.elapsed() < Duration::from_secs(3),
        "idle connection kept for {:?}",
        started.elapsed()
    );
    Ok(())
}

/// Reads one HTTP/1.1 response with a `content-length` (or none: no body) from `stream`.
async fn read_response(stream: &mut TcpStream) -> Result<String, Error> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(Ok(0), |v| v.trim().parse())?;
            if got.len() >= end + 4 + len {
                return Ok(String::from_utf8_lossy(&got[..end]).into_owned());
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await??;
        if n == 0 {
            return Err("connection closed before a whole response".into());
        }
        got.extend_from_slice(&buf[..n]);
    }
}

/// `--header-timeout` is kept by the connection's watch: a head trickled a byte at a time
/// (bytes keep moving, so the idle timeout never fires) is closed within 1.5 times it, while
/// a connection sending whole requests for longer than it stays open. hyper's own limit of
/// 100 headers holds when `--max-headers` is not given (graph-vcr then leaves it unset).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_head_is_closed_but_a_busy_connection_is_not() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (proxy, _stand_in) = recorder(
        tmp.path(),
        &["--header-timeout", "600ms", "--idle-timeout", "30s"],
    )
    .await?;
    let (mut slow_read, mut slow_write) = TcpStream::connect(proxy.addr).await?.into_split();
    let trickle = tokio::spawn(async move {
        let head = format!(
            "GET /v1.0/me HTTP/1.1\r\nhost: x\r\nx-pad: {}",
            "a".repeat(200)
        );
        for b in head.bytes() {
            if slow_write.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    });
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(4), slow_read.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(_)) => continue,
            Err(_) => break false,
        }
    };
    let waited = started.elapsed();
    trickle.abort();
    assert!(
        closed && waited >= Duration::from_millis(550) && waited < Duration::from_millis(1500),
        "trickled head: closed {closed} after {waited:?}"
    );

    let mut busy = TcpStream::connect(proxy.addr).await?;
    let started = Instant::now();
    for i in 0..12 {
        busy.write_all(b"GET /v1.0/me HTTP/1.1\r\nhost: x\r\n\r\n")
            .await?;
        let head = read_response(&mut busy).await?;
        assert!(head.starts_with("HTTP/1.1 200"), "request {i}: {head}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(started.elapsed() > Duration::from_millis(1200));

    let names: Vec<String> = (0..110).map(|i| format!("x-h{i}")).collect();
    let headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    let client = HttpClient::new();
    let url = format!("{}/v1.0/me", proxy.base);
    assert_eq!(
        client.send("GET", &url, &headers[..90], "").await?.status,
        200
    );
    assert_eq!(client.send("GET", &url, &headers, "").await?.status, 431);
    Ok(())
}

/// A head and then a stalled or trickling body: answered 408 within `--body-timeout`, the
/// connection closed, and its slot free for the next client (before, such clients held every
/// slot of `--max-connections` for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_trickling_bodies_get_408_and_free_their_slots() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (proxy, stand_in) = recorder(
        tmp.path(),
        &["--body-timeout", "500ms", "--max-connections", "2"],
    )
    .await?;
    let head =
        format!("POST {SEED_PATH} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n");
    // One stalled after a byte, one trickling a chunk every 100 ms: both slots taken.
    let mut stalled = TcpStream::connect(proxy.addr).await?;
    stalled
        .write_all(format!("{head}content-length: 100\r\n\r\n{{").as_bytes())
        .await?;
    let mut trickle = TcpStream::connect(proxy.addr).await?;
    trickle
        .write_all(format!("{head}transfer-encoding: chunked\r\n\r\n").as_bytes())
        .await?;
    let (mut trickle_read, mut trickle_write) = trickle.into_split();
    let writer = tokio::spawn(async move {
        for _ in 0..100 {
            if trickle_write.write_all(b"1\r\n \r\n").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let started = Instant::now();
    // A third client waits in the backlog, and is served once a slot is free.
    let client = HttpClient::new();
    let third = tokio::time::timeout(
        Duration::from_secs(10),
        client.assign(&proxy.base, SEED_PATH, SEED_BODY, &[]),
    )
    .await
    .map_err(|_| "the third client never got a slot")??;
    assert_eq!(third.status, 204, "{}", third.text());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let (answer, closed) = read_until_closed(&mut stalled, Duration::from_secs(5)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(closed && answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("graphVcrBodyTimeout"), "{answer}");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(5), trickle_read.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    let out = String::from_utf8_lossy(&out);
    assert!(closed && out.starts_with("HTTP/1.1 408"), "{out}");
    writer.abort();
    // Nothing of the slow calls reached the upstream; the third did.
    assert_eq!(stand_in.received().len(), 1);
    let exit = proxy.signal("TERM")?;
    assert!(exit.stderr.contains("2 body-timeout"), "{}", exit.stderr);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_wait_their_turn() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (proxy, _stand_in) = recorder(tmp.path(), &["--max-connections", "1"]).await?;
    let request = b"GET /v1.0/me HTTP/1.1\r\nhost: x\r\n\r\n";
    let mut first = TcpStream::connect(proxy.addr).await?;
    first.write_all(request).await?;
    let mut buf = [0u8; 1024];
    assert!(first.read(&mut buf).await? > 0);
    let mut second = TcpStream::connect(proxy.addr).await?;
    second.write_all(request).await?;
    let waited = tokio::time::timeout(Duration::from_millis(500), second.read(&mut buf)).await;
    assert!(
        waited.is_err(),
        "a second connection was served while the first held the only slot"
    );
    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buf)).await??;
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_request_leaves_nothing_recorded() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (proxy, stand_in) = recorder(tmp.path(), &[]).await?;
    let mut c = TcpStream::connect(proxy.addr).await?;
    let head = format!(
        "POST {SEED_PATH} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 5000\r\n\r\n"
    );
    c.write_all(head.as_bytes()).await?;
    c.write_all(&SDK_BODY.as_bytes()[..40]).await?;
    drop(c);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Still serving.
    let client = HttpClient::new();
    assert_eq!(
        client
            .send("GET", &format!("{}/v1.0/me", proxy.base), &[], "")
            .await?
            .status,
        200
    );
    proxy.signal("TERM")?;
    assert_eq!(
        stand_in.received().len(),
        1,
        "the broken request was forwarded"
    );
    // Only the GET that followed (every Graph call is recorded), not the broken assign.
    let recorded = exported(&tmp.path().join("cassettes"), "default")?;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["request"]["method"], "GET", "{recorded:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_upstreams_are_502s_and_nothing_is_half_recorded() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let ca = TestCa::new()?;
    let ca_pem = ca.write_ca(tmp.path())?;
    let dir = tmp.path().join("cassettes");
    let client = HttpClient::new();
    for (fault, cause) in [(Fault::ResetMidResponse, "reset"), (Fault::Malformed, "")] {
        let upstream = FaultyUpstream::start(&ca, fault).await?;
        let proxy = Proxy::start(&[
            "record",
            "--cassettes",
            s(&dir)?,
            "--upstream",
            &upstream.url,
            "--upstream-ca",
            s(&ca_pem)?,
        ])?;
        for _ in 0..2 {
            let r = client.assign(&proxy.base, SEED_PATH, SDK_BODY, &[]).await?;
            assert_eq!(r.status, 502, "{fault:?}: {}", r.text());
            let msg = r.json()["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(
                msg.contains(&upstream.url) && msg.contains(cause),
                "{fault:?}: {msg}"
            );
        }
        assert!(upstream.requests.load(std::sync::atomic::Ordering::Relaxed) >= 2);
        let exit = proxy.signal("TERM")?;
        assert!(exit.stderr.contains("2 upstream-error"), "{}", exit.stderr);
    }

    // A certificate for another host name, from a trusted CA.
    let wrong = TestCa::for_names(&["not-this-host.example"])?;
    let wrong_pem = tmp.path().join("wrong.pem");
    std::fs::write(&wrong_pem, &wrong.ca_pem)?;
    let stand_in = StandIn::start(&wrong).await?;
    let proxy = Proxy::start(&[
        "record",
        "--cassettes",
        s(&dir)?,
        "--upstream",
        &stand_in.url,
        "--upstream-ca",
        s(&wrong_pem)?,
    ])?;
    let r = client.assign(&proxy.base, SEED_PATH, SDK_BODY, &[]).await?;
    assert_eq!(r.status, 502);
    assert!(
        r.text().contains("certificate not valid for name"),
        "{}",
        r.text()
    );
    proxy.signal("TERM")?;

    assert!(
        exported(&dir, "default")?.is_empty(),
        "something was recorded"
    );
    Ok(())
}

#[test]
fn an_unusable_cassette_directory_is_a_clear_error_before_listening() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "not a directory")?;
    let e = run_to_end(&[
        "record",
        "--cassettes",
        s(&file)?,
        "--upstream",
        "http://127.0.0.1:9",
        "--listen",
        "127.0.0.1:0",
    ])?;
    assert_eq!(e.status.code(), Some(2), "{}", e.stderr);
    assert!(
        e.stderr.contains(s(&file)?) && !e.stderr.contains("listening on"),
        "{}",
        e.stderr
    );

    let garbage = tmp.path().join("garbage");
    std::fs::create_dir_all(&garbage)?;
    std::fs::write(garbage.join("db"), vec![0xA5u8; 4096])?;
    std::fs::write(garbage.join("conf"), "not a sled config")?;
    for mode in ["record", "replay"] {
        let mut args = vec![mode, "--cassettes", s(&garbage)?, "--listen", "127.0.0.1:0"];
        if mode == "record" {
            args.extend(["--upstream", "http://127.0.0.1:9"]);
        }
        let e = run_to_end(&args)?;
        assert_eq!(e.status.code(), Some(2), "{mode}: {}", e.stderr);
        assert!(
            e.stderr.contains(s(&garbage)?) && !e.stderr.contains("panicked"),
            "{mode}: {}",
            e.stderr
        );
    }
    Ok(())
}

/// A body with thousands of deviations: each request lists the first 100 (errors first) and
/// counts the rest, in the journal, the log and the report, however often it is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deviations_are_capped_per_request_in_every_output() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let report = tmp.path().join("report.json");
    let (proxy, stand_in) = recorder(tmp.path(), &["--report-json", s(&report)?]).await?;
    const N: usize = 20_000;
    let targets: Vec<String> = (0..N)
        .map(|i| format!(r#"{{"target":{{"groupId":"00000000-0000-4000-8000-{i:012}"}}}}"#))
        .collect();
    let body = format!(r#"{{"assignments":[{}]}}"#, targets.join(","));
    let client = HttpClient::new();
    let path = "/v1.0/deviceManagement/deviceConfigurations/many/assign";
    for _ in 0..2 {
        let r = client.assign(&proxy.base, path, &body, &[]).await?;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.header("x-graph-vcr-deviations").is_some());
    }
    let exit = proxy.signal("TERM")?;
    stand_in.stop().await;
    let logged = exit.stderr.matches("contract deviation:").count();
    assert!(
        logged <= 2 * 100,
        "{logged} deviation log lines for two requests"
    );
    assert!(
        exit.stderr
            .contains("more contract deviations than are listed")
    );
    let journal = std::fs::read_to_string(tmp.path().join("cassettes/journal.jsonl"))?;
    for line in journal.lines() {
        let entry: serde_json::Value = serde_json::from_str(line)?;
        let listed = entry["deviations"].as_array().map_or(0, Vec::len);
        let omitted = entry["deviations_omitted"].as_u64().unwrap_or(0) as usize;
        assert_eq!(listed, 100, "{}", &line[..200.min(line.len())]);
        assert!(omitted >= N - 100, "{omitted} omitted");
        assert!(entry["deviations"][0]["severity"] == "error");
    }
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report)?)?;
    let call = &report["calls"][0];
    assert_eq!(call["deviations"].as_array().map(Vec::len), Some(100));
    assert!(call["deviations_omitted"].as_u64() >= Some((N - 100) as u64));
    Ok(())
}

/// The memory one large request takes is given back once it is answered: the process does
/// not stay at the size of its largest request for the rest of the run. (Without giving it
/// back, two 4.5 MB bodies left 170 MB resident here; with it, under 20 MB more than before.)
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_request_gives_its_memory_back() -> TestResult {
    let tmp = tempfile::tempdir()?;
    // Replay: nothing of the request is kept (a recording would be, in sled's cache).
    let dir = seed_cassette(tmp.path()).await?;
    let proxy = Proxy::start(&["replay", "--cassettes", s(&dir)?, "--allow-misses"])?;
    let client = HttpClient::new();
    // Warm up: a hit, and a small miss (whose explanation opens the store again).
    client
        .assign(&proxy.base, SEED_PATH, SEED_BODY, &[])
        .await?;
    let small_miss = SEED_BODY.replace("Collection Id value", "other");
    client
        .assign(&proxy.base, SEED_PATH, &small_miss, &[])
        .await?;
    let before = status_kib(proxy.pid(), "VmRSS")?;
    let targets: Vec<String> = (0..40_000)
        .map(|i| format!(r##"{{"target":{{"@odata.type":"#microsoft.graph.groupAssignmentTarget","groupId":"00000000-0000-4000-8000-{i:012}"}}}}"##))
        .collect();
    let body = format!(r#"{{"assignments":[{}]}}"#, targets.join(","));
    let path = "/v1.0/deviceManagement/deviceConfigurations/large/assign";
    for _ in 0..2 {
        let r = client.assign(&proxy.base, path, &body, &[]).await?;
        assert_eq!(r.status, 501, "{}", r.text());
    }
    // Its connection closed (the client's pool dropped), as a test run's would be.
    drop(client);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = status_kib(proxy.pid(), "VmRSS")?;
    let body_kib = (body.len() / 1024) as u64;
    assert!(
        after <= before + 6 * body_kib,
        "resident {before} KiB before, {after} KiB after two {body_kib} KiB bodies"
    );
    proxy.signal("TERM")?;
    Ok(())
}

/// A cassette directory in `tmp` holding one recording of the seed call.
#[cfg(target_os = "linux")]
async fn seed_cassette(tmp: &Path) -> Result<std::path::PathBuf, Error> {
    let (recording, stand_in) = recorder(tmp, &[]).await?;
    HttpClient::new()
        .assign(&recording.base, SEED_PATH, SEED_BODY, &[])
        .await?;
    recording.signal("TERM")?;
    stand_in.stop().await;
    Ok(tmp.join("cassettes"))
}

/// A `/proc/PID/status` figure in KiB (`VmRSS`, `VmHWM`).
#[cfg(target_os = "linux")]
fn status_kib(pid: u32, field: &str) -> Result<u64, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .ok_or_else(|| format!("no {field}"))?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("bad {field}: {line}"))?)
}

/// An assign body of `n` group targets; `tiny` leaves out the type and shortens the ids, the
/// shape that costs a parsed tree the most per byte.
#[cfg(target_os = "linux")]
fn many_targets(n: usize, tiny: bool) -> String {
    let targets: Vec<String> = (0..n)
        .map(|i| {
            if tiny {
                format!(r#"{{"target":{{"groupId":"{i:08}"}}}}"#)
            } else {
                format!(r##"{{"target":{{"@odata.type":"#microsoft.graph.groupAssignmentTarget","groupId":"00000000-0000-4000-8000-{i:012}"}}}}"##)
            }
        })
        .collect();
    format!(
        r#"{{"enrollmentConfigurationAssignments":[{}]}}"#,
        targets.join(",")
    )
}

/// The peak memory one large request adds, in KiB, and the body's size in KiB: `send` is
/// called once with a small body (warming up) and once with the large one.
#[cfg(target_os = "linux")]
async fn peak_added(proxy: &Proxy, path: &str, body: &str) -> Result<(u64, u64), Error> {
    let client = HttpClient::new();
    client
        .assign(&proxy.base, SEED_PATH, SEED_BODY, &[])
        .await?;
    let before = status_kib(proxy.pid(), "VmHWM")?;
    let r = client.assign(&proxy.base, path, body, &[]).await?;
    assert!(
        r.status != 413 && r.status != 400,
        "{} {}",
        r.status,
        r.text()
    );
    let after = status_kib(proxy.pid(), "VmHWM")?;
    Ok((after.saturating_sub(before), (body.len() / 1024) as u64))
}

/// One large request's peak memory (VmHWM) is a small multiple of its body (issue 13). With
/// the body parsed into a `serde_json::Value`, this test measured 18-20 times the body in
/// record and 23 times in replay for 130,000 assignments (15 MB); with the tree borrowed from
/// the body, 8.6 in record, and in replay 5.7, 7.5 for 470,000 tiny elements and 7.7 for the
/// same call inside a `$batch`.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_large_request_takes_a_small_multiple_of_its_body() -> TestResult {
    // An action the stand-in answers 204, as Graph does: the request is all there is.
    const PATH: &str = "/v1.0/deviceManagement/deviceEnrollmentConfigurations/large/assign";
    let realistic = many_targets(130_000, false);
    // Record: a cassette of its own, so that replay's below holds only the seed call.
    let tmp = tempfile::tempdir()?;
    let (recording, stand_in) = recorder(tmp.path(), &["--max-body-size", "17000000"]).await?;
    // A record run does not keep what it recorded in memory: sled holds a page it wrote until
    // its cache shard evicts it, which for a large recording was never (`cassette::packing`).
    let client = HttpClient::new();
    let medium = many_targets(30_000, false);
    let resident = || status_kib(recording.pid(), "VmRSS");
    let mut first = 0;
    for i in 0..5 {
        let path = PATH.replace("large", &format!("large-{i}"));
        let r = client.assign(&recording.base, &path, &medium, &[]).await?;
        assert_eq!(r.status, 204, "{}", r.text());
        if i == 0 {
            // After the first, which also sets up what any recording needs (a connection).
            first = resident()?;
        }
    }
    let (grown, medium_kib) = (
        resident()?.saturating_sub(first),
        medium.len() as u64 / 1024,
    );
    // Measured: 0-5 MB more usually, up to 13.5 MB when the recordings landed on other
    // threads' allocator arenas (seen under CI's load, and with this bound at 3x it failed
    // there); 31 MB with records kept as sled held them. The bound sits between the two.
    assert!(
        grown <= 6 * medium_kib,
        "record: {grown} KiB more resident after four more {medium_kib} KiB recordings"
    );
    let (added, body) = peak_added(&recording, PATH, &realistic).await?;
    assert!(
        added <= 12 * body,
        "record: {added} KiB more at peak for a {body} KiB body"
    );
    recording.signal("TERM")?;
    stand_in.stop().await;
    let tmp = tempfile::tempdir()?;
    let dir = seed_cassette(tmp.path()).await?;
    let replay = || {
        Proxy::start(&[
            "replay",
            "--cassettes",
            s(&dir)?,
            "--allow-misses",
            "--max-body-size",
            "17000000",
        ])
    };
    let tiny = many_targets(470_000, true);
    assert!(tiny.len() > 15_000_000, "{}", tiny.len());
    let batch = format!(
        r#"{{"requests":[{{"id":"1","method":"POST","url":"{}","headers":{{"Content-Type":"application/json"}},"body":{realistic}}}]}}"#,
        &PATH["/v1.0".len()..]
    );
    for (what, path, body) in [
        ("direct", PATH, &realistic),
        ("tiny elements", PATH, &tiny),
        ("in a $batch", "/v1.0/$batch", &batch),
    ] {
        let proxy = replay()?;
        let (added, kib) = peak_added(&proxy, path, body).await?;
        assert!(
            added <= 10 * kib,
            "replay, {what}: {added} KiB more at peak for a {kib} KiB body"
        );
        proxy.signal("TERM")?;
    }
    Ok(())
}
