//! One verdict rule: each cause of failure fails a run in every mode that can have it, its own
//! `--allow-…` flag lets it pass, and the summary, the JSON report, the exit status and
//! `verify` on the run's journal agree every time. Typos in cassette names are named, and a
//! cassette replays with the key options it was recorded with.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

const CONFIG_PATH: &str = "/v1.0/deviceManagement/deviceConfigurations/dc-1/assign";
/// A group both included and excluded: an `error` deviation, forwarded in flag mode.
const CONFLICT_BODY: &str = r##"{"assignments":[{"target":{"@odata.type":"#microsoft.graph.groupAssignmentTarget","groupId":"11111111-1111-4111-8111-111111111111"}},{"target":{"@odata.type":"#microsoft.graph.exclusionGroupAssignmentTarget","groupId":"11111111-1111-4111-8111-111111111111"}}]}"##;
const SLOW_PATH: &str = "/v1.0/deviceManagement/deviceConfigurations/slow/assign";

/// What a case's client does.
#[derive(Clone, Copy)]
enum Act {
    /// The seed call, as recorded.
    Seed,
    /// The seed call with a body never recorded.
    Changed,
    /// The conflicting assign (an error deviation).
    Conflict,
    /// A call the stand-in answers after 5 s (past `--upstream-timeout 1s`).
    Slow,
    /// The seed call naming a cassette by a name that is not one.
    BadCassetteName,
    /// The seed call naming a cassette that does not exist.
    NoSuchCassette,
    /// A `CONNECT` to a host that is not intercepted.
    ConnectElsewhere,
}

async fn perform(proxy: &Proxy, act: Act) -> TestResult {
    let client = HttpClient::new();
    let changed = SEED_BODY.replace("Collection Id value", "never-recorded");
    let (path, body, header): (&str, &str, Option<(&str, &str)>) = match act {
        Act::Seed => (SEED_PATH, SEED_BODY, None),
        Act::Changed => (SEED_PATH, &changed, None),
        Act::Conflict => (CONFIG_PATH, CONFLICT_BODY, None),
        Act::Slow => (SLOW_PATH, r#"{"assignments":[]}"#, None),
        Act::BadCassetteName => (
            SEED_PATH,
            SEED_BODY,
            Some(("x-graph-vcr-cassette", "no such!")),
        ),
        Act::NoSuchCassette => (
            SEED_PATH,
            SEED_BODY,
            Some(("x-graph-vcr-cassette", "nosuch")),
        ),
        Act::ConnectElsewhere => {
            let refused = connect_through(
                proxy.addr,
                "login.microsoftonline.com:443",
                "",
                &["http/1.1"],
            )
            .await?
            .refused()?;
            assert_eq!(refused.status, 403);
            return Ok(());
        }
    };
    let extra: Vec<(&str, &str)> = header.into_iter().collect();
    client.assign(&proxy.base, path, body, &extra).await?;
    Ok(())
}

/// Records the seed call and the conflicting call into `tmp/cassettes`.
async fn recorded(tmp: &Path) -> Result<PathBuf, Error> {
    let (proxy, stand_in, dir) = forwarding("record", tmp, &["--allow-deviations"]).await?;
    perform(&proxy, Act::Seed).await?;
    perform(&proxy, Act::Conflict).await?;
    let exit = proxy.signal("TERM")?;
    stand_in.stop().await;
    assert!(exit.status.success(), "{}", exit.stderr);
    Ok(dir)
}

/// The verdict as every output has it: exit status, the summary's result line, the JSON
/// report's verdict (passed, and whether `cause` fails it).
struct Judged {
    code: Option<i32>,
    result_line: String,
    passed: bool,
    cause_fails: Option<bool>,
}

fn judged(code: Option<i32>, stderr: &str, report: &Path, cause: &str) -> Result<Judged, Error> {
    let report: Value = serde_json::from_slice(&std::fs::read(report)?)?;
    let causes = report["verdict"]["causes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    Ok(Judged {
        code,
        result_line: stderr
            .lines()
            .filter(|l| l.contains("result: ") || l.contains("allowed: "))
            .collect::<Vec<_>>()
            .join("\n"),
        passed: report["verdict"]["passed"].as_bool().unwrap_or(false),
        cause_fails: causes
            .iter()
            .find(|c| c["cause"] == cause)
            .and_then(|c| c["fails"].as_bool()),
    })
}

