//! Whole workflows, as real Intune tools run them: list configurations over two pages (the
//! next link absolute), read their assignments in a `$batch` (one item depending on
//! another), read a group, then assign — throttled once, and retried after `Retry-After`.
//! Recorded with default flags by base URL; replayed offline by base URL and as
//! `HTTPS_PROXY`, with no miss and every link the client follows on the proxy.

mod common;

use common::*;
use serde_json::{Value, json};
use std::path::Path;

const GROUP: &str = "/v1.0/groups/3f1c2a9e-6b1d-4c39-9a55-0f0d1c2b3a4d";
const ASSIGN: &str = "/v1.0/deviceManagement/deviceConfigurations/dc-1/assign";
const ASSIGN_BODY: &str = r##"{"assignments":[{"target":{"@odata.type":"#microsoft.graph.groupAssignmentTarget","groupId":"3f1c2a9e-6b1d-4c39-9a55-0f0d1c2b3a4d"}}]}"##;

/// How the client reaches Graph: graph-vcr as its base URL, or a tunnel through graph-vcr as
/// `HTTPS_PROXY` to graph.microsoft.com.
enum Transport {
    Base {
        client: Box<HttpClient>,
        base: String,
    },
    Proxied(Tunnel),
}

/// A client with `proxy` as its base URL.
fn by_base_url(proxy: &Proxy) -> Transport {
    Transport::Base {
        client: Box::new(HttpClient::new()),
        base: proxy.base.clone(),
    }
}

