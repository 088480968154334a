//! One pipeline, one outcome: the summary on stderr, the report's totals and the journal
//! count every outcome alike; and replay answers, journals and reports a request the same way
//! whether its analysis came from the memo or was made afresh.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use tokio::io::AsyncWriteExt;

const CONFIG_PATH: &str = "/v1.0/deviceManagement/deviceConfigurations/dc-1/assign";
const CONFIG_BODY: &str = r##"{"assignments":[{"target":{"@odata.type":"#microsoft.graph.allDevicesAssignmentTarget"}}]}"##;
/// A group both included and excluded: an `error` deviation.
const CONFLICT_BODY: &str = r##"{"assignments":[{"target":{"@odata.type":"#microsoft.graph.groupAssignmentTarget","groupId":"11111111-1111-4111-8111-111111111111"}},{"target":{"@odata.type":"#microsoft.graph.exclusionGroupAssignmentTarget","groupId":"11111111-1111-4111-8111-111111111111"}}]}"##;
/// An empty list: a `warning` (it removes every assignment).
const EMPTY_BODY: &str = r#"{"assignments":[]}"#;

/// `N requests in M calls: 1 replayed, 0 recorded, 1 miss; …` → {outcome: count}, zeros left out.
fn summary_counts(stderr: &str) -> Result<BTreeMap<String, u64>, Error> {
    let line = stderr
        .lines()
        .find(|l| l.contains(" requests in ") && l.contains(" calls: "))
        .ok_or_else(|| format!("no summary line in {stderr}"))?;
    let list = line
        .split_once(" calls: ")
        .and_then(|(_, rest)| rest.split_once(';'))
        .map(|(list, _)| list)
        .ok_or("summary line without outcomes")?;
    let mut counts = BTreeMap::new();
    for part in list.split(", ") {
        let (n, name) = part.split_once(' ').ok_or("malformed summary part")?;
        let n: u64 = n.parse()?;
        if n > 0 {
            counts.insert(name.to_string(), n);
        }
    }
    Ok(counts)
}

fn report_counts(report: &Value) -> BTreeMap<String, u64> {
    report["totals"]["outcomes"]
        .as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                .filter(|(_, n)| *n > 0)
                .collect()
        })
        .unwrap_or_default()
}

fn journal_lines(path: &Path) -> Result<Vec<Value>, Error> {
    std::fs::read_to_string(path)?
        .lines()
        .map(|l| serde_json::from_str(l).map_err(Error::from))
        .collect()
}

fn journal_counts(lines: &[Value]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for l in lines {
        *counts
            .entry(l["outcome"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
    }
    counts
}

/// A request whose body breaks off: the head promises 100 bytes, 10 come, then the client
/// closes its side.
async fn truncated_body(addr: std::net::SocketAddr) -> TestResult {
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    let head = format!(
        "POST {SEED_PATH} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"assignm"
    );
    tcp.write_all(head.as_bytes()).await?;
    tcp.shutdown().await?;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut rest),
    )
    .await;
    Ok(())
}

