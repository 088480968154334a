//! `graph-vcr <mode> -- COMMAND`: the proxy starts, the command runs against it with
//! `GRAPH_VCR_URL`, and the exit status is the command's when it failed, else the verdict.
//! The commands are real clients: Python's standard library over real sockets.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

/// A Python client that POSTs `body` to the seed path under `$GRAPH_VCR_URL` and exits 0
/// whatever the status (so that only the verdict can fail the run), after writing the status
/// to `mark`.
fn client_script(body: &str, mark: &Path) -> Result<String, Error> {
    Ok(format!(
        r#"
import os, urllib.request, urllib.error
req = urllib.request.Request(os.environ["GRAPH_VCR_URL"] + "{SEED_PATH}", data={body:?}.encode(),
    headers={{"Authorization": "Bearer t", "Content-Type": "application/json"}}, method="POST")
try:
    status = urllib.request.urlopen(req).status
except urllib.error.HTTPError as e:
    status = e.code
open({mark:?}, "w").write(str(status))
"#,
        mark = s(mark)?
    ))
}

/// Runs `graph-vcr ARGS` to the end and returns (exit code, stderr).
fn wrapper(args: &[&str]) -> Result<(Option<i32>, String), Error> {
    let out = Command::new(binary()).args(args).output()?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

async fn recorded(tmp: &Path) -> Result<std::path::PathBuf, Error> {
    let (proxy, stand_in, dir) = forwarding("record", tmp, &[]).await?;
    let r = HttpClient::new()
        .assign(&proxy.base, SEED_PATH, SEED_BODY, &[])
        .await?;
    assert_eq!(r.status, 204);
    proxy.signal("TERM")?;
    stand_in.stop().await;
    Ok(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrapper_exits_with_the_commands_failure_or_the_verdict() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = recorded(tmp.path()).await?;
    let mark = tmp.path().join("status");
    let replay = ["replay", "--cassettes", s(&dir)?];

    // A command whose call replays: 0, and the report is written.
    let junit = tmp.path().join("junit.xml");
    let script = client_script(SEED_BODY, &mark)?;
    let mut args = replay.to_vec();
    args.extend(["--report-junit", s(&junit)?, "--", "python3", "-c", &script]);
    let (code, err) = wrapper(&args)?;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(std::fs::read_to_string(&mark)?, "204");
    assert!(err.contains("result: passed"), "{err}");
    assert!(std::fs::read_to_string(&junit)?.contains("<testcase"));

    // A command whose call misses, and that exits 0 itself: the verdict, 1.
    let changed = SEED_BODY.replace("Collection Id value", "never-recorded");
    let script = client_script(&changed, &mark)?;
    let mut args = replay.to_vec();
    args.extend(["--", "python3", "-c", &script]);
    let (code, err) = wrapper(&args)?;
    assert_eq!(std::fs::read_to_string(&mark)?, "501");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("1 request(s) missed"), "{err}");

    // A command that fails on its own: its status, even though the verdict passes.
    let mut args = replay.to_vec();
    args.extend(["--", "sh", "-c", "exit 3"]);
    let (code, err) = wrapper(&args)?;
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("result: passed"), "{err}");

    // A command killed by a signal: 128 + the signal, as a shell reports it.
    let mut args = replay.to_vec();
    args.extend(["--", "sh", "-c", "kill -TERM $$"]);
    let (code, err) = wrapper(&args)?;
    assert_eq!(code, Some(128 + 15), "{err}");
    Ok(())
}

/// The wrapper's exit status within `limit`, or the failure of the test: a wrapper that died
/// without passing a signal on leaves its command running, holding the pipes, so waiting for
/// its output would never end.
fn exit_within(child: &mut std::process::Child, limit: std::time::Duration) -> Result<i32, Error> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return status
                .code()
                .ok_or_else(|| format!("the wrapper was ended by a signal: {status:?}").into());
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!("the wrapper had not exited after {limit:?}").into());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A shell script that does `first`, then waits (20 s at most, so nothing is left behind) for
/// SIGTERM, on which it writes "term" to `mark` and exits 7.
fn on_term_exit_7(mark: &Path, first: &str) -> Result<String, Error> {
    Ok(format!(
        "trap 'echo term > {}; exit 7' TERM; {first}; i=0; while [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done",
        s(mark)?
    ))
}

