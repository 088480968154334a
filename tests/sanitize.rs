//! Cassettes safe to share: `--pseudonymize` keeps a tenant's identifiers (GUIDs, UPNs,
//! e-mail addresses, its domain) out of every file graph-vcr writes, and replay still matches
//! requests carrying the real ids and requests carrying ids read back from replayed answers;
//! a project's own `[[sanitize]]` rules apply at record, in replay and in `cassette sanitize`.

mod common;

use common::tenant::*;
use common::*;
use serde_json::{Value, json};
use std::path::Path;

const KEY: (&str, &str) = (
    "GRAPH_VCR_PSEUDONYM_KEY",
    "ci-secret-pseudonym-key-0123456789",
);
const CLIENT_REQUEST_ID: &str = "0c4a1f7e-2b3d-4e5f-8a9b-1c2d3e4f5a6b";

/// What a directory-reading Intune tool does: who am I, which tenant, the user by UPN, the
/// group by its mail address; then assign the configuration to the group id it read (or, with
/// `hard_coded`, to the real group id a test knows). Returns each answer's status and body.
async fn tenant_workflow(base: &str, hard_coded: bool) -> Result<Vec<(u16, Value)>, Error> {
    let client = HttpClient::new();
    let auth = format!("Bearer {JWT}");
    let headers = [
        ("authorization", auth.as_str()),
        ("client-request-id", CLIENT_REQUEST_ID),
        ("content-type", "application/json"),
    ];
    let mut seen = Vec::new();
    for path in [
        "/v1.0/organization".to_string(),
        format!("/v1.0/users/{UPN}"),
        format!("/v1.0/groups?$filter=mail%20eq%20%27finance%40{DOMAIN}%27&$select=id,displayName"),
    ] {
        let r = client
            .send("GET", &format!("{base}{path}"), &headers, "")
            .await?;
        seen.push((
            r.status,
            serde_json::from_str(&r.text()).unwrap_or(Value::Null),
        ));
    }
    let read = seen[2].1["value"][0]["id"]
        .as_str()
        .unwrap_or("none")
        .to_string();
    let group = if hard_coded {
        GROUP_ID.to_string()
    } else {
        read
    };
    let body = json!({"assignments": [{"target": {
        "@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": group}}]});
    let path = format!("/v1.0/deviceManagement/deviceConfigurations/{CONFIG_ID}/assign");
    let r = client
        .send(
            "POST",
            &format!("{base}{path}"),
            &headers,
            &body.to_string(),
        )
        .await?;
    seen.push((
        r.status,
        serde_json::from_str(&r.text()).unwrap_or(Value::Null),
    ));
    Ok(seen)
}

/// The tenant identifiers (any case) found in `text`.
fn leaks(text: &[u8]) -> Vec<&'static str> {
    let lower = text.to_ascii_lowercase();
    ALL.iter()
        .copied()
        .filter(|n| {
            let n = n.to_ascii_lowercase();
            lower.windows(n.len()).any(|w| w == n.as_bytes())
        })
        .collect()
}

