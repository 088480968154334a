//! Contract checks through the real binary: flagged on the response, journaled, logged and
//! counted; rejected before the tenant with `--on-deviation reject`; audit mode; `check`.

mod common;

use common::*;
use std::path::Path;

/// Two targets for one group, included and excluded: an `error` deviation; plus a group id
/// that is not a GUID: a warning.
const CONFLICTING: &str = r##"{"enrollmentConfigurationAssignments":[
  {"target":{"@odata.type":"#microsoft.graph.groupAssignmentTarget","groupId":"3f1c2a9e-6b1d-4c39-9a55-0f0d1c2b3a4d"}},
  {"target":{"@odata.type":"#microsoft.graph.exclusionGroupAssignmentTarget","groupId":"3f1c2a9e-6b1d-4c39-9a55-0f0d1c2b3a4d"}},
  {"target":{"@odata.type":"#microsoft.graph.groupAssignmentTarget","groupId":"Sales"}}]}"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deviations_are_flagged_journaled_logged_and_counted() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (proxy, stand_in, dir) =
        forwarding("record", tmp.path(), &["--cassette", "audit-me"]).await?;
    let client = HttpClient::new();

    let flagged = client
        .assign(&proxy.base, SEED_PATH, CONFLICTING, &[])
        .await?;
    assert_eq!(flagged.status, 204, "flag mode passes the call on");
    assert_eq!(
        flagged.header("x-graph-vcr-deviations"),
        Some("group-included-and-excluded,group-id-not-guid")
    );
    let clean = client.assign(&proxy.base, SEED_PATH, SDK_BODY, &[]).await?;
    assert_eq!(clean.header("x-graph-vcr-deviations"), None);
    // A response that departs from the documentation is flagged too.
    let odd = client
        .assign(
            &proxy.base,
            "/v1.0/deviceManagement/deviceEnrollmentConfigurations/misbehave-1/assign",
            SDK_BODY,
            &[],
        )
        .await?;
    assert_eq!(odd.status, 200);
    assert_eq!(
        odd.header("x-graph-vcr-deviations"),
        Some("response-missing-request-id,unexpected-success-status")
    );
    assert_eq!(stand_in.received().len(), 3);

    let exit = proxy.signal("TERM")?;
    assert!(
        exit.stderr.contains("deviations: 1 errors, 3 warnings"),
        "{}",
        exit.stderr
    );
    assert!(exit.stderr.contains("contract deviation: group 3f1c2a9e-6b1d-4c39-9a55-0f0d1c2b3a4d is included at /enrollmentConfigurationAssignments/0/target and excluded at /enrollmentConfigurationAssignments/1/target"), "{}", exit.stderr);
    stand_in.stop().await;

    let lines = graph_vcr::journal::read(&dir.join("journal.jsonl"))?;
    assert_eq!(lines.len(), 3);
    let first = lines[0].as_ref().map_err(|e| e.clone())?;
    assert_eq!(first["cassette"], "audit-me");
    assert_eq!(first["mode"], "record");
    assert_eq!(first["outcome"], "recorded");
    assert_eq!(first["status"], 204);
    assert_eq!(
        first["action"],
        "v1.0 /deviceManagement/deviceEnrollmentConfigurations/{id}/assign"
    );
    assert_eq!(first["key"].as_str().map(str::len), Some(64));
    assert_eq!(
        first["deviations"][0]["code"],
        "group-included-and-excluded"
    );
    assert_eq!(first["deviations"][0]["severity"], "error");
    assert_eq!(
        first["deviations"][0]["at"],
        "/enrollmentConfigurationAssignments/1/target"
    );
    assert!(
        !dir_contains(&dir, JWT.as_bytes()),
        "the token reached the cassette directory"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_answers_400_and_the_tenant_receives_nothing() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (proxy, stand_in, dir) =
        forwarding("record", tmp.path(), &["--on-deviation", "reject"]).await?;
    let client = HttpClient::new();

    let r = client
        .assign(
            &proxy.base,
            SEED_PATH,
            CONFLICTING,
            &[("client-request-id", "cid-7")],
        )
        .await?;
    assert_eq!(r.status, 400, "{}", r.text());
    let e = r.json();
    assert_eq!(e["error"]["code"], "graphVcrContractViolation");
    let msg = e["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("never") || msg.contains("before it reached the tenant"),
        "{msg}"
    );
    assert!(
        msg.contains("group-included-and-excluded at /enrollmentConfigurationAssignments/1/target"),
        "{msg}"
    );
    assert_eq!(
        e["error"]["innerError"]["deviations"][0]["code"],
        "group-included-and-excluded"
    );
    assert_eq!(e["error"]["innerError"]["client-request-id"], "cid-7");
    // No Authorization at all is an error too.
    let r = client
        .send(
            "POST",
            &format!("{}{SEED_PATH}", proxy.base),
            &[("content-type", "application/json")],
            SDK_BODY,
        )
        .await?;
    assert_eq!(r.status, 400);
    assert_eq!(r.header("x-graph-vcr-deviations"), Some("auth-missing"));
    assert!(
        stand_in.received().is_empty(),
        "a rejected call reached the upstream"
    );

    // Warnings alone do not reject: Graph's own example (target type without '#') goes through.
    let r = client
        .assign(&proxy.base, SEED_PATH, SEED_BODY, &[])
        .await?;
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("x-graph-vcr-deviations"),
        Some("odata-type-without-hash")
    );
    assert_eq!(stand_in.received().len(), 1);
    let exit = proxy.signal("TERM")?;
    assert!(exit.stderr.contains("2 rejected"), "{}", exit.stderr);
    stand_in.stop().await;

    let lines = graph_vcr::journal::read(&dir.join("journal.jsonl"))?;
    let outcomes: Vec<String> = lines
        .iter()
        .flatten()
        .map(|l| l["outcome"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(outcomes, vec!["rejected", "rejected", "recorded"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_forwards_everything_records_nothing_and_journals_every_call() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let journal = tmp.path().join("out").join("audit.jsonl");
    let (proxy, stand_in, dir) =
        forwarding("audit", tmp.path(), &["--journal", s(&journal)?]).await?;
    let client = HttpClient::new();
    for _ in 0..2 {
        let r = client.assign(&proxy.base, SEED_PATH, SDK_BODY, &[]).await?;
        assert_eq!(
            (r.status, r.header("x-graph-vcr-outcome")),
            (204, Some("forwarded"))
        );
    }
    let me = client
        .send("GET", &format!("{}/v1.0/me", proxy.base), &[], "")
        .await?;
    assert_eq!(me.status, 200);
    assert_eq!(
        stand_in.received().len(),
        3,
        "every call forwarded, repeats too"
    );
    proxy.signal("TERM")?;
    stand_in.stop().await;

    assert!(
        !dir.join("db").exists(),
        "audit created a cassette database"
    );
    let lines = graph_vcr::journal::read(&journal)?;
    assert_eq!(lines.len(), 3);
    assert!(
        lines
            .iter()
            .flatten()
            .all(|l| l["mode"] == "audit" && l["outcome"] == "forwarded")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_checks_requests_too() -> TestResult {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("cassettes");
    let proxy = Proxy::start(&["replay", "--cassettes", s(&dir)?, "--cassette", "example"])?;
    let client = HttpClient::new();
    let r = client.assign(&proxy.base, "/v1.0/deviceManagement/deviceEnrollmentConfigurations/b0c1d2e3-0000-4000-8000-000000000001/assign", SEED_BODY, &[]).await?;
    assert_eq!(
        (r.status, r.header("x-graph-vcr-deviations")),
        (204, Some("odata-type-without-hash"))
    );
    let empty = client
        .assign(
            &proxy.base,
            SEED_PATH,
            r#"{"enrollmentConfigurationAssignments":[]}"#,
            &[],
        )
        .await?;
    assert_eq!(empty.status, 501);
    assert_eq!(
        empty.header("x-graph-vcr-deviations"),
        Some("empty-assignments")
    );
    Ok(())
}

#[test]
fn the_check_command_exits_by_severity() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let seed = tmp.path().join("seed.json");
    std::fs::write(&seed, SEED_BODY)?;
    let e = run_to_end(&["check", s(&seed)?])?;
    assert_eq!(e.status.code(), Some(0), "{}", e.stderr);
    assert!(
        e.stderr.contains("odata-type-without-hash")
            && e.stderr.contains("0 error(s), 1 warning(s)"),
        "{}",
        e.stderr
    );

    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, CONFLICTING)?;
    let e = run_to_end(&["check", "--format", "json", s(&bad)?])?;
    assert_eq!(e.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_str(&e.stdout)?;
    assert_eq!(doc["errors"], 1);
    assert_eq!(doc["deviations"][0]["code"], "group-included-and-excluded");

    // Another action, by template, and the body on stdin.
    let mut child = std::process::Command::new(binary())
        .args([
            "check",
            "--action",
            "/v1.0/deviceAppManagement/mobileApps/{mobileAppId}/assign",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin.write_all(br##"{"mobileAppAssignments":[{"intent":"required","target":{"@odata.type":"#microsoft.graph.allLicensedUsersAssignmentTarget"}}]}"##)?;
    }
    let out = child.wait_with_output()?;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("no deviations"));

    let e = run_to_end(&[
        "check",
        "--action",
        "/v1.0/deviceManagement/notAThing/{id}/assign",
        s(&seed)?,
    ])?;
    assert_eq!(e.status.code(), Some(2));
    assert!(e.stderr.contains("known actions"), "{}", e.stderr);
    let e = run_to_end(&["check", s(&tmp.path().join("missing.json"))?])?;
    assert_eq!(e.status.code(), Some(2));
    let e = run_to_end(&["check", "--format", "yaml", s(&seed)?])?;
    assert_eq!(e.status.code(), Some(2));
    Ok(())
}

/// A 204 whose body the HTTP layer drops unread is still flagged: its headers declare it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_204_with_a_body_is_flagged() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let ca = TestCa::new()?;
    let ca_pem = ca.write_ca(tmp.path())?;
    let upstream = FaultyUpstream::start(&ca, Fault::BodyOn204).await?;
    let proxy = Proxy::start(&[
        "audit",
        "--upstream",
        &upstream.url,
        "--upstream-ca",
        s(&ca_pem)?,
        "--journal",
        s(&tmp.path().join("j.jsonl"))?,
    ])?;
    let r = HttpClient::new()
        .assign(&proxy.base, SEED_PATH, SDK_BODY, &[])
        .await?;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(r.header("x-graph-vcr-deviations"), Some("body-on-204"));
    proxy.signal("TERM")?;
    Ok(())
}
