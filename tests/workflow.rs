//! The CI workflow through the real binary: a recorded suite replayed and stopped with SIGTERM
//! (summary, exit status, reports), exports and imports, verify, cassette tools, max age, and
//! git's textconv.

mod common;

use common::*;
use std::path::{Path, PathBuf};

const CONFIG_PATH: &str = "/v1.0/deviceManagement/deviceConfigurations/dc-1/assign";
const CONFIG_BODY: &str = r##"{"assignments":[{"target":{"@odata.type":"#microsoft.graph.allDevicesAssignmentTarget"}}]}"##;
const GZIP_PATH: &str = "/v1.0/deviceManagement/deviceCompliancePolicies/gzip-1/assign";

/// Records three calls (seed, deviceConfigurations, a gzip-answered compliance assign) into
/// cassette `suite` under `dir`, then stops the recorder and the stand-in.
async fn record_suite(tmp: &Path, dir: &Path) -> Result<(), Error> {
    let ca = TestCa::new()?;
    let ca_pem = ca.write_ca(tmp)?;
    let stand_in = StandIn::start(&ca).await?;
    let proxy = Proxy::start(&[
        "record",
        "--cassettes",
        s(dir)?,
        "--cassette",
        "suite",
        "--upstream",
        &stand_in.url,
        "--upstream-ca",
        s(&ca_pem)?,
    ])?;
    let client = HttpClient::new();
    for (path, body, extra) in [
        (SEED_PATH, SDK_BODY, vec![]),
        (CONFIG_PATH, CONFIG_BODY, vec![]),
        (GZIP_PATH, CONFIG_BODY, vec![("accept-encoding", "gzip")]),
    ] {
        let r = client.assign(&proxy.base, path, body, &extra).await?;
        assert!(r.status < 300, "{path}: {}", r.text());
    }
    let exit = proxy.signal("TERM")?;
    assert!(exit.status.success(), "{}", exit.stderr);
    stand_in.stop().await;
    Ok(())
}

struct Reports {
    junit: PathBuf,
    markdown: PathBuf,
    json: PathBuf,
}

impl Reports {
    fn new(dir: &Path) -> Self {
        Self {
            junit: dir.join("r/junit.xml"),
            markdown: dir.join("r/summary.md"),
            json: dir.join("r/report.json"),
        }
    }