fn assert_three_agree(
    stderr: &str,
    report: &Path,
    journal: &Path,
    want: &[(&str, u64)],
) -> TestResult {
    let want: BTreeMap<String, u64> = want.iter().map(|(k, n)| (k.to_string(), *n)).collect();
    let report =
        std::fs::read(report).map_err(|e| format!("{}: {e}: {stderr}", report.display()))?;
    let report: Value = serde_json::from_slice(&report)?;
    assert_eq!(summary_counts(stderr)?, want, "summary: {stderr}");
    assert_eq!(report_counts(&report), want, "report: {report:#}");
    assert_eq!(journal_counts(&journal_lines(journal)?), want, "journal");
    let requests: u64 = want.values().sum();
    assert_eq!(report["totals"]["requests"], requests);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_report_and_journal_agree_on_every_outcome() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let report = tmp.path().join("record.json");
    let (proxy, stand_in, dir) = forwarding(
        "record",
        tmp.path(),
        &[
            "--on-deviation",
            "reject",
            "--max-body-size",
            "65536",
            "--upstream-timeout",
            "1s",
            "--report-json",
            s(&report)?,
        ],
    )
    .await?;
    let client = HttpClient::new();
    let base = std::cell::RefCell::new(proxy.base.clone());
    let assign = |path: &'static str, body: String, extra: Vec<(&'static str, &'static str)>| {
        let base = base.borrow().clone();
        let client = &client;
        async move { client.assign(&base, path, &body, &extra).await }
    };
    assert_eq!(
        assign(SEED_PATH, SEED_BODY.into(), vec![]).await?.status,
        204
    );
    let list = client
        .send(
            "GET",
            // Not under /v1.0 or /beta: forwarded, not stored (every Graph call is recorded).
            &format!("{}/healthz", proxy.base),
            &[("authorization", "Bearer x")],
            "",
        )
        .await?;
    assert_eq!(list.header("x-graph-vcr-outcome"), Some("forwarded"));
    assert_eq!(assign(SEED_PATH, "{}".into(), vec![]).await?.status, 400);
    let large = SEED_BODY.replace("Collection Id value", &"x".repeat(70_000));
    assert_eq!(assign(SEED_PATH, large, vec![]).await?.status, 413);
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    assert_eq!(assign(SEED_PATH, deep, vec![]).await?.status, 400);
    let bad = vec![("x-graph-vcr-cassette", "not a name!")];
    assert_eq!(assign(SEED_PATH, SEED_BODY.into(), bad).await?.status, 400);
    let slow = "/v1.0/deviceManagement/deviceConfigurations/slow/assign";
    assert_eq!(assign(slow, CONFIG_BODY.into(), vec![]).await?.status, 504);
    truncated_body(proxy.addr).await?;
    let exit = proxy.signal("TERM")?;
    stand_in.stop().await;
    assert_three_agree(
        &exit.stderr,
        &report,
        &dir.join("journal.jsonl"),
        &[
            ("recorded", 1),
            ("forwarded", 1),
            ("rejected", 1),
            ("too-large", 1),
            ("too-deep", 1),
            ("bad-cassette", 1),
            ("upstream-error", 1),
            ("bad-request", 1),
        ],
    )?;

    // Replay: a hit, a miss, and a recording that cannot be served.
    {
        use graph_vcr::cassette::{Access, CassetteName, Store};
        let store = Store::open(&dir, Access::ReadWrite)?;
        let made = graph_vcr::export::made_up(
            "POST",
            CONFIG_PATH,
            CONFIG_BODY,
            graph_vcr::interaction::RecordedResponse {
                status: 200,
                headers: vec![],
                body: graph_vcr::interaction::Body::Empty,
            },
            "2026-12-01T00:00:00.000Z",
            &Default::default(),
        );
        let key = graph_vcr::key::Key::from_hex(&made.key).ok_or("key")?;
        let broken = store.cassette(&CassetteName::new("broken")?)?;
        broken.put(&key, 0, b"not json".to_vec())?;
        store.flush_blocking()?;
    }
    let (report, journal) = (
        tmp.path().join("replay.json"),
        tmp.path().join("replay.jsonl"),
    );
    let proxy = Proxy::start(&[
        "replay",
        "--cassettes",
        s(&dir)?,
        "--journal",
        s(&journal)?,
        "--report-json",
        s(&report)?,
    ])?;
    base.replace(proxy.base.clone());
    assert_eq!(
        assign(SEED_PATH, SEED_BODY.into(), vec![]).await?.status,
        204
    );
    let other = SEED_BODY.replace("Collection Id value", "never-recorded");
    assert_eq!(assign(SEED_PATH, other, vec![]).await?.status, 501);
    let in_broken = vec![("x-graph-vcr-cassette", "broken")];
    let r = assign(CONFIG_PATH, CONFIG_BODY.into(), in_broken).await?;
    assert_eq!(r.status, 500, "{}", r.text());
    let exit = proxy.signal("TERM")?;
    assert_three_agree(
        &exit.stderr,
        &report,
        &journal,
        &[("replayed", 1), ("miss", 1), ("corrupt-record", 1)],
    )
}

/// Records a corpus with deviations, and returns the stored request bodies by path.
async fn record_corpus(tmp: &Path) -> Result<(std::path::PathBuf, Vec<(String, String)>), Error> {
    let (proxy, stand_in, dir) = forwarding("record", tmp, &[]).await?;
    let client = HttpClient::new();
    for (path, body) in [
        (SEED_PATH, SEED_BODY),
        (SEED_PATH, SDK_BODY),
        (CONFIG_PATH, CONFIG_BODY),
        (CONFIG_PATH, EMPTY_BODY),
        (CONFIG_PATH, CONFLICT_BODY),
    ] {
        let r = client.assign(&proxy.base, path, body, &[]).await?;
        assert!(r.status < 300, "{path}: {}", r.text());
    }
    proxy.signal("TERM")?;
    stand_in.stop().await;
    let stored = exported(&dir, "default")?
        .iter()
        .map(|i| {
            let path = i["request"]["path"].as_str().unwrap_or("").to_string();
            // Format 2: a JSON body as JSON, written back compactly as it was sent.
            let body = match &i["request"]["json"] {
                serde_json::Value::Null => i["request"]["text"].as_str().unwrap_or("").to_string(),
                json => json.to_string(),
            };
            (path, body)
        })
        .collect();
    Ok((dir, stored))
}

