//! `--throttle intune`: Intune's documented limits rehearsed offline, through the real binary.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;

const ASSIGN: &str = "/v1.0/deviceManagement/deviceConfigurations/c-1/assign";
const BODY: &str = r##"{"assignments":[{"target":{"@odata.type":"#microsoft.graph.allDevicesAssignmentTarget"}}]}"##;

fn token(app: &str) -> String {
    let claims = json!({"tid": "tenant-1", "appid": app, "roles": ["DeviceManagementConfiguration.ReadWrite.All"]});
    format!("Bearer {}", jwt_with(&claims))
}

async fn assign(client: &HttpClient, base: &str, auth: &str) -> Result<Resp, Error> {
    let headers = [
        ("authorization", auth),
        ("content-type", "application/json"),
    ];
    client
        .send("POST", &format!("{base}{ASSIGN}"), &headers, BODY)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_writes_gets_a_hundred_answers_and_429s_with_retry_after() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (proxy, stand_in, _dir) = forwarding(
        "audit",
        tmp.path(),
        &["--throttle", "intune", "--time-scale", "0.25"],
    )
    .await?;
    let client = std::sync::Arc::new(HttpClient::new());
    let auth = token("app-1");
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..150 {
        let (client, base, auth) = (
            std::sync::Arc::clone(&client),
            proxy.base.clone(),
            auth.clone(),
        );
        burst.spawn(async move { assign(&client, &base, &auth).await });
    }
    let mut answered = 0;
    let mut throttled = Vec::new();
    while let Some(r) = burst.join_next().await {
        let r = r??;
        match r.status {
            200 => answered += 1,
            429 => throttled.push(r),
            other => return Err(format!("unexpected {other}: {}", r.text()).into()),
        }
    }
    assert_eq!((answered, throttled.len()), (100, 50));
    assert_eq!(
        stand_in.received().len(),
        100,
        "a throttled request is never forwarded"
    );
    let first = &throttled[0];
    assert_eq!(
        first.json()["error"]["code"],
        "TooManyRequests",
        "{}",
        first.text()
    );
    let wait: f64 = first
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .ok_or("no Retry-After")?;
    assert!(
        wait > 0.0 && wait <= 5.0,
        "Retry-After {wait} within the scaled 5 s window"
    );
    // Another app of the tenant has its own 100 (the tenant's 200 is not reached).
    assert_eq!(
        assign(&client, &proxy.base, &token("app-2")).await?.status,
        200
    );
    // Once the window has slid, the first app is answered again.
    tokio::time::sleep(Duration::from_secs_f64(wait + 0.1)).await;
    assert_eq!(assign(&client, &proxy.base, &auth).await?.status, 200);
    let exit = proxy.signal("TERM")?;
    assert!(exit.stderr.contains("50 throttled"), "{}", exit.stderr);
    stand_in.stop().await;
    Ok(())
}

#[test]
fn record_refuses_to_throttle_and_the_factor_is_checked() -> TestResult {
    let e = run_to_end(&[
        "record",
        "--throttle",
        "intune",
        "--upstream",
        "http://127.0.0.1:9",
    ])?;
    assert_eq!(e.status.code(), Some(2), "{}", e.stderr);
    assert!(
        e.stderr.contains("--throttle") && e.stderr.contains("record"),
        "{}",
        e.stderr
    );
    let e = run_to_end(&["replay", "--throttle", "intune", "--time-scale", "0"])?;
    assert_eq!(e.status.code(), Some(2));
    assert!(e.stderr.contains("--time-scale"), "{}", e.stderr);
    Ok(())
}

/// Throttles one call: 100 identical writes fill the app's window, the 101st gets a 429.
async fn throttle_one(client: &HttpClient, base: &str, auth: &str) -> Result<f64, Error> {
    for _ in 0..100 {
        assert_eq!(assign(client, base, auth).await?.status, 200);
    }
    let r = assign(client, base, auth).await?;
    assert_eq!(r.status, 429, "{}", r.text());
    r.header("retry-after")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| "no Retry-After".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verdict_says_how_the_client_coped() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let client = HttpClient::new();
    let auth = token("app-1");
    for client_kind in ["waits", "hammers", "gives-up"] {
        let scratch = tmp.path().join(client_kind);
        std::fs::create_dir_all(&scratch)?;
        let (proxy, stand_in, _dir) = forwarding(
            "audit",
            &scratch,
            &["--throttle", "intune", "--time-scale", "0.1"],
        )
        .await?;
        let wait = throttle_one(&client, &proxy.base, &auth).await?;
        match client_kind {
            "waits" => {
                tokio::time::sleep(Duration::from_secs_f64(wait + 0.05)).await;
                assert_eq!(assign(&client, &proxy.base, &auth).await?.status, 200);
            }
            "hammers" => {
                let again = assign(&client, &proxy.base, &auth).await?;
                assert_eq!(again.status, 429);
                assert_eq!(
                    again.header("x-graph-vcr-deviations"),
                    Some("retry-too-early")
                );
                tokio::time::sleep(Duration::from_secs_f64(wait + 0.05)).await;
                assert_eq!(assign(&client, &proxy.base, &auth).await?.status, 200);
            }
            _ => {}
        }
        let exit = proxy.signal("TERM")?;
        stand_in.stop().await;
        match client_kind {
            "waits" => assert!(
                exit.status.success() && exit.stderr.contains("result: passed"),
                "{}",
                exit.stderr
            ),
            "hammers" => assert!(
                !exit.status.success()
                    && exit.stderr.contains("1 contract error(s)")
                    && !exit.stderr.contains("abandoned"),
                "{}",
                exit.stderr
            ),
            _ => assert!(
                !exit.status.success() && exit.stderr.contains("1 contract error(s)"),
                "{}",
                exit.stderr
            ),
        }
    }
    Ok(())
}