    fn args(&self) -> Result<Vec<String>, Error> {
        Ok(vec![
            "--report-junit".into(),
            s(&self.junit)?.into(),
            "--report-markdown".into(),
            s(&self.markdown)?.into(),
            "--report-json".into(),
            s(&self.json)?.into(),
        ])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_suite_stopped_with_sigterm_reports_and_fails_on_a_miss() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("cassettes");
    record_suite(tmp.path(), &dir).await?;

    let reports = Reports::new(tmp.path());
    let journal = tmp.path().join("r/journal.jsonl");
    let mut args: Vec<String> = [
        "replay",
        "--cassettes",
        s(&dir)?,
        "--cassette",
        "suite",
        "--journal",
        s(&journal)?,
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend(reports.args()?);
    let proxy = Proxy::start(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    let client = HttpClient::new();
    // Played: the seed call, twice. Missed: a changed body. Contract error: include + exclude.
    for _ in 0..2 {
        assert_eq!(
            client
                .assign(&proxy.base, SEED_PATH, SEED_BODY, &[])
                .await?
                .status,
            204
        );
    }
    let changed = SDK_BODY.replace("Collection Id value", "Changed <&> value");
    assert_eq!(
        client
            .assign(&proxy.base, SEED_PATH, &changed, &[])
            .await?
            .status,
        501
    );
    let conflicting = r##"{"assignments":[{"target":{"@odata.type":"#microsoft.graph.groupAssignmentTarget","groupId":"3f1c2a9e-6b1d-4c39-9a55-0f0d1c2b3a4d"}},{"target":{"@odata.type":"#microsoft.graph.exclusionGroupAssignmentTarget","groupId":"3f1c2a9e-6b1d-4c39-9a55-0f0d1c2b3a4d"}}]}"##;
    assert_eq!(
        client
            .assign(&proxy.base, CONFIG_PATH, conflicting, &[])
            .await?
            .status,
        501
    );
    let exit = proxy.signal("TERM")?;

    assert_eq!(exit.status.code(), Some(1), "{}", exit.stderr);
    assert!(
        exit.stderr.contains(": 2 replayed, 0 recorded, 2 miss;"),
        "{}",
        exit.stderr
    );
    assert!(
        exit.stderr.contains("2 recording(s) never played"),
        "{}",
        exit.stderr
    );
    assert!(
        exit.stderr.contains(
            "result: failed: 2 request(s) missed (--allow-misses to accept); 1 contract error(s)"
        ),
        "{}",
        exit.stderr
    );

    // JUnit: valid against the schema, one case per distinct call plus the unplayed ones.
    let xml = std::fs::read_to_string(&reports.junit)?;
    validate_junit(&xml)?;
    let doc = roxmltree::Document::parse(&xml)?;
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), 5, "3 distinct calls + 2 unplayed recordings");
    let failures: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("failure"))
        .collect();
    assert_eq!(
        failures
            .iter()
            .filter(|f| f.attribute("type") == Some("miss"))
            .count(),
        2
    );
    let miss_text: String = failures.iter().filter_map(|f| f.text()).collect();
    assert!(
        miss_text.contains(
            r#"collectionId: recorded "Collection Id value", request "Changed <&> value""#
        ),
        "{miss_text}"
    );
    let contract = failures
        .iter()
        .find(|f| f.attribute("type") == Some("contract"))
        .ok_or("no contract failure")?;
    assert!(
        contract
            .text()
            .unwrap_or("")
            .contains("group-included-and-excluded")
    );
    assert_eq!(
        doc.descendants()
            .filter(|n| n.has_tag_name("skipped"))
            .count(),
        2
    );
    let suite = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite"))
        .ok_or("no suite")?;
    assert_eq!(
        (
            suite.attribute("tests"),
            suite.attribute("failures"),
            suite.attribute("skipped")
        ),
        (Some("5"), Some("2"), Some("2"))
    );
    let out: String = doc
        .descendants()
        .filter(|n| n.has_tag_name("system-out"))
        .filter_map(|n| n.text())
        .collect();
    assert!(
        out.contains("replayed: 2") && out.contains("warning odata-type-without-hash"),
        "{out}"
    );

    // Markdown: the verdict, a totals row, a table of calls, details.
    let md = std::fs::read_to_string(&reports.markdown)?;
    assert!(md.starts_with("## graph-vcr replay: ❌ failed"), "{md}");
    assert!(md.contains("| 4 | 2 | 0 | 0 | 2 | 0 | 1 | 1 | 2 |"), "{md}");
    assert!(
        md.contains(
            "| ⚠️ | replayed | suite | `POST /v1.0/deviceManagement/deviceEnrollmentConfigurations/"
        ),
        "{md}"
    );
    assert!(
        md.contains("| ❌ | miss | suite |")
            && md.contains("### Details")
            && md.contains("### Never played"),
        "{md}"
    );