/// Replays the same requests through `graph-vcr replay EXTRA` and returns the journal (less
/// its times) and the JSON report.
async fn replay_corpus(
    tmp: &Path,
    dir: &Path,
    stored: &[(String, String)],
    extra: &[&str],
) -> Result<(Vec<Value>, Value, String), Error> {
    let name = if extra.is_empty() { "warm" } else { "cold" };
    let (journal, report, markdown) = (
        tmp.join(format!("{name}.jsonl")),
        tmp.join(format!("{name}.json")),
        tmp.join(format!("{name}.md")),
    );
    let mut args = vec![
        "replay",
        "--cassettes",
        s(dir)?,
        "--on-deviation",
        "reject",
        "--journal",
        s(&journal)?,
        "--report-json",
        s(&report)?,
        "--report-markdown",
        s(&markdown)?,
    ];
    args.extend_from_slice(extra);
    let proxy = Proxy::start(&args)?;
    let client = HttpClient::new();
    // Hits with the stored bytes, each twice (a repeat), then misses, bad headers, limits.
    for _ in 0..2 {
        for (path, body) in stored {
            client.assign(&proxy.base, path, body, &[]).await?;
        }
    }
    let (path, body) = (SEED_PATH, SEED_BODY);
    let no_auth = [("content-type", "application/json")];
    client
        .send("POST", &format!("{}{path}", proxy.base), &no_auth, body)
        .await?;
    let changed = body.replace("Collection Id value", "changed");
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    for (body, cassette) in [
        (changed.as_str(), None),
        (body, Some("bad name")),
        (body, Some("nosuch")),
        (deep.as_str(), None),
    ] {
        let header: Vec<(&str, &str)> = cassette
            .map(|c| ("x-graph-vcr-cassette", c))
            .into_iter()
            .collect();
        client.assign(&proxy.base, path, body, &header).await?;
    }
    let exit = proxy.signal("TERM")?;
    assert!(
        exit.stderr.contains("requests answered from the memo") == extra.is_empty(),
        "{name}: {}",
        exit.stderr
    );
    let mut lines = journal_lines(&journal)?;
    // Time aside: when, and how long each request took.
    for l in &mut lines {
        if let Some(o) = l.as_object_mut() {
            o.remove("time");
            o.remove("elapsed_ms");
        }
    }
    let mut report: Value = serde_json::from_slice(&std::fs::read(&report)?)?;
    if let Some(o) = report.as_object_mut() {
        o.remove("started");
    }
    for call in report["calls"].as_array_mut().into_iter().flatten() {
        if let Some(o) = call.as_object_mut() {
            o.remove("seconds");
        }
    }
    Ok((lines, report, std::fs::read_to_string(&markdown)?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_reports_the_same_with_the_memo_as_without_it() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (dir, stored) = record_corpus(tmp.path()).await?;
    assert_eq!(stored.len(), 5);
    let (cold_journal, cold_report, cold_md) =
        replay_corpus(tmp.path(), &dir, &stored, &["--no-memo"]).await?;
    let (warm_journal, warm_report, warm_md) =
        replay_corpus(tmp.path(), &dir, &stored, &[]).await?;
    // Each stored call twice (the conflicting one rejected), then: no Authorization (an
    // error deviation, rejected), a changed body, a bad cassette name, an unknown cassette,
    // a body too deep.
    let mut want: Vec<&str> = Vec::new();
    for _ in 0..2 {
        for (_, body) in &stored {
            want.push(if body == CONFLICT_BODY {
                "rejected"
            } else {
                "replayed"
            });
        }
    }
    want.extend([
        "rejected",
        "miss",
        "bad-cassette",
        "unknown-cassette",
        "too-deep",
    ]);
    let outcomes: Vec<&str> = warm_journal
        .iter()
        .map(|l| l["outcome"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(outcomes, want);
    assert_eq!(cold_journal.len(), want.len());
    for (i, (cold, warm)) in cold_journal.iter().zip(&warm_journal).enumerate() {
        assert_eq!(cold, warm, "journal line {i}");
    }
    assert_eq!(cold_report, warm_report);
    assert_eq!(cold_md, warm_md);

    // And what they agree on is right: every call named, its deviations reported.
    for call in warm_report["calls"].as_array().ok_or("no calls")? {
        assert!(
            !call["method"].as_str().unwrap_or("").is_empty()
                && !call["path"].as_str().unwrap_or("").is_empty(),
            "{call}"
        );
    }
    let empty = warm_report["calls"]
        .as_array()
        .and_then(|c| {
            c.iter()
                .find(|c| c["deviations"].to_string().contains("empty-assignments"))
        })
        .ok_or("the empty list's warning is not in the report")?;
    assert_eq!(empty["outcomes"]["replayed"], 2);
    assert!(
        warm_md.contains(&format!("`POST {CONFIG_PATH}`")),
        "{warm_md}"
    );
    assert!(warm_report["totals"]["deviation_warnings"].as_u64() >= Some(1));
    Ok(())
}