fn assert_failed(j: &Judged, cause: &str, flag: &str, what: &str) {
    assert_eq!(j.code, Some(1), "{what}: {}", j.result_line);
    assert!(
        !j.passed && j.cause_fails == Some(true),
        "{what}: {}",
        j.result_line
    );
    assert!(
        j.result_line.contains("result: failed")
            && j.result_line.contains(&format!("({flag} to accept)")),
        "{what} ({cause}): {}",
        j.result_line
    );
}

fn assert_allowed(j: &Judged, flag: &str, what: &str) {
    assert_eq!(j.code, Some(0), "{what}: {}", j.result_line);
    assert!(
        j.passed && j.cause_fails == Some(false),
        "{what}: {}",
        j.result_line
    );
    assert!(
        j.result_line.contains("allowed: ")
            && j.result_line.contains(&format!("({flag})"))
            && j.result_line.contains("result: passed"),
        "{what}: {}",
        j.result_line
    );
}

/// Runs `mode` with `flags` (plus `allow` when given), makes the cause happen, and judges the
/// live run and `verify` on its journal.
async fn run(
    tmp: &Path,
    mode: &str,
    flags: &[&str],
    act: Act,
    cause: &str,
    allow: Option<&str>,
) -> Result<(Judged, Judged), Error> {
    let tag = format!("{mode}-{cause}-{}", allow.is_some());
    let (journal, report, verified) = (
        tmp.join(format!("{tag}.jsonl")),
        tmp.join(format!("{tag}.json")),
        tmp.join(format!("{tag}.verified.json")),
    );
    let mut args: Vec<&str> = flags.to_vec();
    args.extend(["--journal", s(&journal)?, "--report-json", s(&report)?]);
    args.extend(allow);
    let work = tmp.join(&tag);
    std::fs::create_dir_all(&work)?;
    let dir = tmp.join("cassettes");
    let (proxy, stand_in) = if mode == "replay" {
        let mut all = vec!["replay", "--cassettes", s(&dir)?];
        all.extend(&args);
        (Proxy::start(&all)?, None)
    } else {
        // A fresh directory of its own, seeded with the recorded cassettes for auto.
        let own = work.join("cassettes");
        if mode == "auto" {
            copy_dir(&dir, &own)?;
        }
        let (proxy, stand_in, _) = forwarding(mode, &work, &args).await?;
        (proxy, Some(stand_in))
    };
    perform(&proxy, act).await?;
    let exit = proxy.signal("TERM")?;
    if let Some(stand_in) = stand_in {
        stand_in.stop().await;
    }
    let live = judged(exit.status.code(), &exit.stderr, &report, cause)?;
    let verify_dir = if mode == "replay" {
        dir
    } else {
        work.join("cassettes")
    };
    let mut v = vec![
        "verify",
        "--cassettes",
        s(&verify_dir)?,
        "--journal",
        s(&journal)?,
        "--report-json",
        s(&verified)?,
    ];
    v.extend(allow);
    let e = run_to_end(&v)?;
    let after = judged(e.status.code(), &e.stderr, &verified, cause)?;
    Ok((live, after))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cause_fails_every_mode_unless_allowed_and_all_outputs_agree() -> TestResult {
    let tmp = tempfile::tempdir()?;
    recorded(tmp.path()).await?;
    let ca_dir = tmp.path().join("ca");
    ca_init(&ca_dir)?;
    let forward = ["--forward", "--ca-dir", s(&ca_dir)?];
    let timeout = ["--upstream-timeout", "1s"];
    let cases: Vec<(&str, Vec<&str>, Act, &str, &str)> = vec![
        ("replay", vec![], Act::Changed, "miss", "--allow-misses"),
        (
            "replay",
            vec![],
            Act::Conflict,
            "contract-error",
            "--allow-deviations",
        ),
        (
            "replay",
            vec![],
            Act::BadCassetteName,
            "rejected",
            "--allow-rejected",
        ),
        (
            "replay",
            vec![],
            Act::NoSuchCassette,
            "unknown-cassette",
            "--allow-unknown-cassettes",
        ),
        (
            "replay",
            forward.to_vec(),
            Act::ConnectElsewhere,
            "refused",
            "--allow-refused",
        ),
        (
            "record",
            vec![],
            Act::Conflict,
            "contract-error",
            "--allow-deviations",
        ),
        (
            "record",
            timeout.to_vec(),
            Act::Slow,
            "upstream-error",
            "--allow-upstream-errors",
        ),
        (
            "record",
            vec!["--max-body-size", "64"],
            Act::Seed,
            "rejected",
            "--allow-rejected",
        ),
        (
            "auto",
            vec![],
            Act::Conflict,
            "contract-error",
            "--allow-deviations",
        ),
        (
            "auto",
            timeout.to_vec(),
            Act::Slow,
            "upstream-error",
            "--allow-upstream-errors",
        ),
        (
            "auto",
            vec![],
            Act::BadCassetteName,
            "rejected",
            "--allow-rejected",
        ),
        (
            "auto",
            forward.to_vec(),
            Act::ConnectElsewhere,
            "refused",
            "--allow-refused",
        ),
        (
            "audit",
            vec![],
            Act::Conflict,
            "contract-error",
            "--allow-deviations",
        ),
        (
            "audit",
            timeout.to_vec(),
            Act::Slow,
            "upstream-error",
            "--allow-upstream-errors",
        ),
        (
            "audit",
            vec!["--max-body-size", "64"],
            Act::Seed,
            "rejected",
            "--allow-rejected",
        ),
    ];
    for (mode, flags, act, cause, flag) in cases {
        let what = format!("{mode} {cause}");
        let (live, verified) = run(tmp.path(), mode, &flags, act, cause, None).await?;
        assert_failed(&live, cause, flag, &what);
        assert_failed(&verified, cause, flag, &format!("verify of {what}"));
        let (live, verified) = run(tmp.path(), mode, &flags, act, cause, Some(flag)).await?;
        assert_allowed(&live, flag, &what);
        assert_allowed(&verified, flag, &format!("verify of {what}"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_cassettes_are_named_with_the_closest_first() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = recorded(tmp.path()).await?;
    // Typos at start: a warning listing what there is.
    let proxy = Proxy::start(&["replay", "--cassettes", s(&dir)?, "--cassette", "defualt"])?;
    assert!(
        proxy.stderr().contains("there is no cassette \"defualt\"")
            && proxy.stderr().contains("closest first): default"),
        "{}",
        proxy.stderr()
    );
    // A request for it: a Graph-format answer naming it and what there is.
    let r = HttpClient::new()
        .assign(&proxy.base, SEED_PATH, SEED_BODY, &[])
        .await?;
    assert_eq!(r.status, 501);
    let e = r.json();
    assert_eq!(e["error"]["code"], "graphVcrUnknownCassette", "{e}");
    assert_eq!(e["error"]["innerError"]["cassettes"], "default", "{e}");
    let exit = proxy.signal("TERM")?;
    assert_eq!(exit.status.code(), Some(1), "{}", exit.stderr);

    // verify --cassette for one its journal never mentions.
    let journal = dir.join("journal.jsonl");
    let e = run_to_end(&[
        "verify",
        "--cassettes",
        s(&dir)?,
        "--journal",
        s(&journal)?,
        "--cassette",
        "nosuch",
    ])?;
    assert_eq!(e.status.code(), Some(1), "{}", e.stderr);
    assert!(
        e.stderr.contains("never mentions cassette nosuch")
            && e.stderr.contains("(closest first): default"),
        "{}",
        e.stderr
    );
    // Without --cassette, every cassette the journal names.
    let e = run_to_end(&[
        "verify",
        "--cassettes",
        s(&dir)?,
        "--journal",
        s(&journal)?,
        "--allow-deviations",
    ])?;
    assert_eq!(e.status.code(), Some(0), "{}", e.stderr);
    assert!(
        e.stderr.contains("cassette default: 2 requests"),
        "{}",
        e.stderr
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cassette_replays_with_the_key_options_it_was_recorded_with() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (proxy, stand_in, dir) =
        forwarding("record", tmp.path(), &["--ignore-field", "id"]).await?;
    let client = HttpClient::new();
    assert_eq!(
        client
            .assign(&proxy.base, SEED_PATH, SDK_BODY, &[])
            .await?
            .status,
        204
    );
    proxy.signal("TERM")?;
    stand_in.stop().await;

    // No flags: the cassette's own options apply, so a call that differs only in `id` hits.
    let other_id = SDK_BODY.replace("705b021c-021c-705b-1c02-5b701c025b70", "another-id");
    let proxy = Proxy::start(&["replay", "--cassettes", s(&dir)?])?;
    let r = client
        .assign(&proxy.base, SEED_PATH, &other_id, &[])
        .await?;
    assert_eq!(
        r.header("x-graph-vcr-outcome"),
        Some("replayed"),
        "{}",
        r.text()
    );
    let exit = proxy.signal("TERM")?;
    assert!(exit.status.success(), "{}", exit.stderr);

    // A flag that disagrees is an error naming both.
    let e = match Proxy::try_start(&["replay", "--cassettes", s(&dir)?, "--ordered-arrays"]) {
        Ok(_) => return Err("replay started with disagreeing key options".into()),
        Err(e) => e,
    };
    assert_eq!(e.status.code(), Some(2), "{}", e.stderr);
    assert!(
        e.stderr.contains("--ignore-field id") && e.stderr.contains("--ordered-arrays"),
        "{}",
        e.stderr
    );
    // The same options again are fine.
    let proxy = Proxy::start(&["replay", "--cassettes", s(&dir)?, "--ignore-field", "id"])?;
    drop(proxy);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junit_carries_each_calls_time_and_the_runs_start() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = recorded(tmp.path()).await?;
    let junit = tmp.path().join("junit.xml");
    let proxy = Proxy::start(&[
        "replay",
        "--cassettes",
        s(&dir)?,
        "--allow-deviations",
        "--report-junit",
        s(&junit)?,
    ])?;
    for _ in 0..3 {
        perform(&proxy, Act::Seed).await?;
    }
    perform(&proxy, Act::Changed).await?;
    proxy.signal("TERM")?;
    let xml = std::fs::read_to_string(&junit)?;
    let doc = roxmltree::Document::parse(&xml)?;
    let suite = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite"))
        .ok_or("no testsuite")?;
    let stamp = suite.attribute("timestamp").ok_or("no timestamp")?;
    assert!(
        stamp.len() == 19 && stamp.as_bytes()[10] == b'T' && stamp.starts_with("20"),
        "{stamp}"
    );
    let time = |n: roxmltree::Node| -> f64 {
        n.attribute("time")
            .and_then(|t| t.parse().ok())
            .unwrap_or(-1.0)
    };
    let cases: Vec<_> = suite
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    let seed = cases
        .iter()
        .find(|c| {
            c.attribute("name")
                .is_some_and(|n| n.contains("deviceEnrollmentConfigurations"))
        })
        .ok_or("no case for the seed call")?;
    // Three requests' latencies added up: positive, and printed to the microsecond.
    assert!(time(*seed) > 0.0, "{xml}");
    let sum: f64 = cases.iter().map(|c| time(*c)).filter(|t| *t > 0.0).sum();
    assert!((time(suite) - sum).abs() < 0.000_01, "{xml}");
    let miss = cases
        .iter()
        .find(|c| {
            c.descendants()
                .any(|d| d.has_tag_name("failure") && d.attribute("type") == Some("miss"))
        })
        .ok_or("the miss is not a failure")?;
    assert!(time(*miss) >= 0.0);
    Ok(())
}