/// `graph-vcr replay` on `dir` wrapping `sh -c script`; stdout as `out`, stderr piped.
fn replay_wrapping(
    dir: &Path,
    script: &str,
    out: std::process::Stdio,
) -> Result<std::process::Child, Error> {
    Ok(Command::new(binary())
        .args(["replay", "--cassettes", s(dir)?, "--", "sh", "-c", script])
        .stdout(out)
        .stderr(std::process::Stdio::piped())
        .spawn()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_the_moment_the_command_starts_is_passed_on() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = recorded(tmp.path()).await?;
    let mark = tmp.path().join("got-term");
    // The command's first act is to signal the wrapper, its parent: the signal arrives as
    // soon after the command starts as it can. At most 20 s of looping, so a wrapper that
    // did not pass it on leaves nothing behind.
    let script = on_term_exit_7(&mark, "kill -TERM $PPID")?;
    for _ in 0..5 {
        let _ = std::fs::remove_file(&mark);
        let mut child = replay_wrapping(&dir, &script, std::process::Stdio::null())?;
        let code = exit_within(&mut child, std::time::Duration::from_secs(30))?;
        assert_eq!(code, 7, "the command's status, as the signal ended it");
        assert_eq!(std::fs::read_to_string(&mark)?.trim(), "term");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_reach_the_command_and_a_proxy_that_cannot_start_runs_nothing() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = recorded(tmp.path()).await?;
    let mark = tmp.path().join("got-term");

    // SIGTERM to the wrapper is passed on; the command's own exit status comes back.
    let script = on_term_exit_7(&mark, "echo started")?;
    let mut child = replay_wrapping(&dir, &script, std::process::Stdio::piped())?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    // "listening on …" from the proxy, then "started" from the command.
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line?;
        let started = line == "started";
        seen.push(line);
        if started {
            break;
        }
    }
    assert!(
        seen.iter()
            .any(|l| l.starts_with("listening on http://127.0.0.1:")),
        "{seen:?}"
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    let code = exit_within(&mut child, std::time::Duration::from_secs(30));
    let mut err = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        std::io::Read::read_to_string(&mut stderr, &mut err)?;
    }
    assert_eq!(code?, 7, "{err}");
    assert_eq!(std::fs::read_to_string(&mark)?.trim(), "term");

    // A proxy that cannot start: exit 2, the reason, and the command never ran.
    let ran = tmp.path().join("ran");
    let (code, err) = wrapper(&[
        "replay",
        "--cassettes",
        s(&tmp.path().join("nosuch"))?,
        "--",
        "sh",
        "-c",
        &format!("touch {}", s(&ran)?),
    ])?;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    assert!(
        !ran.exists(),
        "the command ran although the proxy did not start"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_forward_the_command_gets_the_proxy_and_a_ca_bundle() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = recorded(tmp.path()).await?;
    let ca_dir = tmp.path().join("ca");
    let root = ca_init(&ca_dir)?;
    let env_file = tmp.path().join("env");
    let script = format!(
        "env | grep -E '^(GRAPH_VCR_URL|HTTPS_PROXY|https_proxy|SSL_CERT_FILE|REQUESTS_CA_BUNDLE|NODE_EXTRA_CA_CERTS|CURL_CA_BUNDLE)=' > {0}; cat \"$SSL_CERT_FILE\" >> {0}",
        s(&env_file)?
    );
    let (code, err) = wrapper(&[
        "replay",
        "--cassettes",
        s(&dir)?,
        "--forward",
        "--ca-dir",
        s(&ca_dir)?,
        "--",
        "sh",
        "-c",
        &script,
    ])?;
    assert_eq!(code, Some(0), "{err}");
    let seen = std::fs::read_to_string(&env_file)?;
    let url = seen
        .lines()
        .find_map(|l| l.strip_prefix("GRAPH_VCR_URL="))
        .ok_or("no GRAPH_VCR_URL")?;
    assert!(url.starts_with("http://127.0.0.1:"), "{seen}");
    for var in ["HTTPS_PROXY", "https_proxy"] {
        assert!(seen.contains(&format!("{var}={url}\n")), "{var}: {seen}");
    }
    for var in graph_vcr::wrap::CA_VARIABLES {
        assert!(seen.contains(&format!("{var}=")), "{var}: {seen}");
    }
    // The bundle ends with graph-vcr's CA, after the system's roots.
    assert!(seen.trim_end().ends_with(root.trim_end()), "{seen}");
    assert!(
        seen.matches("BEGIN CERTIFICATE").count() > 1,
        "no system roots in the bundle"
    );
    Ok(())
}