impl Transport {
    /// Sends a `$batch`, expects Graph's 200, and returns it with its `responses`.
    async fn batch(&mut self, batch: &Value) -> Result<(Resp, Vec<Value>), Error> {
        let b = self
            .send("POST", "/v1.0/$batch", &[], &batch.to_string())
            .await?;
        assert_eq!(b.status, 200, "{}", b.text());
        let responses = b.json()["responses"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok((b, responses))
    }

    /// Where links in answers must point for this client.
    fn origin(&self) -> String {
        match self {
            Self::Base { base, .. } => base.clone(),
            Self::Proxied(_) => "https://graph.microsoft.com".into(),
        }
    }

    /// Sends to a path, or to an absolute link the client was given (which must be on the
    /// origin this client uses: a link elsewhere would leave the proxy).
    async fn send(
        &mut self,
        method: &str,
        target: &str,
        extra: &[(&str, &str)],
        body: &str,
    ) -> Result<Resp, Error> {
        let origin = self.origin();
        let path = match target.strip_prefix(&origin) {
            Some(p) => p.to_string(),
            None if target.starts_with('/') => target.to_string(),
            None => {
                return Err(format!(
                    "the client was sent off the proxy: {target} (expected {origin})"
                )
                .into());
            }
        };
        let auth = format!("Bearer {JWT}");
        let mut headers = vec![
            ("authorization", auth.as_str()),
            ("accept", "application/json"),
            ("client-request-id", "7c1c7d1a-0000-4000-8000-000000000001"),
            ("sdkversion", "graph-python/1.65.0, graph-python-core/1.5.2"),
        ];
        if !body.is_empty() {
            headers.push(("content-type", "application/json"));
        }
        headers.extend_from_slice(extra);
        match self {
            Self::Base { client, base } => {
                client
                    .send(method, &format!("{base}{path}"), &headers, body)
                    .await
            }
            Self::Proxied(t) => t.send(method, &path, &headers, body).await,
        }
    }
}

/// The read-then-assign workflow; returns each answer (status and JSON body, links with the
/// client's origin replaced by `ORIGIN`) in order.
async fn workflow(t: &mut Transport) -> Result<Vec<(u16, Value)>, Error> {
    let origin = t.origin();
    let mut seen = Vec::new();
    let mut keep = |r: &Resp| {
        let mut body = serde_json::from_str(&r.text()).unwrap_or(Value::Null);
        if let Some(link) = body["@odata.nextLink"].as_str() {
            body["@odata.nextLink"] = Value::String(link.replacen(&origin, "ORIGIN", 1));
        }
        seen.push((r.status, body));
    };
    // Page through the configurations, as PageIterator does: follow the next link as given.
    let page = t.send("GET", PAGED_PATH, &[], "").await?;
    assert_eq!(page.status, 200, "{}", page.text());
    keep(&page);
    let next = page.json()["@odata.nextLink"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        next.starts_with(&format!("{origin}{PAGED_PATH}?")),
        "next link {next:?} is not on {origin}"
    );
    let page2 = t.send("GET", &next, &[], "").await?;
    assert_eq!(page2.status, 200, "{}", page2.text());
    assert_eq!(page2.json()["value"][0]["id"], "dc-3");
    keep(&page2);
    // Their assignments in one batch, as BatchRequestContent sends it.
    let batch = json!({"requests": [
        {"id": "1", "method": "GET", "url": "/deviceManagement/deviceConfigurations/dc-1/assignments"},
        {"id": "2", "method": "GET", "url": "/deviceManagement/deviceConfigurations/dc-2/assignments", "dependsOn": ["1"]},
        {"id": "3", "method": "GET", "url": "/deviceManagement/deviceConfigurations/dc-3/assignments"},
    ]});
    let b = t
        .send("POST", "/v1.0/$batch", &[], &batch.to_string())
        .await?;
    assert_eq!(b.status, 200, "{}", b.text());
    let ids: Vec<Value> = b.json()["responses"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(
        ids,
        [json!("1"), json!("2"), json!("3")],
        "items in the client's order: {}",
        b.text()
    );
    for r in b.json()["responses"].as_array().into_iter().flatten() {
        assert_eq!(r["status"], 200, "{r}");
    }
    keep(&b);
    let g = t.send("GET", GROUP, &[], "").await?;
    assert_eq!(g.status, 200, "{}", g.text());
    keep(&g);
    // The assign, throttled once: wait as Retry-After says, then retry.
    let mut a = t
        .send("POST", ASSIGN, &[(THROTTLE_ONCE, "1")], ASSIGN_BODY)
        .await?;
    if a.status == 429 {
        let wait: f64 = a
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1.0);
        tokio::time::sleep(std::time::Duration::from_secs_f64(wait)).await;
        a = t
            .send("POST", ASSIGN, &[(THROTTLE_ONCE, "1")], ASSIGN_BODY)
            .await?;
    }
    assert_eq!(a.status, 200, "{}", a.text());
    keep(&a);
    Ok(seen)
}

/// The run ended with exit status 0 and a passing verdict.
fn assert_passed(exit: &Exit) {
    assert!(
        exit.status.success() && exit.stderr.contains("result: passed"),
        "{}",
        exit.stderr
    );
}

fn journal(path: &Path) -> Result<Vec<Value>, Error> {
    Ok(std::fs::read_to_string(path)?
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_then_assign_workflow_records_by_default_and_replays_both_ways() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (proxy, stand_in, dir) = forwarding("record", tmp.path(), &["--cassette", "wf"]).await?;
    let mut t = by_base_url(&proxy);
    let recorded = workflow(&mut t).await?;
    let exit = proxy.signal("TERM")?;
    assert_passed(&exit);
    assert!(
        exit.stderr.contains("not stored: 1 forwarded request(s)")
            && exit
                .stderr
                .contains("a throttled answer (429 Too Many Requests)"),
        "the summary names the throttled try it did not store: {}",
        exit.stderr
    );
    let throttled = stand_in
        .received()
        .iter()
        .filter(|r| r.path_and_query == ASSIGN)
        .count();
    assert_eq!(
        throttled, 2,
        "the stand-in throttled the first assign and answered the retry"
    );
    stand_in.stop().await;

    let stored = exported(&dir, "wf")?;
    // Two pages, three batch items, the group, the assign's answer (not its 429).
    assert_eq!(stored.len(), 7, "{stored:#?}");
    assert!(
        stored.iter().all(|i| i["response"]["status"] != 429),
        "a 429 was stored"
    );
    let stored_link = stored.iter().find_map(|i| {
        i["response"]["json"]["@odata.nextLink"]
            .as_str()
            .map(str::to_string)
    });
    assert_eq!(
        stored_link.as_deref(),
        Some(
            "https://graph.microsoft.com/v1.0/deviceManagement/deviceConfigurations?$skiptoken=page2"
        ),
        "links are stored in one form, whatever upstream answered"
    );

    // Offline, by base URL.
    let log = tmp.path().join("replay.jsonl");
    let proxy = Proxy::start(&[
        "replay",
        "--cassettes",
        s(&dir)?,
        "--cassette",
        "wf",
        "--journal",
        s(&log)?,
    ])?;
    let mut t = by_base_url(&proxy);
    let replayed = workflow(&mut t).await?;
    assert_eq!(replayed, recorded, "replay answers as the service did");
    let exit = proxy.signal("TERM")?;
    assert_passed(&exit);
    let lines = journal(&log)?;
    assert!(lines.iter().all(|l| l["outcome"] != "miss"), "{lines:#?}");
    let items: Vec<&Value> = lines
        .iter()
        .filter(|l| l["batch"]["item"].is_string())
        .collect();
    assert_eq!(
        items.len(),
        3,
        "each batch item is journaled as its own call: {lines:#?}"
    );
    assert!(
        items
            .iter()
            .all(|l| l["outcome"] == "replayed" && l["batch"]["batch"] == 1)
    );

    // Offline, as HTTPS_PROXY: the same cassette, links on graph.microsoft.com (intercepted).
    let ca_dir = tmp.path().join("ca");
    let root = ca_init(&ca_dir)?;
    let proxy = Proxy::start(&[
        "replay",
        "--forward",
        "--ca-dir",
        s(&ca_dir)?,
        "--cassettes",
        s(&dir)?,
        "--cassette",
        "wf",
    ])?;
    let tunnel = connect_through(proxy.addr, "graph.microsoft.com:443", &root, &["http/1.1"])
        .await?
        .tunnel()?;
    let mut t = Transport::Proxied(tunnel);
    let proxied = workflow(&mut t).await?;
    assert_eq!(
        proxied, recorded,
        "the base-URL recording replays through the forward proxy"
    );
    let exit = proxy.signal("TERM")?;
    assert_passed(&exit);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_items_and_direct_calls_answer_each_other_and_are_checked_alike() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (proxy, stand_in, dir) = forwarding("record", tmp.path(), &[]).await?;
    let mut t = by_base_url(&proxy);
    // Recorded inside a batch: an assign (with an empty list, flagged as it would be directly)
    // and a read; recorded directly: the group.
    let empty = r#"{"assignments":[]}"#;
    let batch = json!({"requests": [
        {"id": "a", "method": "POST", "url": "/deviceManagement/deviceConfigurations/dc-9/assign",
         "headers": {"Content-Type": "application/json"}, "body": serde_json::from_str::<Value>(empty)?},
        {"id": "b", "method": "GET", "url": "/deviceManagement/deviceConfigurations/dc-9/assignments"},
    ]});
    let b = t
        .send("POST", "/v1.0/$batch", &[], &batch.to_string())
        .await?;
    assert_eq!(b.status, 200, "{}", b.text());
    let flagged = b
        .header("x-graph-vcr-deviations")
        .unwrap_or_default()
        .to_string();
    assert!(flagged.contains("empty-assignments (item a)"), "{flagged}");
    let direct = t
        .send(
            "POST",
            "/v1.0/deviceManagement/deviceConfigurations/dc-8/assign",
            &[],
            empty,
        )
        .await?;
    assert!(
        direct
            .header("x-graph-vcr-deviations")
            .unwrap_or_default()
            .contains("empty-assignments")
    );
    let g = t.send("GET", GROUP, &[], "").await?;
    assert_eq!(g.status, 200);
    proxy.signal("TERM")?;
    stand_in.stop().await;

    let proxy = Proxy::start(&["replay", "--cassettes", s(&dir)?])?;
    let mut t = by_base_url(&proxy);
    // The batch's read answers a direct call; the direct group read answers a batch item.
    let direct = t
        .send(
            "GET",
            "/v1.0/deviceManagement/deviceConfigurations/dc-9/assignments",
            &[],
            "",
        )
        .await?;
    assert_eq!(
        (direct.status, direct.header("x-graph-vcr-outcome")),
        (200, Some("replayed")),
        "{}",
        direct.text()
    );
    assert_eq!(direct.json()["value"][0]["id"], "dc-9-assignment");
    let batch = json!({"requests": [
        {"id": "g", "method": "GET", "url": GROUP.trim_start_matches("/v1.0")},
        {"id": "changed", "method": "POST", "url": "/deviceManagement/deviceConfigurations/dc-9/assign",
         "headers": {"Content-Type": "application/json"},
         "body": {"assignments": [{"target": {"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"}}]}},
        {"id": "after", "method": "GET", "url": "/deviceManagement/deviceConfigurations/dc-9/assignments", "dependsOn": ["changed"]},
    ]});
    let (b, responses) = t.batch(&batch).await?;
    assert_eq!(responses.len(), 3, "{}", b.text());
    assert_eq!(responses[0]["status"], 200);
    assert_eq!(
        responses[0]["body"],
        g.json(),
        "the direct recording answered the item"
    );
    // The changed assign misses, with a diff that names the item; its dependent is not run.
    assert_eq!(responses[1]["status"], 501, "{}", responses[1]);
    let message = responses[1]["body"]["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("$batch item \"changed\"") && message.contains("/assignments"),
        "{message}"
    );
    assert_eq!(responses[2]["status"], 424, "{}", responses[2]);
    assert_eq!(responses[2]["body"]["error"]["code"], "FailedDependency");
    let exit = proxy.signal("TERM")?;
    assert!(
        !exit.status.success() && exit.stderr.contains("1 request(s) missed"),
        "{}",
        exit.stderr
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_as_https_proxy_it_replays_by_base_url() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (proxy, stand_in, dir, root) =
        forward_proxy("record", tmp.path(), &["--cassette", "wf"]).await?;
    let tunnel = connect_through(proxy.addr, "graph.microsoft.com:443", &root, &["http/1.1"])
        .await?
        .tunnel()?;
    let recorded = workflow(&mut Transport::Proxied(tunnel)).await?;
    let exit = proxy.signal("TERM")?;
    assert!(exit.status.success(), "{}", exit.stderr);
    stand_in.stop().await;
    let proxy = Proxy::start(&["replay", "--cassettes", s(&dir)?, "--cassette", "wf"])?;
    let mut t = by_base_url(&proxy);
    assert_eq!(workflow(&mut t).await?, recorded);
    let exit = proxy.signal("TERM")?;
    assert_passed(&exit);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_throttling_keeps_the_429_and_replay_throttles_where_recording_did() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (proxy, stand_in, dir) = forwarding("record", tmp.path(), &["--record-throttling"]).await?;
    let mut t = by_base_url(&proxy);
    let first = t
        .send("POST", ASSIGN, &[(THROTTLE_ONCE, "1")], ASSIGN_BODY)
        .await?;
    let retry = t
        .send("POST", ASSIGN, &[(THROTTLE_ONCE, "1")], ASSIGN_BODY)
        .await?;
    assert_eq!((first.status, retry.status), (429, 200));
    assert_eq!(first.header("x-graph-vcr-outcome"), Some("recorded"));
    proxy.signal("TERM")?;
    stand_in.stop().await;
    let proxy = Proxy::start(&["replay", "--cassettes", s(&dir)?])?;
    let mut t = by_base_url(&proxy);
    let first = t.send("POST", ASSIGN, &[], ASSIGN_BODY).await?;
    assert_eq!(
        (first.status, first.header("retry-after")),
        (429, Some("1"))
    );
    assert_eq!(t.send("POST", ASSIGN, &[], ASSIGN_BODY).await?.status, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_forwards_only_the_items_it_has_not_recorded() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (proxy, stand_in, dir) = forwarding("auto", tmp.path(), &[]).await?;
    let mut t = by_base_url(&proxy);
    let read = "/deviceManagement/deviceConfigurations/dc-1/assignments";
    let once = t.send("GET", &format!("/v1.0{read}"), &[], "").await?;
    assert_eq!(once.header("x-graph-vcr-outcome"), Some("recorded"));
    proxy.signal("TERM")?;
    // The next run: the read is recorded at its first occurrence, the other item is new.
    let ca = tmp.path().join("ca.pem");
    let proxy = Proxy::start(&[
        "auto",
        "--cassettes",
        s(&dir)?,
        "--upstream",
        &stand_in.url,
        "--upstream-ca",
        s(&ca)?,
    ])?;
    let mut t = by_base_url(&proxy);
    let batch = json!({"requests": [
        {"id": "old", "method": "GET", "url": read},
        {"id": "new", "method": "GET", "url": "/deviceManagement/deviceConfigurations/dc-2/assignments", "dependsOn": ["old"]},
    ]});
    let (_, responses) = t.batch(&batch).await?;
    let ids: Vec<&str> = responses.iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(ids, ["old", "new"]);
    assert_eq!(
        responses[0]["body"],
        once.json(),
        "the recorded item is replayed"
    );
    let sent = stand_in.received();
    let forwarded = sent.last().map(|r| r.body.clone()).unwrap_or_default();
    let forwarded: Value = serde_json::from_slice(&forwarded)?;
    assert_eq!(
        forwarded,
        json!({"requests": [{"id": "new", "method": "GET", "url": "/deviceManagement/deviceConfigurations/dc-2/assignments"}]}),
        "only the new item went out, its dependency on a replayed item dropped"
    );
    proxy.signal("TERM")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_checks_every_item_and_a_batch_graph_refuses_is_one_call() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let log = tmp.path().join("audit.jsonl");
    let (proxy, stand_in, _dir) = forwarding("audit", tmp.path(), &["--journal", s(&log)?]).await?;
    let mut t = by_base_url(&proxy);
    let batch = json!({"requests": [
        {"id": "1", "method": "POST", "url": "/deviceManagement/deviceConfigurations/dc-1/assign",
         "headers": {"Content-Type": "application/json"}, "body": {"assignments": []}},
        {"id": "2", "method": "POST", "url": "/deviceManagement/deviceConfigurations/dc-2/assign",
         "body": {"assignments": [{"target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget"}}]}, "depends_on": ["1"]},
    ]});
    let b = t
        .send("POST", "/v1.0/$batch", &[], &batch.to_string())
        .await?;
    assert_eq!(b.status, 200, "{}", b.text());
    let header = b
        .header("x-graph-vcr-deviations")
        .unwrap_or_default()
        .to_string();
    for code in [
        "batch-item-missing-content-type",
        "batch-unknown-member",
        "empty-assignments (item 1)",
        "target-property-missing (item 2)",
    ] {
        assert!(header.contains(code), "{code} not in {header}");
    }
    // 21 items: Graph refuses the batch whole, so it is one call, flagged, and passed on.
    let many: Vec<Value> = (1..=21)
        .map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/me"}))
        .collect();
    let b = t
        .send(
            "POST",
            "/v1.0/$batch",
            &[],
            &json!({"requests": many}).to_string(),
        )
        .await?;
    assert!(
        b.header("x-graph-vcr-deviations")
            .unwrap_or_default()
            .contains("batch-too-many-requests")
    );
    let exit = proxy.signal("TERM")?;
    assert!(
        !exit.status.success(),
        "contract errors fail the run: {}",
        exit.stderr
    );
    let lines = journal(&log)?;
    let item2 = lines
        .iter()
        .find(|l| l["batch"]["item"] == "2")
        .ok_or("no journal line for item 2")?;
    assert_eq!(
        item2["path"],
        "/v1.0/deviceManagement/deviceConfigurations/dc-2/assign"
    );
    assert!(
        item2["deviations"]
            .to_string()
            .contains("target-property-missing"),
        "{item2}"
    );
    assert_eq!(stand_in.received().len(), 2, "each batch went out once");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_batch_item_is_passed_on_and_its_retry_recorded() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (proxy, stand_in, dir) = forwarding("record", tmp.path(), &[]).await?;
    let mut t = by_base_url(&proxy);
    let batch = json!({"requests": [
        {"id": "1", "method": "POST", "url": ASSIGN.trim_start_matches("/v1.0"),
         "headers": {"Content-Type": "application/json", THROTTLE_ONCE: "1"},
         "body": serde_json::from_str::<Value>(ASSIGN_BODY)?},
    ]})
    .to_string();
    let first = t.send("POST", "/v1.0/$batch", &[], &batch).await?;
    assert_eq!(
        first.json()["responses"][0]["status"],
        429,
        "{}",
        first.text()
    );
    assert_eq!(first.json()["responses"][0]["headers"]["retry-after"], "1");
    let retry = t.send("POST", "/v1.0/$batch", &[], &batch).await?;
    assert_eq!(
        retry.json()["responses"][0]["status"],
        200,
        "{}",
        retry.text()
    );
    proxy.signal("TERM")?;
    stand_in.stop().await;
    let stored = exported(&dir, "default")?;
    assert_eq!(stored.len(), 1, "only the retry's answer: {stored:#?}");
    assert_eq!(
        (
            stored[0]["position"].as_u64(),
            stored[0]["response"]["status"].as_u64()
        ),
        (Some(0), Some(200))
    );
    Ok(())
}
