//! What must never go wrong: secrets on disk, lost recordings, two writers, replay touching
//! the cassette or the network, and upstream failures passed off as answers.

mod common;

use common::*;
use std::path::Path;

fn path_str(p: &Path) -> Result<&str, Error> {
    p.to_str().ok_or_else(|| "non-UTF-8 temp path".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_cassette_directory() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (proxy, stand_in, dir) = forwarding("record", tmp.path(), &["--record-all"]).await?;
    let client = HttpClient::new();

    let opaque = "OpaqueAccessToken-7f3e9c1d2b4a6e8f";
    let cookie = "SessionCookieValue-5a4b3c2d1e0f";
    let secret = "ClientSecretValue-0123456789abcdef";
    let marker = "CollectionMarker-visible-in-cassette";
    let auth = format!("Bearer {opaque}");
    let cookie_header = format!("session={cookie}; theme=dark");
    let body = SEED_BODY.replace("Collection Id value", marker).replace(
        "\"enrollmentConfigurationAssignments\"",
        &format!("\"note\": \"Bearer {JWT}\", \"client_secret\": \"{secret}\", \"enrollmentConfigurationAssignments\""),
    );
    let r = client
        .send(
            "POST",
            &format!("{}{SEED_PATH}?access_token={opaque}&x={JWT}", proxy.base),
            &[
                ("authorization", &auth),
                ("cookie", &cookie_header),
                ("x-api-key", secret),
                ("content-type", "application/json"),
            ],
            &body,
        )
        .await?;
    assert_eq!(r.status, 204);
    // The service got the real credentials: redaction is for disk only.
    let seen = stand_in.received();
    assert_eq!(
        seen[0]
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some(auth.as_str())
    );
    assert!(String::from_utf8_lossy(&seen[0].body).contains(secret));
    // A JWT in the Authorization header of a second request.
    let r = client.assign(&proxy.base, SEED_PATH, SDK_BODY, &[]).await?;
    assert_eq!(r.status, 204);
    proxy.signal("TERM")?;
    stand_in.stop().await;

    assert!(
        dir_contains(&dir, marker.as_bytes()),
        "the search can see recorded bytes"
    );
    for needle in [opaque, cookie, secret, JWT, "StandInCookieSecret0123456789"] {
        let hits: Vec<_> = files_under(&dir)
            .into_iter()
            .filter(|(_, b)| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
            .map(|(p, _)| p)
            .collect();
        assert!(hits.is_empty(), "{needle} found in {hits:?}");
    }
    // What was redacted still replays: the key is computed after redaction.
    let proxy = Proxy::start(&["replay", "--cassettes", path_str(&dir)?])?;
    let r = client.assign(&proxy.base, SEED_PATH, SDK_BODY, &[]).await?;
    assert_eq!(r.header("x-graph-vcr-outcome"), Some("replayed"));
    assert!(
        r.header("set-cookie")
            .is_some_and(|c| c.contains("REDACTED"))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_answered_recording() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (proxy, stand_in, dir) = forwarding("record", tmp.path(), &[]).await?;
    let client = HttpClient::new();
    let bodies: Vec<String> = (0..20)
        .map(|i| SEED_BODY.replace("Collection Id value", &format!("c-{i}")))
        .collect();
    for b in &bodies {
        assert_eq!(
            client.assign(&proxy.base, SEED_PATH, b, &[]).await?.status,
            204
        );
    }
    // No shutdown, no flush on exit: the process dies right after the last answer.
    let exit = proxy.signal("KILL")?;
    assert!(!exit.status.success());
    stand_in.stop().await;
    all_replay(&dir, &bodies).await
}

/// Replays each of `bodies`, in order, from `dir`: each must be there (a repeated body is
/// its next recorded occurrence).
async fn all_replay(dir: &std::path::Path, bodies: &[String]) -> TestResult {
    let client = HttpClient::new();
    let proxy = Proxy::start(&[
        "replay",
        "--cassettes",
        path_str(dir)?,
        "--on-exhausted",
        "miss",
    ])?;
    for b in bodies {
        let r = client.assign(&proxy.base, SEED_PATH, b, &[]).await?;
        assert_eq!(r.status, 204, "lost: {b}: {}", r.text());
    }
    Ok(())
}

/// The same under concurrency: 32 clients at once, so records share fsyncs (group commit,
/// src/cassette/recorder.rs), each sent twice so the second occurrence is stored too. Every
/// answered call must survive a SIGKILL straight after the last answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_answered_recording_made_concurrently() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (proxy, stand_in, dir) = forwarding("record", tmp.path(), &[]).await?;
    let client = std::sync::Arc::new(HttpClient::new());
    let bodies: Vec<String> = (0..32)
        .map(|i| SEED_BODY.replace("Collection Id value", &format!("c-{i}")))
        .collect();
    for _ in 0..2 {
        let mut answers = tokio::task::JoinSet::new();
        for b in bodies.clone() {
            let (client, base) = (std::sync::Arc::clone(&client), proxy.base.clone());
            answers.spawn(async move { client.assign(&base, SEED_PATH, &b, &[]).await });
        }
        while let Some(answer) = answers.join_next().await {
            let r = answer??;
            assert_eq!(r.status, 204, "{}", r.text());
            assert_eq!(r.header("x-graph-vcr-outcome"), Some("recorded"));
        }
    }
    let exit = proxy.signal("KILL")?;
    assert!(!exit.status.success());
    stand_in.stop().await;
    all_replay(&dir, &[bodies.clone(), bodies].concat()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_recorder_on_the_same_directory_fails_clearly() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("cassettes");
    let first = Proxy::start(&[
        "record",
        "--cassettes",
        path_str(&dir)?,
        "--upstream",
        "http://127.0.0.1:9",
    ])?;
    let second = Proxy::try_start(&[
        "auto",
        "--cassettes",
        path_str(&dir)?,
        "--upstream",
        "http://127.0.0.1:9",
    ]);
    let Err(exit) = second else {
        return Err("second recorder started".into());
    };
    assert_eq!(exit.status.code(), Some(2), "{}", exit.stderr);
    assert!(
        exit.stderr.contains(path_str(&dir)?),
        "names the directory: {}",
        exit.stderr
    );
    assert!(
        exit.stderr.contains(&format!("pid {}", first.pid())),
        "names the holder: {}",
        exit.stderr
    );
    assert!(
        exit.stderr.contains("graph-vcr.lock"),
        "names the lock: {}",
        exit.stderr
    );
    assert!(!exit.stderr.contains("panicked"), "{}", exit.stderr);

    // Replay would copy a directory being written: refused too, clearly.
    let replay = Proxy::try_start(&["replay", "--cassettes", path_str(&dir)?]);
    let Err(exit) = replay else {
        return Err("replay started beside a recorder".into());
    };
    assert!(
        exit.stderr.contains(&format!("pid {}", first.pid())),
        "{}",
        exit.stderr
    );

    // Once the first is gone, the directory is free.
    first.signal("TERM")?;
    let again = Proxy::start(&[
        "record",
        "--cassettes",
        path_str(&dir)?,
        "--upstream",
        "http://127.0.0.1:9",
    ])?;
    again.signal("TERM")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_leaves_the_cassette_directory_byte_identical() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (proxy, stand_in, dir) = forwarding("record", tmp.path(), &[]).await?;
    let client = HttpClient::new();
    client
        .assign(&proxy.base, SEED_PATH, SEED_BODY, &[])
        .await?;
    proxy.signal("TERM")?;
    stand_in.stop().await;

    let before = files_under(&dir);
    assert!(!before.is_empty());
    let proxy = Proxy::start(&[
        "replay",
        "--cassettes",
        path_str(&dir)?,
        "--cassette",
        "default",
        "--allow-misses",
        "--allow-deviations",
        "--allow-unknown-cassettes",
    ])?;
    assert_eq!(
        client
            .assign(&proxy.base, SEED_PATH, SEED_BODY, &[])
            .await?
            .status,
        204
    );
    assert_eq!(
        client
            .assign(&proxy.base, SEED_PATH, "{}", &[])
            .await?
            .status,
        501
    );
    assert_eq!(
        client
            .assign(
                &proxy.base,
                SEED_PATH,
                SEED_BODY,
                &[("x-graph-vcr-cassette", "new-one")]
            )
            .await?
            .status,
        501
    );
    let exit = proxy.signal("TERM")?;
    assert!(exit.status.success(), "{}", exit.stderr);
    assert_eq!(
        files_under(&dir),
        before,
        "replay changed the cassette directory"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_opens_no_network_connection() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("cassettes");
    // An empty cassette directory, made by a recorder that saw no traffic.
    Proxy::start(&[
        "record",
        "--cassettes",
        path_str(&dir)?,
        "--upstream",
        "http://127.0.0.1:9",
    ])?
    .signal("TERM")?;
    // A listener that would see any connection replay made to the upstream it is given.
    let trap = std::net::TcpListener::bind("127.0.0.1:0")?;
    trap.set_nonblocking(true)?;
    let upstream = format!("http://{}", trap.local_addr()?);
    let proxy = Proxy::start(&["replay", "--cassettes", path_str(&dir)?])?;
    let client = HttpClient::new();
    let r = client
        .assign(&proxy.base, SEED_PATH, SEED_BODY, &[])
        .await?;
    assert_eq!(r.status, 501);
    // replay takes no --upstream at all.
    let e = run_to_end(&[
        "replay",
        "--cassettes",
        path_str(&dir)?,
        "--upstream",
        &upstream,
    ])?;
    assert_eq!(e.status.code(), Some(2));
    assert!(e.stderr.contains("--upstream"), "{}", e.stderr);
    assert!(trap.accept().is_err(), "something connected to the trap");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_are_graph_errors_and_record_nothing() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let ca = TestCa::new()?;
    let ca_pem = ca.write_ca(tmp.path())?;
    let dir = tmp.path().join("cassettes");
    let client = HttpClient::new();

    // Refused: nothing listens on the port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let refused_url = format!("https://127.0.0.1:{}", closed.port());
    let proxy = Proxy::start(&[
        "record",
        "--cassettes",
        path_str(&dir)?,
        "--upstream",
        &refused_url,
    ])?;
    let r = client
        .assign(
            &proxy.base,
            SEED_PATH,
            SEED_BODY,
            &[("client-request-id", "cid-1")],
        )
        .await?;
    assert_eq!(r.status, 502, "{}", r.text());
    let e = r.json();
    assert_eq!(e["error"]["code"], "graphVcrUpstreamUnreachable");
    let msg = e["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        msg.contains(&refused_url) && msg.to_lowercase().contains("refused"),
        "{msg}"
    );
    assert_eq!(e["error"]["innerError"]["client-request-id"], "cid-1");
    proxy.signal("TERM")?;

    // TLS: the stand-in's certificate is signed by a CA we are not told to trust.
    let stand_in = StandIn::start(&ca).await?;
    let proxy = Proxy::start(&[
        "record",
        "--cassettes",
        path_str(&dir)?,
        "--upstream",
        &stand_in.url,
    ])?;
    let r = client
        .assign(&proxy.base, SEED_PATH, SEED_BODY, &[])
        .await?;
    assert_eq!(r.status, 502, "{}", r.text());
    let msg = r.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        msg.contains("TLS") && msg.contains("UnknownIssuer"),
        "{msg}"
    );
    proxy.signal("TERM")?;

    // Timeout: the stand-in answers /slow/ after 5 s.
    let proxy = Proxy::start(&[
        "record",
        "--cassettes",
        path_str(&dir)?,
        "--upstream",
        &stand_in.url,
        "--upstream-ca",
        path_str(&ca_pem)?,
        "--upstream-timeout",
        "300ms",
    ])?;
    let r = client
        .assign(
            &proxy.base,
            "/v1.0/deviceManagement/deviceConfigurations/slow/assign",
            "{}",
            &[],
        )
        .await?;
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "graphVcrUpstreamTimeout");
    assert!(r.text().contains(&stand_in.url), "{}", r.text());
    // The proxy keeps serving after a failure.
    assert_eq!(
        client
            .assign(&proxy.base, SEED_PATH, SEED_BODY, &[])
            .await?
            .status,
        204
    );
    let exit = proxy.signal("TERM")?;
    assert!(exit.stderr.contains("nothing recorded"), "{}", exit.stderr);
    stand_in.stop().await;

    // Of the four calls only the one that got a real answer was recorded.
    let proxy = Proxy::start(&[
        "replay",
        "--cassettes",
        path_str(&dir)?,
        "--on-exhausted",
        "miss",
    ])?;
    assert_eq!(
        client
            .assign(&proxy.base, SEED_PATH, SEED_BODY, &[])
            .await?
            .status,
        204
    );
    assert_eq!(
        client
            .assign(&proxy.base, SEED_PATH, SEED_BODY, &[])
            .await?
            .status,
        501
    );
    let slow = client
        .assign(
            &proxy.base,
            "/v1.0/deviceManagement/deviceConfigurations/slow/assign",
            "{}",
            &[],
        )
        .await?;
    assert_eq!(slow.status, 501);
    Ok(())
}

#[test]
fn bad_configuration_is_a_clear_error_before_listening() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let missing = tmp.path().join("nope");
    let e = run_to_end(&["replay", "--cassettes", path_str(&missing)?])?;
    assert_eq!(e.status.code(), Some(2));
    assert!(
        e.stderr.contains("does not exist") && e.stderr.contains(path_str(&missing)?),
        "{}",
        e.stderr
    );

    let e = run_to_end(&["replay", "--cassettes", path_str(tmp.path())?])?;
    assert!(
        e.stderr.contains("not a graph-vcr cassette directory"),
        "{}",
        e.stderr
    );

    let e = run_to_end(&["replay", "--cassette", "../x"])?;
    assert_eq!(e.status.code(), Some(2));
    assert!(e.stderr.contains("invalid cassette name"), "{}", e.stderr);

    let e = run_to_end(&[
        "record",
        "--cassettes",
        path_str(&tmp.path().join("c"))?,
        "--upstream",
        "ftp://x",
    ])?;
    assert!(e.stderr.contains("invalid --upstream"), "{}", e.stderr);

    let bad_ca = tmp.path().join("bad.pem");
    std::fs::write(&bad_ca, "not a certificate")?;
    let e = run_to_end(&[
        "record",
        "--cassettes",
        path_str(&tmp.path().join("c"))?,
        "--upstream-ca",
        path_str(&bad_ca)?,
    ])?;
    assert!(
        e.stderr.contains("--upstream-ca") && e.stderr.contains("bad.pem"),
        "{}",
        e.stderr
    );
    Ok(())
}

#[test]
fn help_explains_every_flag_with_its_environment_variable() -> TestResult {
    let e = run_to_end(&["record", "--help"])?;
    for flag in [
        "--listen",
        "--cassettes",
        "--cassette",
        "--upstream",
        "--upstream-ca",
        "--upstream-timeout",
        "--ordered-arrays",
        "--ignore-field",
        "--assign-only",
        "--record-throttling",
        "GRAPH_VCR_LISTEN",
        "GRAPH_VCR_UPSTREAM",
        "Example",
    ] {
        assert!(e.stderr.contains(flag), "record --help lacks {flag}");
    }
    let e = run_to_end(&["replay", "--help"])?;
    assert!(
        e.stderr.contains("--on-exhausted") && !e.stderr.contains("--upstream"),
        "{}",
        e.stderr
    );
    Ok(())
}

/// A replay killed with SIGKILL cannot remove its private copy of the cassettes; the next one
/// removes it, and those of other dead graph-vcr processes, and leaves live ones alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_private_copies_of_dead_replays_are_removed_at_start() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (proxy, stand_in, dir) = forwarding("record", tmp.path(), &[]).await?;
    HttpClient::new()
        .assign(&proxy.base, SEED_PATH, SEED_BODY, &[])
        .await?;
    proxy.signal("TERM")?;
    stand_in.stop().await;
    let scratch = tmp.path().join("tmp");
    std::fs::create_dir_all(&scratch)?;
    let env = [("TMPDIR", path_str(&scratch)?)];
    let copies = |pid: u32| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&scratch)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with(&format!("graph-vcr-replay-{pid}-")))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let args = ["replay", "--cassettes", path_str(&dir)?];
    let first = Proxy::start_with_env(&args, &env)?;
    let first_pid = first.pid();
    assert_eq!(copies(first_pid).len(), 1, "replay made no private copy");
    first.signal("KILL")?;
    assert_eq!(
        copies(first_pid).len(),
        1,
        "the killed replay's copy is left behind"
    );
    // Others: a dead process's wrapper scratch, a live one's copy (this test's), a stranger.
    let mine = std::process::id();
    for name in [
        "graph-vcr-wrap-2147483000".to_string(),
        format!("graph-vcr-replay-{mine}-1"),
        "graph-vcr-replay-notapid".to_string(),
    ] {
        std::fs::create_dir_all(scratch.join(&name))?;
        std::fs::write(scratch.join(&name).join("x"), b"x")?;
    }
    let second = Proxy::start_with_env(&args, &env)?;
    assert!(
        copies(first_pid).is_empty(),
        "the dead replay's copy is still there"
    );
    assert!(!scratch.join("graph-vcr-wrap-2147483000").exists());
    assert!(
        scratch.join(format!("graph-vcr-replay-{mine}-1")).exists(),
        "a live copy was removed"
    );
    assert!(scratch.join("graph-vcr-replay-notapid").exists());
    let second_pid = second.pid();
    second.signal("TERM")?;
    // A clean stop removes its copy (and if sled's threads brought a file back after it, the
    // next start removes that).
    drop(Proxy::start_with_env(&args, &env)?);
    assert!(
        copies(second_pid).is_empty(),
        "a stopped replay's copy outlived the next start"
    );
    Ok(())
}