    // JSON: totals and calls.
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&reports.json)?)?;
    assert_eq!(json["format"], "graph-vcr-report");
    assert_eq!(json["totals"]["misses"], 2);
    assert_eq!(json["totals"]["unplayed"], 2);
    assert_eq!(json["calls"].as_array().map(Vec::len), Some(3));
    assert!(
        !dir_contains(tmp.path(), JWT.as_bytes()),
        "a token reached a report, journal or cassette"
    );

    // verify reads the same run back from the journal and agrees.
    let e = run_to_end(&[
        "verify",
        "--cassettes",
        s(&dir)?,
        "--cassette",
        "suite",
        "--journal",
        s(&journal)?,
    ])?;
    assert_eq!(e.status.code(), Some(1), "{}", e.stderr);
    assert!(
        e.stderr
            .contains("4 requests, 2 missed, 1 contract errors, 1 warnings, 2 never played"),
        "{}",
        e.stderr
    );
    let e = run_to_end(&[
        "verify",
        "--cassettes",
        s(&dir)?,
        "--cassette",
        "suite",
        "--journal",
        s(&journal)?,
        "--allow-misses",
        "--allow-deviations",
    ])?;
    assert_eq!(e.status.code(), Some(0), "{}", e.stderr);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_a_recording_that_was_not_played() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("cassettes");
    record_suite(tmp.path(), &dir).await?;
    let journal = tmp.path().join("journal.jsonl");
    let proxy = Proxy::start(&[
        "replay",
        "--cassettes",
        s(&dir)?,
        "--cassette",
        "suite",
        "--journal",
        s(&journal)?,
    ])?;
    let client = HttpClient::new();
    client.assign(&proxy.base, SEED_PATH, SDK_BODY, &[]).await?;
    client
        .assign(&proxy.base, CONFIG_PATH, CONFIG_BODY, &[])
        .await?;
    let exit = proxy.signal("TERM")?;
    assert_eq!(exit.status.code(), Some(0), "{}", exit.stderr);

    let junit = tmp.path().join("verify.xml");
    let e = run_to_end(&[
        "verify",
        "--cassettes",
        s(&dir)?,
        "--cassette",
        "suite",
        "--journal",
        s(&journal)?,
        "--report-junit",
        s(&junit)?,
    ])?;
    assert_eq!(
        e.status.code(),
        Some(0),
        "unplayed alone does not fail by default: {}",
        e.stderr
    );
    assert!(
        e.stderr.contains(
            "never played: POST /v1.0/deviceManagement/deviceCompliancePolicies/gzip-1/assign #0"
        ),
        "{}",
        e.stderr
    );
    validate_junit(&std::fs::read_to_string(&junit)?)?;
    let e = run_to_end(&[
        "verify",
        "--cassettes",
        s(&dir)?,
        "--cassette",
        "suite",
        "--journal",
        s(&journal)?,
        "--fail-on-unplayed",
    ])?;
    assert_eq!(e.status.code(), Some(1), "{}", e.stderr);
    // Without --journal, verify reads DIR/journal.jsonl: here the recorder's, where every
    // recording was played (recorded). Without any journal it is a usage error.
    let e = run_to_end(&["verify", "--cassettes", s(&dir)?, "--cassette", "suite"])?;
    assert_eq!(e.status.code(), Some(0), "{}", e.stderr);
    assert!(e.stderr.contains("0 never played"), "{}", e.stderr);
    std::fs::remove_file(dir.join("journal.jsonl"))?;
    let e = run_to_end(&["verify", "--cassettes", s(&dir)?, "--cassette", "suite"])?;
    assert_eq!(e.status.code(), Some(2), "no journal: a usage error");
    assert!(e.stderr.contains("--journal"), "{}", e.stderr);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_is_deterministic_and_survives_an_import_round_trip() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("cassettes");
    record_suite(tmp.path(), &dir).await?;

    let a = tmp.path().join("a.json");
    let b = tmp.path().join("b.json");
    for out in [&a, &b] {
        let e = run_to_end(&[
            "cassette",
            "export",
            "suite",
            "--cassettes",
            s(&dir)?,
            "-o",
            s(out)?,
        ])?;
        assert!(e.status.success(), "{}", e.stderr);
    }
    let first = std::fs::read(&a)?;
    assert_eq!(first, std::fs::read(&b)?, "two exports differ");
    let doc: serde_json::Value = serde_json::from_slice(&first)?;
    assert_eq!(doc["interactions"].as_array().map(Vec::len), Some(3));

    let other = tmp.path().join("imported");
    let e = run_to_end(&["cassette", "import", s(&a)?, "--cassettes", s(&other)?])?;
    assert!(
        e.status.success()
            && e.stderr
                .contains("imported 3 interaction(s) into cassette suite (0 re-keyed)"),
        "{}",
        e.stderr
    );
    let c = tmp.path().join("c.json");
    run_to_end(&[
        "cassette",
        "export",
        "suite",
        "--cassettes",
        s(&other)?,
        "-o",
        s(&c)?,
    ])?;
    assert_eq!(
        first,
        std::fs::read(&c)?,
        "export → import → export changed bytes"
    );
    // Importing again does not silently overwrite.
    let e = run_to_end(&["cassette", "import", s(&a)?, "--cassettes", s(&other)?])?;
    assert_eq!(e.status.code(), Some(2));
    assert!(e.stderr.contains("--replace"), "{}", e.stderr);

    // Both replay identically, from the sled copy and straight from a directory of exports.
    let exports = tmp.path().join("exports");
    export_all(&dir, &exports)?;
    let exports_before = files_under(&exports);
    let client = HttpClient::new();
    let mut answers = Vec::new();
    for source in [&dir, &other, &exports] {
        let proxy = Proxy::start(&["replay", "--cassettes", s(source)?, "--cassette", "suite"])?;
        let mut got = Vec::new();
        for (path, body) in [
            (SEED_PATH, SDK_BODY),
            (CONFIG_PATH, CONFIG_BODY),
            (GZIP_PATH, CONFIG_BODY),
        ] {
            let r = client.assign(&proxy.base, path, body, &[]).await?;
            got.push((r.status, r.header("request-id").map(str::to_owned), r.body));
        }
        proxy.signal("TERM")?;
        answers.push(got);
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0], answers[2]);
    assert_eq!(
        files_under(&exports),
        exports_before,
        "replay wrote into the export directory"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cassette_list_show_and_rm() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("cassettes");
    record_suite(tmp.path(), &dir).await?;

    let e = run_to_end(&["cassette", "list", "--cassettes", s(&dir)?])?;
    assert!(e.status.success());
    let line = e
        .stderr
        .lines()
        .find(|l| l.starts_with("suite\t"))
        .ok_or("no suite line")?
        .to_string();
    assert!(
        line.starts_with("suite\t3\t")
            && line.contains("v1.0 /deviceManagement/deviceConfigurations/{id}/assign"),
        "{line}"
    );

    let e = run_to_end(&["cassette", "show", "suite", "--cassettes", s(&dir)?])?;
    assert!(e.status.success());
    assert!(
        // A compressed answer is stored decoded (the gate must read it), without its
        // Content-Encoding, so replay serves what it stored.
        !e.stderr.contains("content-encoding: gzip")
            && e.stderr.contains("\"compressed-assignment\""),
        "{}",
        e.stderr
    );
    assert!(
        e.stderr.contains("> authorization: Bearer REDACTED"),
        "{}",
        e.stderr
    );

    let e = run_to_end(&["cassette", "rm", "nope", "--cassettes", s(&dir)?])?;
    assert_eq!(e.status.code(), Some(2));
    // A removed cassette leaves the disk too, not only the database: a directory committed
    // after `rm` must not carry it.
    let marker = b"compressed-assignment";
    assert!(
        files_holding(&dir, marker)? > 0,
        "the recording is not on disk"
    );
    let e = run_to_end(&["cassette", "rm", "suite", "--cassettes", s(&dir)?])?;
    assert!(e.status.success(), "{}", e.stderr);
    assert_eq!(
        files_holding(&dir, marker)?,
        0,
        "rm left the recording on disk"
    );
    let e = run_to_end(&["cassette", "list", "--cassettes", s(&dir)?])?;
    assert!(!e.stderr.contains("suite\t"), "{}", e.stderr);
    Ok(())
}

