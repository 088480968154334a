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