/// The statuses `--faults` gives 40 requests (8 calls, 5 times each) under `seed`.
async fn faulted(tmp: &std::path::Path, seed: &str) -> Result<Vec<u16>, Error> {
    let scratch = tmp.join(format!("seed-{seed}-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let args = [
        "--faults",
        "429:0.25,503:0.15,504:0.1,latency-5ms:0.1",
        "--seed",
        seed,
    ];
    let (proxy, stand_in, _dir) = forwarding("audit", &scratch, &args).await?;
    let client = HttpClient::new();
    let auth = token("app-1");
    let mut statuses = Vec::new();
    for round in 0..5 {
        for call in 0..8 {
            let path = format!("/v1.0/deviceManagement/deviceConfigurations/c-{call}/assign");
            let headers = [
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ];
            let r = client
                .send("POST", &format!("{}{path}", proxy.base), &headers, BODY)
                .await?;
            if matches!(r.status, 429 | 503 | 504) {
                let message = r.json()["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                assert!(
                    message.contains("--faults"),
                    "round {round}, call {call}: {message}"
                );
            }
            statuses.push(r.status);
        }
    }
    proxy.signal("TERM")?;
    stand_in.stop().await;
    Ok(statuses)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_gives_the_same_faults_and_another_seed_others() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let first = faulted(tmp.path(), "7").await?;
    let again = faulted(tmp.path(), "7").await?;
    let other = faulted(tmp.path(), "8").await?;
    assert_eq!(first, again, "seed 7 twice");
    assert_ne!(first, other, "seed 8");
    let injected = first
        .iter()
        .filter(|s| matches!(s, 429 | 503 | 504))
        .count();
    assert!(
        (8..=32).contains(&injected),
        "{injected} of 40 at a 50% rate: {first:?}"
    );
    assert!(
        first.iter().all(|s| matches!(s, 200 | 429 | 503 | 504)),
        "{first:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_items_are_throttled_one_by_one_inside_a_200() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (proxy, stand_in, _dir) = forwarding(
        "audit",
        tmp.path(),
        &["--throttle", "intune", "--time-scale", "0.5"],
    )
    .await?;
    let client = HttpClient::new();
    let auth = token("app-1");
    throttle_one(&client, &proxy.base, &auth).await?;
    let batch = json!({"requests": [
        {"id": "w", "method": "POST", "url": ASSIGN.trim_start_matches("/v1.0"),
         "headers": {"Content-Type": "application/json"}, "body": serde_json::from_str::<Value>(BODY)?},
        {"id": "r", "method": "GET", "url": "/deviceManagement/deviceConfigurations/c-1"},
    ]});
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let b = client
        .send(
            "POST",
            &format!("{}/v1.0/$batch", proxy.base),
            &headers,
            &batch.to_string(),
        )
        .await?;
    assert_eq!(b.status, 200, "{}", b.text());
    let responses = b.json()["responses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        responses[0]["status"],
        429,
        "the write is over the limit: {}",
        b.text()
    );
    assert!(
        responses[0]["headers"]["retry-after"].is_string(),
        "{}",
        b.text()
    );
    assert_eq!(responses[1]["status"], 200, "the read is not: {}", b.text());
    proxy.signal("TERM")?;
    stand_in.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_fault_closes_the_connection_without_an_answer() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let log = tmp.path().join("j.jsonl");
    let (proxy, stand_in, _dir) = forwarding(
        "audit",
        tmp.path(),
        &["--faults", "reset:1", "--journal", s(&log)?],
    )
    .await?;
    let auth = token("app-1");
    let sent = assign(&HttpClient::new(), &proxy.base, &auth).await;
    assert!(
        sent.is_err(),
        "the client got an answer: {:?}",
        sent.map(|r| r.status)
    );
    // The proxy is still serving, and the reset is journaled as a fault.
    let again = assign(&HttpClient::new(), &proxy.base, &auth).await;
    assert!(again.is_err());
    proxy.signal("TERM")?;
    assert_eq!(
        stand_in.received().len(),
        0,
        "a reset request is never forwarded"
    );
    stand_in.stop().await;
    let journal = std::fs::read_to_string(&log)?;
    assert_eq!(
        journal.matches(r#""outcome":"fault""#).count(),
        2,
        "{journal}"
    );
    Ok(())
}