fn assert_no_leak_under(dir: &Path) {
    for (path, bytes) in files_under(dir) {
        let found = leaks(&bytes);
        assert!(found.is_empty(), "{} holds {found:?}", path.display());
        assert!(
            !bytes.windows(KEY.1.len()).any(|w| w == KEY.1.as_bytes()),
            "{} holds the pseudonym key",
            path.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pseudonymised_recording_keeps_the_tenant_out_of_every_file_and_still_replays()
-> TestResult {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out)?;
    let report = out.join("record.json");
    let (proxy, stand_in, dir) = forwarding_with_env(
        "record",
        tmp.path(),
        &[
            "--cassette",
            "tenant",
            "--pseudonymize",
            "--report-json",
            s(&report)?,
        ],
        &[KEY],
    )
    .await?;
    let recorded = tenant_workflow(&proxy.base, false).await?;
    let exit = proxy.signal("TERM")?;
    stand_in.stop().await;
    assert!(recorded.iter().all(|(s, _)| *s == 200), "{recorded:?}");
    // The client got the real answers: only what is stored is pseudonymised.
    assert_eq!(recorded[0].1["value"][0]["id"], TENANT_ID);
    assert!(leaks(exit.stderr.as_bytes()).is_empty(), "{}", exit.stderr);

    let export = out.join("tenant.json");
    let e = run_to_end(&[
        "cassette",
        "export",
        "tenant",
        "--cassettes",
        s(&dir)?,
        "-o",
        s(&export)?,
    ])?;
    assert!(e.status.success(), "{}", e.stderr);
    assert_no_leak_under(&dir);
    assert_no_leak_under(&out);
    let doc: Value = serde_json::from_slice(&std::fs::read(&export)?)?;
    assert_eq!(doc["pseudonymized"]["identifiers"], true, "{doc:#}");
    let stored = doc.to_string();
    assert!(
        stored.contains("-0a11-a5ed-") && stored.contains("@tenant-"),
        "no aliases: {stored}"
    );

    // Replay, with the key: the client reads aliases and sends them back; a test that
    // hard-codes the real group id matches too.
    let journal = out.join("replay.jsonl");
    let proxy = Proxy::start_with_env(
        &[
            "replay",
            "--cassettes",
            s(&dir)?,
            "--cassette",
            "tenant",
            "--journal",
            s(&journal)?,
        ],
        &[KEY],
    )?;
    let replayed = tenant_workflow(&proxy.base, false).await?;
    let hard = tenant_workflow(&proxy.base, true).await?;
    let exit = proxy.signal("TERM")?;
    for (status, body) in replayed.iter().chain(&hard) {
        assert_eq!(*status, 200, "{body}\n{}", exit.stderr);
        assert!(leaks(body.to_string().as_bytes()).is_empty(), "{body}");
    }
    let group_alias = replayed[2].1["value"][0]["id"].as_str().unwrap_or_default();
    assert!(group_alias.contains("-0a11-a5ed-"), "{group_alias}");
    assert!(exit.status.success(), "{}", exit.stderr);
    assert_no_leak_under(&out);

    // Without the key, aliases still replay; the real UPN cannot be aliased, so it misses and
    // the miss says why.
    let proxy = Proxy::start(&["replay", "--cassettes", s(&dir)?, "--cassette", "tenant"])?;
    let by_alias = tenant_workflow(&proxy.base, false).await?;
    let exit = proxy.signal("TERM")?;
    assert_eq!(by_alias[0].0, 200, "{by_alias:?}");
    assert_eq!(
        by_alias[1].0, 501,
        "the real UPN matched without the key: {by_alias:?}"
    );
    let message = by_alias[1].1["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("GRAPH_VCR_PSEUDONYM_KEY"), "{message}");
    assert!(
        exit.stderr.contains("its key is not here"),
        "{}",
        exit.stderr
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_value_gets_the_same_alias_across_cassettes_and_runs_and_a_wrong_key_is_refused()
-> TestResult {
    let tmp = tempfile::tempdir()?;
    let mut aliases = Vec::new();
    for cassette in ["one", "two"] {
        let (proxy, stand_in, dir) = forwarding_with_env(
            "record",
            tmp.path(),
            &["--cassette", cassette, "--pseudonymize"],
            &[KEY],
        )
        .await?;
        tenant_workflow(&proxy.base, false).await?;
        proxy.signal("TERM")?;
        stand_in.stop().await;
        let stored = exported(&dir, cassette)?;
        aliases.push(stored[0]["response"]["json"]["value"][0]["id"].clone());
    }
    assert!(
        aliases[0]
            .as_str()
            .is_some_and(|a| a.contains("-0a11-a5ed-")),
        "{aliases:?}"
    );
    assert_eq!(aliases[0], aliases[1]);

    let dir = tmp.path().join("cassettes");
    let other = ("GRAPH_VCR_PSEUDONYM_KEY", "another-key-entirely-0123456789");
    let e = Proxy::start_with_env(&["replay", "--cassettes", s(&dir)?], &[other]).err();
    let e = e.map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("was pseudonymised with key"), "{e}");
    Ok(())
}

/// A project config with a rule of its own, and a flag.
const CONFIG: &str = r#"
cassette = "rules"

[[sanitize]]
field = "displayName"
replace = "NAME"

[[sanitize]]
header = "x-team"
"#;

const GROUP_BODY: &str = r#"{"displayName":"Finance Planning Crew","mailNickname":"fin"}"#;

async fn create_group(base: &str) -> Result<Resp, Error> {
    HttpClient::new()
        .send(
            "POST",
            &format!("{base}/v1.0/groups"),
            &[
                ("content-type", "application/json"),
                ("x-team", "team-secret-value-77"),
            ],
            GROUP_BODY,
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_rule_applies_at_record_in_replay_and_in_cassette_sanitize() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let project = tmp.path().join("project");
    std::fs::create_dir_all(&project)?;
    let config = project.join("graph-vcr.toml");
    std::fs::write(&config, CONFIG)?;
    let hidden = ["Finance Planning Crew", "team-secret-value-77"];
    let holds = |dir: &Path| {
        hidden
            .iter()
            .filter(|h| dir_contains(dir, h.as_bytes()))
            .count()
    };

    // Record with --config: the rule redacts the field and the header, the flag names the cassette.
    let (proxy, stand_in, dir) =
        forwarding("record", tmp.path(), &["--config", s(&config)?]).await?;
    let r = create_group(&proxy.base).await?;
    proxy.signal("TERM")?;
    stand_in.stop().await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["displayName"],
        "Finance Planning Crew",
        "the client gets the real answer"
    );
    assert_eq!(holds(&dir), 0, "a rule's value reached the disk");
    let stored = exported(&dir, "rules")?;
    assert_eq!(
        stored[0]["request"]["json"]["displayName"], "NAME",
        "{stored:?}"
    );
    assert_eq!(
        stored[0]["response"]["json"]["displayName"], "NAME",
        "{stored:?}"
    );

    // Replay in the project directory (graph-vcr.toml found there): the request is sanitized
    // the same way, so it matches. Elsewhere, without the rule, it does not.
    let proxy = Proxy::start_in(&project, &["replay", "--cassettes", s(&dir)?], &[])?;
    let r = create_group(&proxy.base).await?;
    proxy.signal("TERM")?;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["displayName"], "NAME");
    let proxy = Proxy::start(&["replay", "--cassettes", s(&dir)?, "--cassette", "rules"])?;
    let r = create_group(&proxy.base).await?;
    proxy.signal("TERM")?;
    assert_eq!(r.status, 501, "matched without the rule: {}", r.text());

    // Recorded before the rule existed, cleaned afterwards without re-recording.
    let old = tmp.path().join("old");
    std::fs::create_dir_all(&old)?;
    let (proxy, stand_in, plain) = forwarding("record", &old, &["--cassette", "rules"]).await?;
    create_group(&proxy.base).await?;
    proxy.signal("TERM")?;
    stand_in.stop().await;
    assert_eq!(
        holds(&plain),
        2,
        "the unsanitized recording should hold both values"
    );
    // The committed form, a directory of exports, is cleaned in place the same way.
    let exports = tmp.path().join("exports");
    export_all(&plain, &exports)?;
    assert_eq!(holds(&exports), 2);
    let e = run_to_end(&[
        "cassette",
        "sanitize",
        "rules",
        "--cassettes",
        s(&exports)?,
        "--config",
        s(&config)?,
    ])?;
    assert!(e.status.success(), "{}", e.stderr);
    assert_eq!(
        holds(&exports),
        0,
        "the exports still hold a value: {}",
        e.stderr
    );
    assert_eq!(
        files_under(&exports).len(),
        1,
        "sanitize left more than the export behind"
    );
    let proxy = Proxy::start_in(&project, &["replay", "--cassettes", s(&exports)?], &[])?;
    let r = create_group(&proxy.base).await?;
    proxy.signal("TERM")?;
    assert_eq!(r.status, 200, "{}", r.text());
    let e = run_to_end(&[
        "cassette",
        "sanitize",
        "--all",
        "--cassettes",
        s(&plain)?,
        "--config",
        s(&config)?,
    ])?;
    assert!(e.status.success(), "{}", e.stderr);
    assert!(
        e.stderr
            .contains("sanitized cassette rules: 1 interaction(s), 1 re-keyed"),
        "{}",
        e.stderr
    );
    assert_eq!(holds(&plain), 0, "cassette sanitize left a value on disk");
    let proxy = Proxy::start_in(&project, &["replay", "--cassettes", s(&plain)?], &[])?;
    let r = create_group(&proxy.base).await?;
    let exit = proxy.signal("TERM")?;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), exit.stderr);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cassette_sanitize_pseudonymises_an_old_recording() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (proxy, stand_in, dir) =
        forwarding("record", tmp.path(), &["--cassette", "tenant"]).await?;
    tenant_workflow(&proxy.base, false).await?;
    proxy.signal("TERM")?;
    stand_in.stop().await;
    assert!(
        !leaks(&std::fs::read(dir.join("db"))?).is_empty(),
        "nothing to clean"
    );
    // Recording into it with --pseudonymize now would mix real ids and aliases: refused.
    let (proxy, stand_in, _) = forwarding_with_env(
        "record",
        tmp.path(),
        &["--cassette", "tenant", "--pseudonymize"],
        &[KEY],
    )
    .await?;
    let r = HttpClient::new()
        .send("GET", &format!("{}/v1.0/organization", proxy.base), &[], "")
        .await?;
    proxy.signal("TERM")?;
    stand_in.stop().await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(
        r.text().contains("cassette sanitize tenant --pseudonymize"),
        "{}",
        r.text()
    );

    let e = run_to_end_with_env(
        &[
            "cassette",
            "sanitize",
            "tenant",
            "--pseudonymize",
            "--cassettes",
            s(&dir)?,
        ],
        &[KEY],
    )?;
    assert!(e.status.success(), "{}", e.stderr);
    let journal = dir.join("journal.jsonl");
    std::fs::remove_file(&journal)?; // the record run's own log, from before
    assert_no_leak_under(&dir);
    let proxy = Proxy::start_with_env(
        &["replay", "--cassettes", s(&dir)?, "--cassette", "tenant"],
        &[KEY],
    )?;
    let hard = tenant_workflow(&proxy.base, true).await?;
    let exit = proxy.signal("TERM")?;
    assert!(
        hard.iter().all(|(s, _)| *s == 200),
        "{hard:?}\n{}",
        exit.stderr
    );
    Ok(())
}

#[test]
fn cassette_sanitize_never_makes_a_directory_or_a_database_of_its_own() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let missing = tmp.path().join("missing");
    let e = run_to_end(&["cassette", "sanitize", "--all", "--cassettes", s(&missing)?])?;
    assert_eq!(e.status.code(), Some(2), "{}", e.stderr);
    assert!(e.stderr.contains("no cassette directory"), "{}", e.stderr);
    assert!(!missing.exists(), "sanitize made the directory");
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty)?;
    let e = run_to_end(&["cassette", "sanitize", "--all", "--cassettes", s(&empty)?])?;
    assert_eq!(e.status.code(), Some(2), "{}", e.stderr);
    assert!(e.stderr.contains("no cassettes in"), "{}", e.stderr);
    assert!(
        files_under(&empty).is_empty(),
        "sanitize wrote into an empty directory"
    );
    Ok(())
}
