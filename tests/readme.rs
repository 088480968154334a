//! The README's promises, checked against the README itself: its run command serves the bundled
//! example cassette, its curl gets 204, and the cassette directory is left as it was.

mod common;

use common::*;

fn readme() -> Result<String, Error> {
    Ok(std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/README.md"
    ))?)
}

/// The arguments after `--` of the README's `cargo run --release -- replay ...` line.
fn run_command_args(readme: &str) -> Result<Vec<String>, Error> {
    let line = readme
        .lines()
        .find(|l| l.starts_with("cargo run --release -- replay"))
        .ok_or("README has no `cargo run --release -- replay` line")?;
    let (_, args) = line
        .split_once(" -- ")
        .ok_or("no `--` in the run command")?;
    Ok(args.split_whitespace().map(str::to_string).collect())
}

/// (URL path, body) of the README's curl example.
fn curl_example(readme: &str) -> Result<(String, String), Error> {
    let start = readme
        .find("curl -i -X POST ")
        .ok_or("README has no curl example")?;
    let block = &readme[start..];
    let block = &block[..block.find("```").ok_or("unterminated block")?];
    let url = block.split_whitespace().nth(4).ok_or("no URL")?;
    let path = url
        .strip_prefix("http://127.0.0.1:8080")
        .ok_or("URL is not the default listen address")?;
    let body_start = block.find("-d '").ok_or("no -d body")? + 4;
    let body = &block[body_start..];
    let body = &body[..body.find('\'').ok_or("unterminated body")?];
    Ok((path.to_string(), body.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_run_command_serves_the_example_cassette_to_the_readme_curl() -> TestResult {
    let readme = readme()?;
    let args = run_command_args(&readme)?;
    assert_eq!(args.first().map(String::as_str), Some("replay"));
    let (path, body) = curl_example(&readme)?;

    let cassettes = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cassettes");
    let before = files_under(&cassettes);
    // Tests run in the package root, which is where the README's command is run from.
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let proxy = Proxy::start(&arg_refs)?;
    let client = HttpClient::new();
    let r = client
        .send(
            "POST",
            &format!("{}{path}", proxy.base),
            &[
                ("authorization", "Bearer any-token"),
                ("content-type", "application/json"),
            ],
            &body,
        )
        .await?;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(r.header("x-graph-vcr-outcome"), Some("replayed"));
    assert!(r.body.is_empty());

    // The README also says: change the collection and the miss shows the difference.
    let changed = body.replace("Collection Id value", "Something else");
    let miss = client
        .send(
            "POST",
            &format!("{}{path}", proxy.base),
            &[("content-type", "application/json")],
            &changed,
        )
        .await?;
    assert_eq!(miss.status, 501);
    assert!(miss.text().contains("collectionId"), "{}", miss.text());

    // A run with a miss fails at shutdown, so CI notices.
    let exit = proxy.signal("TERM")?;
    assert_eq!(exit.status.code(), Some(1), "{}", exit.stderr);
    assert!(
        exit.stderr.contains("result: failed: 1 request(s) missed"),
        "{}",
        exit.stderr
    );
    assert_eq!(
        files_under(&cassettes),
        before,
        "replay changed the bundled cassette"
    );
    Ok(())
}

#[test]
fn ci_runs_exactly_the_readme_test_command() -> TestResult {
    let readme = readme()?;
    let test_command = readme
        .lines()
        .find(|l| l.starts_with("cargo test"))
        .ok_or("README has no cargo test line")?;
    let ci = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/run"))?;
    assert!(
        ci.lines().any(|l| l.trim() == test_command),
        ".ci/run lacks `{test_command}`"
    );
    Ok(())
}

/// The shell lines of the README job's `run: |` step named `name`.
fn ci_step(readme: &str, name: &str) -> Result<String, Error> {
    let start = readme
        .find("```yaml\njobs:")
        .ok_or("README has no CI job")?;
    let job = &readme[start..];
    let job = &job[..job[7..].find("```").ok_or("unterminated job")? + 7];
    let mut lines = job
        .lines()
        .skip_while(|l| !l.contains(&format!("name: {name}")));
    lines.next().ok_or_else(|| format!("no step {name:?}"))?;
    // Keys of the step before its `run` (`if: always()`), then the block.
    let run = lines
        .by_ref()
        .find(|l| l.trim_start().starts_with("run:"))
        .ok_or("step without run")?;
    if run.trim() != "run: |" {
        return Err(format!("step {name:?} is not a `run: |` block: {run}").into());
    }
    let indent = |l: &str| l.len() - l.trim_start().len();
    let body: Vec<&str> = lines.take_while(|l| indent(l) > indent(run)).collect();
    Ok(body.iter().map(|l| l.trim()).collect::<Vec<_>>().join("\n"))
}

/// Runs `script` with sh in `dir`, graph-vcr first on the PATH.
fn sh(dir: &std::path::Path, script: &str, summary: &std::path::Path) -> Result<Exit, Error> {
    let bin = std::path::Path::new(binary())
        .parent()
        .ok_or("binary has no directory")?;
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("sh")
        .args(["-ec", script])
        .current_dir(dir)
        .env("PATH", path)
        .env("GITHUB_STEP_SUMMARY", summary)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Ok(Exit {
        status: out.status,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned() + &stdout,
        stdout,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_ci_job_runs_as_written_and_its_status_is_the_verdict() -> TestResult {
    let readme = readme()?;
    let tests = ci_step(&readme, "Integration tests under graph-vcr")?;
    let summary_step = ci_step(&readme, "Job summary")?;
    assert!(tests.contains("-- ./run-integration-tests.sh"), "{tests}");

    // A project laid out as the job expects: committed exports and a test script.
    let tmp = tempfile::tempdir()?;
    let project = tmp.path().join("project");
    let (proxy, stand_in, recorded) =
        forwarding("record", tmp.path(), &["--cassette", "onboarding"]).await?;
    let r = HttpClient::new()
        .assign(&proxy.base, SEED_PATH, SEED_BODY, &[])
        .await?;
    assert_eq!(r.status, 204);
    proxy.signal("TERM")?;
    stand_in.stop().await;
    let exports = project.join("tests/cassettes");
    export_all(&recorded, &exports)?;
    let write_script = |body: &str| -> TestResult {
        let script = project.join("run-integration-tests.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nexec python3 -c '\nimport os, sys, urllib.request, urllib.error\nreq = urllib.request.Request(os.environ[\"GRAPH_VCR_URL\"] + \"{SEED_PATH}\", data=sys.argv[1].encode(), headers={{\"Authorization\": \"Bearer t\", \"Content-Type\": \"application/json\"}}, method=\"POST\")\ntry:\n    urllib.request.urlopen(req)\nexcept urllib.error.HTTPError as e:\n    print(\"graph call failed:\", e.code)\n' '{}'\n",
                body.replace('\n', " ")
            ),
        )?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
        }
        Ok(())
    };
    let summary = tmp.path().join("step-summary.md");

    // The suite makes the recorded call: the step passes, the summary step publishes.
    write_script(SEED_BODY)?;
    let e = sh(&project, &tests, &summary)?;
    assert_eq!(e.status.code(), Some(0), "{}", e.stderr);
    let e = sh(&project, &summary_step, &summary)?;
    assert!(e.status.success(), "{}", e.stderr);
    assert!(std::fs::read_to_string(&summary)?.contains("✅ passed"));
    assert!(project.join("out/graph-vcr.xml").is_file());
    assert!(project.join("out/journal.jsonl").is_file());

    // The suite's call changed: the script itself exits 0, the step fails on the verdict.
    write_script(&SEED_BODY.replace("Collection Id value", "changed"))?;
    let e = sh(&project, &tests, &summary)?;
    assert_eq!(e.status.code(), Some(1), "{}", e.stderr);
    assert!(e.stderr.contains("1 request(s) missed"), "{}", e.stderr);
    Ok(())
}
