//! Record and replay through the real binary, against a stand-in Graph server over real TLS.

mod common;

use common::*;
use std::path::Path;

/// Starts `graph-vcr record` against `stand_in`, trusting the test CA.
fn record(dir: &Path, ca_pem: &Path, stand_in: &StandIn, extra: &[&str]) -> Result<Proxy, Error> {
    let mut args = vec![
        "record",
        "--cassettes",
        dir.to_str().ok_or("non-UTF-8 temp path")?,
        "--upstream",
        &stand_in.url,
        "--upstream-ca",
        ca_pem.to_str().ok_or("non-UTF-8 temp path")?,
    ];
    args.extend_from_slice(extra);
    Proxy::start(&args)
}

fn replay(dir: &Path, extra: &[&str]) -> Result<Proxy, Error> {
    let mut args = vec![
        "replay",
        "--cassettes",
        dir.to_str().ok_or("non-UTF-8 temp path")?,
    ];
    args.extend_from_slice(extra);
    Proxy::start(&args)
}

struct Setup {
    tmp: tempfile::TempDir,
    ca: TestCa,
    ca_pem: std::path::PathBuf,
    client: HttpClient,
}

impl Setup {
    fn new() -> Result<Self, Error> {
        let tmp = tempfile::tempdir()?;
        let ca = TestCa::new()?;
        let ca_pem = ca.write_ca(tmp.path())?;
        Ok(Self {
            tmp,
            ca,
            ca_pem,
            client: HttpClient::new(),
        })
    }