/// How many files under `dir` hold `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Result<usize, Error> {
    let mut found = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            found += files_holding(&path, needle)?;
        } else if std::fs::read(&path)?
            .windows(needle.len())
            .any(|w| w == needle)
        {
            found += 1;
        }
    }
    Ok(found)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_warns_or_with_strict_refuses_to_start() -> TestResult {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("cassettes");
    // The bundled example was recorded on 2026-11-28.
    let e = Proxy::try_start(&[
        "replay",
        "--cassettes",
        s(&repo)?,
        "--max-age",
        "1s",
        "--strict",
    ]);
    let Err(exit) = e else {
        return Err("started with a stale cassette and --strict".into());
    };
    assert_eq!(exit.status.code(), Some(1), "{}", exit.stderr);
    assert!(
        exit.stderr
            .contains("1 recording(s) older than 1s (--strict)"),
        "{}",
        exit.stderr
    );
    let proxy = Proxy::start(&["replay", "--cassettes", s(&repo)?, "--max-age", "1s"])?;
    assert!(proxy.stderr().contains("recording older than --max-age"));
    drop(proxy);
    let proxy = Proxy::start(&[
        "replay",
        "--cassettes",
        s(&repo)?,
        "--max-age",
        "100years",
        "--strict",
    ])?;
    assert!(!proxy.stderr().contains("older than"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_diff_of_a_cassette_directory_shows_the_json_export() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let repo = tmp.path().join("repo");
    let dir = repo.join("cassettes");
    std::fs::create_dir_all(&repo)?;
    let git = |args: &[&str]| -> Result<String, Error> {
        let out = std::process::Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@example.invalid",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .current_dir(&repo)
            .output()?;
        if !out.status.success() {
            return Err(format!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    git(&["init", "-q"])?;
    std::fs::write(repo.join(".gitattributes"), "cassettes/db diff=graph-vcr\n")?;
    git(&[
        "config",
        "diff.graph-vcr.textconv",
        &format!("{} cassette textconv", binary()),
    ])?;
    let stub = Proxy::start(&[
        "record",
        "--cassettes",
        s(&dir)?,
        "--upstream",
        "http://127.0.0.1:9",
    ])?;
    stub.signal("TERM")?;
    git(&["add", "-A"])?;
    git(&["commit", "-qm", "empty cassettes"])?;

    record_suite(tmp.path(), &dir).await?;
    let diff = git(&["diff", "--", "cassettes/db"])?;
    assert!(
        diff.contains("+  \"format\": \"graph-vcr-cassette\""),
        "{diff}"
    );
    assert!(
        diff.contains("\"path\": \"/v1.0/deviceManagement/deviceConfigurations/dc-1/assign\""),
        "{diff}"
    );
    Ok(())
}

/// Validates JUnit XML against the rules of the Jenkins xunit plugin's `junit-10.xsd`, the
/// schema CI systems' JUnit readers follow: which elements may nest where, which attributes
/// each may carry and must carry, and the form of `time`.
fn validate_junit(xml: &str) -> Result<(), Error> {
    let doc = roxmltree::Document::parse(xml)?;
    let root = doc.root_element();
    if root.tag_name().name() != "testsuites" {
        return Err(format!("root is <{}>, not <testsuites>", root.tag_name().name()).into());
    }
    fn check(node: roxmltree::Node) -> Result<(), String> {
        let name = node.tag_name().name();
        let (allowed, required, children): (&[&str], &[&str], &[&str]) = match name {
            "testsuites" => (
                &["name", "time", "tests", "failures", "errors"],
                &[],
                &["testsuite"],
            ),
            "testsuite" => (
                &[
                    "name",
                    "tests",
                    "failures",
                    "errors",
                    "group",
                    "time",
                    "skipped",
                    "timestamp",
                    "hostname",
                    "id",
                    "package",
                    "file",
                    "log",
                    "url",
                ],
                &["name", "tests", "failures", "errors"],
                &[
                    "testsuite",
                    "properties",
                    "testcase",
                    "system-out",
                    "system-err",
                ],
            ),
            "testcase" => (
                &["name", "time", "classname", "group"],
                &["name"],
                &[
                    "skipped",
                    "error",
                    "failure",
                    "rerunFailure",
                    "rerunError",
                    "flakyFailure",
                    "flakyError",
                    "system-out",
                    "system-err",
                ],
            ),
            "failure" | "error" | "skipped" => (&["type", "message"], &[], &[]),
            "system-out" | "system-err" => (&[], &[], &[]),
            "properties" => (&[], &[], &["property"]),
            "property" => (&["name", "value"], &["name", "value"], &[]),
            other => return Err(format!("<{other}> is not a JUnit element")),
        };
        for a in node.attributes() {
            if !allowed.contains(&a.name()) {
                return Err(format!("<{name}> may not have attribute {}", a.name()));
            }
        }
        for r in required {
            if node.attribute(*r).is_none() {
                return Err(format!("<{name}> lacks required attribute {r}"));
            }
        }
        if matches!(name, "testsuites" | "testsuite")
            && let Some(t) = node.attribute("time")
        {
            let (int, frac) = t.split_once('.').unwrap_or((t, ""));
            let ok = int.chars().all(|c| c.is_ascii_digit() || c == ',')
                && frac.chars().all(|c| c.is_ascii_digit());
            if !ok {
                return Err(format!("<{name}> time {t:?} is not a SUREFIRE_TIME"));
            }
        }
        for child in node.children() {
            if child.is_element() {
                if !children.contains(&child.tag_name().name()) {
                    return Err(format!(
                        "<{}> may not contain <{}>",
                        name,
                        child.tag_name().name()
                    ));
                }
                check(child)?;
            } else if child.is_text()
                && !children.is_empty()
                && !child.text().unwrap_or("").trim().is_empty()
            {
                return Err(format!("<{name}> may not contain text"));
            }
        }
        Ok(())
    }
    check(root).map_err(Into::into)
}

#[test]
fn the_junit_validator_rejects_what_the_schema_rejects() {
    assert!(validate_junit("<testsuites><testsuite name=\"a\" tests=\"1\" failures=\"0\" errors=\"0\"><testcase name=\"x\"/></testsuite></testsuites>").is_ok());
    for bad in [
        "<testsuite name=\"a\" tests=\"1\" failures=\"0\" errors=\"0\"/>",
        "<testsuites><testsuite name=\"a\" tests=\"1\" failures=\"0\"/></testsuites>",
        "<testsuites skipped=\"1\"/>",
        "<testsuites><testsuite name=\"a\" tests=\"1\" failures=\"0\" errors=\"0\" time=\"1s\"/></testsuites>",
        "<testsuites><testsuite name=\"a\" tests=\"1\" failures=\"0\" errors=\"0\"><testcase/></testsuite></testsuites>",
        "<testsuites><testsuite name=\"a\" tests=\"1\" failures=\"0\" errors=\"0\"><testcase name=\"x\"><warning/></testcase></testsuite></testsuites>",
    ] {
        assert!(validate_junit(bad).is_err(), "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_request_finish_before_exiting() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (proxy, stand_in, _) = forwarding("record", tmp.path(), &[]).await?;
    let base = proxy.base.clone();
    // The stand-in answers /slow/ after 5 s; stop the proxy while that call is in flight.
    let slow = tokio::spawn(async move {
        HttpClient::new()
            .assign(
                &base,
                "/v1.0/deviceManagement/deviceConfigurations/slow/assign",
                CONFIG_BODY,
                &[],
            )
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    let exit = tokio::task::spawn_blocking(move || proxy.signal("TERM")).await??;
    let answered = slow.await??;
    assert_eq!(
        answered.status,
        200,
        "the in-flight call was cut off: {}",
        answered.text()
    );
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(3),
        "exited before the call finished"
    );
    assert!(exit.status.success(), "{}", exit.stderr);
    assert!(exit.stderr.contains("1 recorded"), "{}", exit.stderr);
    stand_in.stop().await;
    Ok(())
}