    fn dir(&self) -> std::path::PathBuf {
        self.tmp.path().join("cassettes")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_then_replay_with_the_upstream_stopped() -> TestResult {
    let s = Setup::new()?;
    let stand_in = StandIn::start(&s.ca).await?;
    let proxy = record(
        &s.dir(),
        &s.ca_pem,
        &stand_in,
        &["--cassette", "onboarding"],
    )?;

    let cid = ("client-request-id", "11111111-1111-4111-8111-111111111111");
    let recorded_seed = s
        .client
        .assign(&proxy.base, SEED_PATH, SEED_BODY, &[cid])
        .await?;
    assert_eq!(recorded_seed.status, 204, "{}", recorded_seed.text());
    assert_eq!(
        recorded_seed.header("x-graph-vcr-outcome"),
        Some("recorded")
    );
    let config_path = "/v1.0/deviceManagement/deviceConfigurations/dc-1/assign";
    let config_body = r##"{"assignments":[{"target":{"@odata.type":"#microsoft.graph.groupAssignmentTarget","groupId":"3f1c2a9e-6b1d-4c39-9a55-0f0d1c2b3a4d"}}]}"##;
    let recorded_config = s
        .client
        .assign(&proxy.base, config_path, config_body, &[])
        .await?;
    assert_eq!(recorded_config.status, 200);

    // The upstream saw the real call: credentials passed through, control headers not.
    let seen = stand_in.received();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path_and_query, SEED_PATH);
    assert_eq!(
        seen[0]
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some(format!("Bearer {JWT}").as_str())
    );
    assert_eq!(seen[0].body, SEED_BODY.as_bytes());

    let exit = proxy.signal("TERM")?;
    assert!(exit.status.success(), "{}", exit.stderr);
    assert!(exit.stderr.contains("2 recorded"), "{}", exit.stderr);
    // A run that recorded leaves its directory compacted; the replay below reads it so.
    assert!(
        exit.stderr.contains("cassette directory compacted"),
        "{}",
        exit.stderr
    );
    stand_in.stop().await;

    let proxy = replay(&s.dir(), &["--cassette", "onboarding"])?;
    let cid2 = ("client-request-id", "22222222-2222-4222-8222-222222222222");
    let replayed_seed = s
        .client
        .assign(&proxy.base, SEED_PATH, SEED_BODY, &[cid2])
        .await?;
    assert_eq!(replayed_seed.status, 204);
    assert_eq!(
        replayed_seed.header("x-graph-vcr-outcome"),
        Some("replayed")
    );
    assert_eq!(replayed_seed.body, recorded_seed.body);
    for name in [
        "request-id",
        "x-ms-ags-diagnostic",
        "strict-transport-security",
    ] {
        assert_eq!(
            replayed_seed.header(name),
            recorded_seed.header(name),
            "{name}"
        );
    }
    // client-request-id echoes this request, as the service would.
    assert_eq!(replayed_seed.header("client-request-id"), Some(cid2.1));

    let replayed_config = s
        .client
        .assign(&proxy.base, config_path, config_body, &[])
        .await?;
    assert_eq!(replayed_config.status, 200);
    assert_eq!(replayed_config.body, recorded_config.body);
    assert_eq!(
        replayed_config.header("content-type"),
        recorded_config.header("content-type")
    );
    assert_eq!(
        replayed_config.json()["value"][0]["target"]["groupId"],
        "3f1c2a9e-6b1d-4c39-9a55-0f0d1c2b3a4d"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equivalent_requests_hit_and_a_real_difference_misses_with_a_diff() -> TestResult {
    let s = Setup::new()?;
    let stand_in = StandIn::start(&s.ca).await?;
    let proxy = record(&s.dir(), &s.ca_pem, &stand_in, &[])?;
    let two = r##"{"enrollmentConfigurationAssignments":[
        {"target":{"@odata.type":"#microsoft.graph.groupAssignmentTarget","groupId":"aaaaaaaa-0000-4000-8000-000000000001"}},
        {"target":{"@odata.type":"#microsoft.graph.exclusionGroupAssignmentTarget","groupId":"bbbbbbbb-0000-4000-8000-000000000002"}}]}"##;
    for body in [SEED_BODY, two] {
        assert_eq!(
            s.client
                .assign(&proxy.base, SEED_PATH, body, &[])
                .await?
                .status,
            204
        );
    }
    proxy.signal("TERM")?;
    stand_in.stop().await;

    let proxy = replay(&s.dir(), &[])?;
    let reordered_keys = r##"{"enrollmentConfigurationAssignments":[{"target":{"collectionId":"Collection Id value","@odata.type":"microsoft.graph.configurationManagerCollectionAssignmentTarget"},"id":"705b021c-021c-705b-1c02-5b701c025b70","@odata.type":"microsoft.graph.enrollmentConfigurationAssignment"}]}"##;
    let two_reversed = r##"{"enrollmentConfigurationAssignments":[
        {"target":{"@odata.type":"microsoft.graph.exclusionGroupAssignmentTarget","groupId":"bbbbbbbb-0000-4000-8000-000000000002"}},
        {"target":{"@odata.type":"microsoft.graph.groupAssignmentTarget","groupId":"aaaaaaaa-0000-4000-8000-000000000001"}}]}"##;
    let shouting_path = SEED_PATH
        .replace("deviceManagement", "DeviceManagement")
        .replace(
            "deviceEnrollmentConfigurations",
            "DEVICEENROLLMENTCONFIGURATIONS",
        )
        .replace("b0c1d2e3", "B0C1D2E3");
    for (what, path, body) in [
        ("SDK spelling", SEED_PATH, SDK_BODY),
        ("key order and no #", SEED_PATH, reordered_keys),
        ("assignment order", SEED_PATH, two_reversed),
        ("path case and GUID case", shouting_path.as_str(), SEED_BODY),
    ] {
        let r = s.client.assign(&proxy.base, path, body, &[]).await?;
        assert_eq!(
            (r.status, r.header("x-graph-vcr-outcome")),
            (204, Some("replayed")),
            "{what}: {}",
            r.text()
        );
    }

    let changed = SEED_BODY.replace("Collection Id value", "Another collection");
    let miss = s
        .client
        .assign(
            &proxy.base,
            SEED_PATH,
            &changed,
            &[("client-request-id", "cid-miss")],
        )
        .await?;
    assert_eq!(miss.status, 501, "{}", miss.text());
    let e = miss.json();
    assert_eq!(e["error"]["code"], "graphVcrNoRecording");
    let message = e["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("cassette \"default\""), "{message}");
    assert!(
        message.contains(r#"/enrollmentConfigurationAssignments/0/target/collectionId: recorded "Collection Id value", request "Another collection""#),
        "{message}"
    );
    assert_eq!(e["error"]["innerError"]["client-request-id"], "cid-miss");
    assert!(e["error"]["innerError"]["request-id"].is_string());

    // A call of an action the cassette never saw says so.
    let other = s
        .client
        .assign(
            &proxy.base,
            "/v1.0/deviceAppManagement/mobileApps/app-1/assign",
            r#"{"mobileAppAssignments":[]}"#,
            &[],
        )
        .await?;
    assert_eq!(other.status, 501);
    assert!(
        other.text().contains("no recording of this action"),
        "{}",
        other.text()
    );

    let exit = proxy.signal("TERM")?;
    assert!(exit.stderr.contains(", 2 miss;"), "{}", exit.stderr);
    assert!(exit.stderr.contains("replay miss"), "{}", exit.stderr);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nth_identical_request_gets_the_nth_response() -> TestResult {
    let s = Setup::new()?;
    let stand_in = StandIn::start(&s.ca).await?;
    let proxy = record(&s.dir(), &s.ca_pem, &stand_in, &[])?;
    let first = s
        .client
        .assign(&proxy.base, SEED_PATH, SEED_BODY, &[])
        .await?;
    let second = s
        .client
        .assign(&proxy.base, SEED_PATH, SEED_BODY, &[])
        .await?;
    let (id1, id2) = (
        first.header("request-id").map(str::to_owned),
        second.header("request-id").map(str::to_owned),
    );
    assert!(id1.is_some() && id1 != id2);
    proxy.signal("TERM")?;
    stand_in.stop().await;

    let proxy = replay(&s.dir(), &[])?;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            s.client
                .assign(&proxy.base, SEED_PATH, SEED_BODY, &[])
                .await?
                .header("request-id")
                .map(str::to_owned),
        );
    }
    assert_eq!(
        ids,
        vec![id1.clone(), id2.clone(), id2.clone()],
        "past the last, the last repeats"
    );
    drop(proxy);

    let proxy = replay(&s.dir(), &["--on-exhausted", "miss"])?;
    assert_eq!(
        s.client
            .assign(&proxy.base, SEED_PATH, SEED_BODY, &[])
            .await?
            .status,
        204
    );
    assert_eq!(
        s.client
            .assign(&proxy.base, SEED_PATH, SEED_BODY, &[])
            .await?
            .status,
        204
    );
    let third = s
        .client
        .assign(&proxy.base, SEED_PATH, SEED_BODY, &[])
        .await?;
    assert_eq!(third.status, 501);
    assert!(third.text().contains("all were played"), "{}", third.text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_replays_what_it_has_and_records_the_rest() -> TestResult {
    let s = Setup::new()?;
    let stand_in = StandIn::start(&s.ca).await?;
    let proxy = record(&s.dir(), &s.ca_pem, &stand_in, &[])?;
    s.client
        .assign(&proxy.base, SEED_PATH, SEED_BODY, &[])
        .await?;
    proxy.signal("TERM")?;
    assert_eq!(stand_in.received().len(), 1);

    let dir = s.dir();
    let ca = s.ca_pem.to_str().ok_or("path")?;
    let args = [
        "auto",
        "--cassettes",
        dir.to_str().ok_or("path")?,
        "--upstream",
        &stand_in.url,
        "--upstream-ca",
        ca,
    ];
    let proxy = Proxy::start(&args)?;
    let known = s
        .client
        .assign(&proxy.base, SEED_PATH, SDK_BODY, &[])
        .await?;
    assert_eq!(known.header("x-graph-vcr-outcome"), Some("replayed"));
    let new_body = SEED_BODY.replace("Collection Id value", "New collection");
    let new = s
        .client
        .assign(&proxy.base, SEED_PATH, &new_body, &[])
        .await?;
    assert_eq!(
        (new.status, new.header("x-graph-vcr-outcome")),
        (204, Some("recorded"))
    );
    assert_eq!(
        stand_in.received().len(),
        2,
        "only the new call reached the upstream"
    );
    proxy.signal("TERM")?;
    stand_in.stop().await;

    let proxy = replay(&s.dir(), &["--on-exhausted", "miss"])?;
    assert_eq!(
        s.client
            .assign(&proxy.base, SEED_PATH, &new_body, &[])
            .await?
            .status,
        204
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_selects_the_cassette_per_request_and_is_never_forwarded() -> TestResult {
    let s = Setup::new()?;
    let stand_in = StandIn::start(&s.ca).await?;
    let proxy = record(&s.dir(), &s.ca_pem, &stand_in, &[])?;
    let alpha = SEED_BODY.replace("Collection Id value", "alpha");
    let beta = SEED_BODY.replace("Collection Id value", "beta");
    s.client
        .assign(
            &proxy.base,
            SEED_PATH,
            &alpha,
            &[("x-graph-vcr-cassette", "suite-a")],
        )
        .await?;
    s.client
        .assign(
            &proxy.base,
            SEED_PATH,
            &beta,
            &[("x-graph-vcr-cassette", "suite-b")],
        )
        .await?;
    let bad = s
        .client
        .assign(
            &proxy.base,
            SEED_PATH,
            &beta,
            &[("x-graph-vcr-cassette", "../escape")],
        )
        .await?;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"]["code"], "graphVcrBadCassette");
    let seen = stand_in.received();
    assert_eq!(seen.len(), 2, "the bad request was not forwarded");
    assert!(
        seen.iter()
            .all(|r| r.headers.get("x-graph-vcr-cassette").is_none())
    );
    proxy.signal("TERM")?;
    stand_in.stop().await;

    let proxy = replay(&s.dir(), &[])?;
    let a = |c| [("x-graph-vcr-cassette", c)];
    assert_eq!(
        s.client
            .assign(&proxy.base, SEED_PATH, &alpha, &a("suite-a"))
            .await?
            .status,
        204
    );
    assert_eq!(
        s.client
            .assign(&proxy.base, SEED_PATH, &beta, &a("suite-b"))
            .await?
            .status,
        204
    );
    assert_eq!(
        s.client
            .assign(&proxy.base, SEED_PATH, &alpha, &a("suite-b"))
            .await?
            .status,
        501
    );
    // The default cassette holds neither.
    assert_eq!(
        s.client
            .assign(&proxy.base, SEED_PATH, &alpha, &[])
            .await?
            .status,
        501
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_graph_call_is_recorded_unless_assign_only() -> TestResult {
    let s = Setup::new()?;
    let stand_in = StandIn::start(&s.ca).await?;
    let proxy = record(&s.dir(), &s.ca_pem, &stand_in, &["--assign-only"])?;
    let me = s
        .client
        .send(
            "GET",
            &format!("{}/v1.0/me?$select=id", proxy.base),
            &[],
            "",
        )
        .await?;
    assert_eq!(
        (me.status, me.header("x-graph-vcr-outcome")),
        (200, Some("forwarded"))
    );
    // A body that is not JSON still goes to the service, which decides.
    let not_json = s
        .client
        .assign(
            &proxy.base,
            "/v1.0/deviceManagement/deviceConfigurations/x/not-json/assign",
            "not json {",
            &[],
        )
        .await?;
    assert_eq!(
        (not_json.status, not_json.header("x-graph-vcr-outcome")),
        (200, Some("recorded"))
    );
    assert_eq!(
        stand_in.received().last().map(|r| r.body.clone()),
        Some(bytes::Bytes::from_static(b"not json {"))
    );
    let exit = proxy.signal("TERM")?;
    assert!(
        exit.stderr.contains("not stored: 1 forwarded request(s)")
            && exit
                .stderr
                .contains("GET /v1.0/me: not recorded: not an assign action (--assign-only)"),
        "the summary says what was not stored: {}",
        exit.stderr
    );

    let proxy = replay(&s.dir(), &[])?;
    let me_again = s
        .client
        .send(
            "GET",
            &format!("{}/v1.0/me?$select=id", proxy.base),
            &[],
            "",
        )
        .await?;
    assert_eq!(me_again.status, 501, "not recorded with --assign-only");
    let nj = s
        .client
        .assign(
            &proxy.base,
            "/v1.0/deviceManagement/deviceConfigurations/x/not-json/assign",
            "not json {",
            &[],
        )
        .await?;
    assert_eq!(
        (nj.status, nj.text().as_str()),
        (200, "plain text answer"),
        "non-JSON keyed by its bytes"
    );
    let nj2 = s
        .client
        .assign(
            &proxy.base,
            "/v1.0/deviceManagement/deviceConfigurations/x/not-json/assign",
            "not json  {",
            &[],
        )
        .await?;
    assert_eq!(nj2.status, 501);
    drop(proxy);

    let proxy = record(&s.dir(), &s.ca_pem, &stand_in, &[])?;
    let me = s
        .client
        .send(
            "GET",
            &format!("{}/v1.0/me?$select=id", proxy.base),
            &[],
            "",
        )
        .await?;
    assert_eq!(me.header("x-graph-vcr-outcome"), Some("recorded"));
    proxy.signal("TERM")?;
    stand_in.stop().await;
    let proxy = replay(&s.dir(), &[])?;
    let me_again = s
        .client
        .send(
            "GET",
            &format!("{}/v1.0/me?$select=id", proxy.base),
            &[],
            "",
        )
        .await?;
    assert_eq!((me_again.status, me_again.body), (200, me.body));
    Ok(())
}

/// Replay remembers what it found for a call it answered (`memo`), but headers are not part of
/// that: the same body with other headers must be checked, flagged and rejected as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_call_is_checked_again_for_its_headers() -> TestResult {
    let s = Setup::new()?;
    let stand_in = StandIn::start(&s.ca).await?;
    let proxy = record(&s.dir(), &s.ca_pem, &stand_in, &[])?;
    assert_eq!(
        s.client
            .assign(&proxy.base, SEED_PATH, SDK_BODY, &[])
            .await?
            .status,
        204
    );
    proxy.signal("TERM")?;
    stand_in.stop().await;

    let url = SEED_PATH.to_string();
    let auth = format!("Bearer {JWT}");
    let good = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    for reject in [false, true] {
        let proxy = if reject {
            replay(&s.dir(), &["--on-deviation", "reject"])?
        } else {
            replay(&s.dir(), &[])?
        };
        let send = |headers: Vec<(&'static str, String)>| {
            let base = proxy.base.clone();
            let url = url.clone();
            async move {
                let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                HttpClient::new()
                    .send("POST", &format!("{base}{url}"), &h, SDK_BODY)
                    .await
            }
        };
        let owned = |h: &[(&'static str, &str)]| {
            h.iter()
                .map(|(k, v)| (*k, v.to_string()))
                .collect::<Vec<_>>()
        };
        // Twice with good headers: the second is answered from the memo.
        for _ in 0..2 {
            let r = send(owned(&good)).await?;
            assert_eq!(r.status, 204, "{}", r.text());
            assert_eq!(r.header("x-graph-vcr-deviations"), None);
        }
        // The same body, no Authorization, then a text Content-Type.
        let no_auth = send(owned(&good[1..])).await?;
        let text = send(owned(&[good[0], ("content-type", "text/plain")])).await?;
        if reject {
            assert_eq!(no_auth.status, 400, "{}", no_auth.text());
            assert!(
                no_auth.text().contains("auth-missing"),
                "{}",
                no_auth.text()
            );
            assert_eq!(text.status, 400, "{}", text.text());
            assert!(
                text.text().contains("content-type-not-json"),
                "{}",
                text.text()
            );
        } else {
            assert_eq!(no_auth.status, 204);
            assert_eq!(
                no_auth.header("x-graph-vcr-deviations"),
                Some("auth-missing")
            );
            assert_eq!(text.status, 204);
            assert_eq!(
                text.header("x-graph-vcr-deviations"),
                Some("content-type-not-json")
            );
        }
        // And clean again.
        let r = send(owned(&good)).await?;
        assert_eq!(r.status, 204);
        assert_eq!(r.header("x-graph-vcr-deviations"), None);
        let exit = proxy.signal("TERM")?;
        if reject {
            assert!(exit.stderr.contains("2 rejected"), "{}", exit.stderr);
        }
    }
    Ok(())
}
