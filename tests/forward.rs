//! Forward-proxy mode (`--forward`): the local CA, `CONNECT` interception over h2 and
//! HTTP/1.1 with the generated CA as the client's only trust root, tunnels and refusals for
//! other hosts, plain-HTTP absolute-form requests, and where graph-vcr may connect.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;

const GRAPH: &str = "graph.microsoft.com:443";
const OTHER_PATH: &str = "/v1.0/deviceManagement/deviceEnrollmentConfigurations/b0c1d2e3-0000-4000-8000-000000000002/assign";

fn s(p: &Path) -> Result<&str, Error> {
    p.to_str().ok_or_else(|| "non-UTF-8 path".into())
}

/// The `key` of every journal line, in order.
fn journal_keys(path: &Path) -> Result<Vec<String>, Error> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l)?;
            Ok(v["key"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

#[test]
fn ca_init_makes_an_owner_only_key_and_never_overwrites_silently() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("ca");
    let pem = ca_init(&dir)?;
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key_mode = std::fs::metadata(dir.join("graph-vcr-ca.key"))?
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600, "key mode {key_mode:o}");
        let dir_mode = std::fs::metadata(&dir)?.permissions().mode();
        assert_eq!(dir_mode & 0o077, 0, "CA directory mode {dir_mode:o}");
    }
    let key = std::fs::read_to_string(dir.join("graph-vcr-ca.key"))?;
    assert!(key.contains("PRIVATE KEY"), "not a PEM key");
    assert!(
        !pem.contains("PRIVATE KEY"),
        "the certificate file holds a key"
    );

    // A second init refuses and keeps the CA clients may already trust.
    let again = run_to_end(&["ca", "init", "--ca-dir", s(&dir)?])?;
    assert_eq!(again.status.code(), Some(2), "{}", again.stderr);
    assert!(again.stderr.contains("--force"), "{}", again.stderr);
    assert_eq!(std::fs::read_to_string(dir.join("graph-vcr-ca.pem"))?, pem);

    // show: where it is, its fingerprint (checked against our own hash of the DER), trust steps.
    let shown = run_to_end(&["ca", "show", "--ca-dir", s(&dir)?])?;
    assert!(shown.status.success(), "{}", shown.stderr);
    let cert_path = dir.join("graph-vcr-ca.pem");
    assert!(shown.stderr.contains(s(&cert_path)?), "{}", shown.stderr);
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())?;
    use sha2::Digest;
    let fingerprint: Vec<String> = sha2::Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert!(
        shown.stderr.contains(&fingerprint.join(":")),
        "{}",
        shown.stderr
    );
    for needle in [
        "update-ca-certificates",
        "security add-trusted-cert",
        "certutil",
        "REQUESTS_CA_BUNDLE",
        "SSL_CERT_FILE",
        "NODE_EXTRA_CA_CERTS",
        "PowerShell",
    ] {
        assert!(
            shown.stderr.contains(needle),
            "no {needle}: {}",
            shown.stderr
        );
    }
    let pem_only = run_to_end(&["ca", "show", "--pem", "--ca-dir", s(&dir)?])?;
    assert_eq!(pem_only.stderr, pem);

    // --force replaces it with a different certificate, key still owner-only.
    let forced = run_to_end(&["ca", "init", "--force", "--ca-dir", s(&dir)?])?;
    assert!(forced.status.success(), "{}", forced.stderr);
    assert_ne!(std::fs::read_to_string(&cert_path)?, pem);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("graph-vcr-ca.key"))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    Ok(())
}

#[test]
fn forward_without_a_ca_says_to_run_ca_init() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let empty = tmp.path().join("no-ca");
    let cassettes = tmp.path().join("cassettes");
    for mode in ["record", "replay"] {
        let exit = Proxy::try_start(&[
            mode,
            "--forward",
            "--ca-dir",
            s(&empty)?,
            "--cassettes",
            s(&cassettes)?,
        ])
        .err()
        .ok_or("started without a CA")?;
        assert_eq!(exit.status.code(), Some(2), "{}", exit.stderr);
        assert!(
            exit.stderr.contains("graph-vcr ca init --ca-dir"),
            "{}",
            exit.stderr
        );
    }
    // A CA whose key is not PEM: named, with the fix.
    let broken = tmp.path().join("broken");
    ca_init(&broken)?;
    std::fs::write(broken.join("graph-vcr-ca.key"), "not a key")?;
    let exit = Proxy::try_start(&[
        "replay",
        "--forward",
        "--ca-dir",
        s(&broken)?,
        "--cassettes",
        s(&cassettes)?,
    ])
    .err()
    .ok_or("started with a broken CA")?;
    assert!(exit.stderr.contains("graph-vcr-ca.key"), "{}", exit.stderr);
    assert!(exit.stderr.contains("ca init --force"), "{}", exit.stderr);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_through_connect_replays_through_connect_and_reverse_mode() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (recorder, stand_in, dir, root) = forward_proxy("record", tmp.path(), &[]).await?;
    let ca_dir = tmp.path().join("ca");

    // HTTP/1.1 through CONNECT, the generated CA the client's only root.
    let mut h1 = connect_through(recorder.addr, GRAPH, &root, &["http/1.1"])
        .await?
        .tunnel()?;
    assert_eq!(h1.alpn, "http/1.1");
    let first = h1.assign(SEED_PATH, SDK_BODY).await?;
    assert_eq!(first.status, 204, "{}", first.text());
    assert_eq!(first.header("x-graph-vcr-outcome"), Some("recorded"));
    // h2 through CONNECT.
    let mut h2 = connect_through(recorder.addr, GRAPH, &root, &["h2", "http/1.1"])
        .await?
        .tunnel()?;
    assert_eq!(h2.alpn, "h2");
    let second = h2.assign(OTHER_PATH, SEED_BODY).await?;
    assert_eq!(second.status, 204, "{}", second.text());
    assert_eq!(second.header("x-graph-vcr-outcome"), Some("recorded"));
    // Both reached the upstream, with the client's path, token and all.
    let received = stand_in.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].path_and_query, SEED_PATH);
    assert_eq!(received[1].path_and_query, OTHER_PATH);
    assert_eq!(
        received[0]
            .headers
            .get("authorization")
            .map(|v| v.as_bytes()),
        Some(format!("Bearer {JWT}").as_bytes())
    );
    // A client that does not trust graph-vcr's CA cannot be fooled by it.
    let stranger = TestCa::new()?;
    assert!(
        connect_through(recorder.addr, GRAPH, &stranger.ca_pem, &["h2"])
            .await
            .is_err(),
        "a client trusting another root accepted graph-vcr's certificate"
    );
    drop((h1, h2));
    let exit = recorder.signal("TERM")?;
    assert!(exit.status.success(), "{}", exit.stderr);
    stand_in.stop().await;
    assert!(
        !dir_contains(&dir, JWT.as_bytes()),
        "the token reached disk"
    );
    let recorded = exported(&dir, "default")?;
    assert_eq!(recorded.len(), 2);
    let record_keys = journal_keys(&dir.join("journal.jsonl"))?;

    // Replay through CONNECT (h2, then HTTP/1.1): same answers, no upstream at all.
    let journal = tmp.path().join("replay-connect.jsonl");
    let replayer = Proxy::start(&[
        "replay",
        "--forward",
        "--ca-dir",
        s(&ca_dir)?,
        "--cassettes",
        s(&dir)?,
        "--journal",
        s(&journal)?,
    ])?;
    let mut h2 = connect_through(replayer.addr, GRAPH, &root, &["h2"])
        .await?
        .tunnel()?;
    let again = h2.assign(SEED_PATH, SDK_BODY).await?;
    assert_eq!(again.status, 204, "{}", again.text());
    assert_eq!(again.header("x-graph-vcr-outcome"), Some("replayed"));
    assert_eq!(again.header("request-id"), first.header("request-id"));
    let mut h1 = connect_through(replayer.addr, GRAPH, &root, &["http/1.1"])
        .await?
        .tunnel()?;
    let other = h1.assign(OTHER_PATH, SEED_BODY).await?;
    assert_eq!(other.header("x-graph-vcr-outcome"), Some("replayed"));
    assert_eq!(other.header("request-id"), second.header("request-id"));
    // A plain-HTTP absolute-form request to an intercepted host is the same call.
    let auth = format!("Bearer {JWT}");
    let absolute = absolute_form(
        replayer.addr,
        "POST",
        &format!("http://graph.microsoft.com{SEED_PATH}"),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        SDK_BODY,
    )
    .await?;
    assert_eq!(absolute.header("x-graph-vcr-outcome"), Some("replayed"));
    assert_eq!(absolute.header("request-id"), first.header("request-id"));
    drop((h1, h2));
    let exit = replayer.signal("TERM")?;
    assert!(exit.status.success(), "{}", exit.stderr);
    let connect_keys = journal_keys(&journal)?;
    assert_eq!(
        connect_keys,
        vec![
            record_keys[0].clone(),
            record_keys[1].clone(),
            record_keys[0].clone()
        ]
    );

    // And the same cassette replays through reverse mode, under the same key.
    let journal = tmp.path().join("replay-reverse.jsonl");
    let reverse = Proxy::start(&["replay", "--cassettes", s(&dir)?, "--journal", s(&journal)?])?;
    let r = HttpClient::new()
        .assign(&reverse.base, SEED_PATH, SDK_BODY, &[])
        .await?;
    assert_eq!(r.header("x-graph-vcr-outcome"), Some("replayed"));
    assert_eq!(r.header("request-id"), first.header("request-id"));
    reverse.signal("TERM")?;
    assert_eq!(journal_keys(&journal)?, vec![record_keys[0].clone()]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_hosts_are_tunnelled_in_record_and_audit_and_refused_in_replay_and_auto() -> TestResult
{
    let tmp = tempfile::tempdir()?;
    let tunnel_to = ["--tunnel", "localhost,127.0.0.1"];
    let (recorder, stand_in, dir, _) = forward_proxy("record", tmp.path(), &tunnel_to).await?;
    let ca_dir = tmp.path().join("ca");
    // The stand-in is not an intercepted host: the client talks TLS with it end to end and
    // sees its certificate (the test CA), not graph-vcr's.
    let test_ca = std::fs::read_to_string(tmp.path().join("ca.pem"))?;
    let target = format!("localhost:{}", stand_in.addr.port());
    let mut tunnel = connect_through(recorder.addr, &target, &test_ca, &["http/1.1"])
        .await?
        .tunnel()?;
    let r = tunnel.assign(SEED_PATH, SEED_BODY).await?;
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("x-graph-vcr-outcome"),
        None,
        "graph-vcr touched it"
    );
    assert_eq!(stand_in.received().len(), 1);
    // Plain HTTP to a host that is not intercepted is passed on in record mode.
    let plain = PlainServer::start().await?;
    let passed = absolute_form(
        recorder.addr,
        "GET",
        &format!("{}/hello", plain.url),
        &[],
        "",
    )
    .await?;
    assert_eq!(passed.status, 200);
    assert_eq!(passed.text(), "plain hello");
    drop(tunnel);
    let exit = recorder.signal("TERM")?;
    assert!(exit.stderr.contains("2 tunnelled"), "{}", exit.stderr);
    assert!(
        exported(&dir, "default")?.is_empty(),
        "a tunnel was recorded"
    );

    // Audit tunnels too (and records nothing: it has no cassette at all).
    let auditor = Proxy::start(&[
        "audit",
        "--forward",
        "--tunnel",
        "localhost",
        "--ca-dir",
        s(&ca_dir)?,
        "--upstream",
        &stand_in.url,
        "--journal",
        s(&tmp.path().join("audit.jsonl"))?,
    ])?;
    let mut tunnel = connect_through(auditor.addr, &target, &test_ca, &["http/1.1"])
        .await?
        .tunnel()?;
    assert_eq!(tunnel.assign(SEED_PATH, SEED_BODY).await?.status, 204);
    assert_eq!(stand_in.received().len(), 2);
    drop(tunnel);
    let exit = auditor.signal("TERM")?;
    assert!(exit.stderr.contains("1 tunnelled"), "{}", exit.stderr);

    // Replay and auto refuse, with a Graph-format 403, and connect nowhere.
    for mode in ["replay", "auto"] {
        let mut args = vec![
            mode,
            "--forward",
            "--ca-dir",
            s(&ca_dir)?,
            "--cassettes",
            s(&dir)?,
        ];
        let upstream = stand_in.url.clone();
        if mode == "auto" {
            args.extend(["--upstream", &upstream]);
        }
        let proxy = Proxy::start(&args)?;
        let refused = connect_through(proxy.addr, &target, &test_ca, &["http/1.1"])
            .await?
            .refused()?;
        assert_eq!(refused.status, 403, "{mode}");
        let e = refused.json();
        assert_eq!(e["error"]["code"], "graphVcrNotIntercepted", "{mode}: {e}");
        let message = e["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(&target), "{message}");
        assert!(message.contains("--intercept"), "{message}");
        let plain_refused =
            absolute_form(proxy.addr, "GET", &format!("{}/hello", plain.url), &[], "").await?;
        assert_eq!(plain_refused.status, 403, "{mode}");
        let exit = proxy.signal("TERM")?;
        assert!(exit.stderr.contains("2 refused"), "{}", exit.stderr);
    }
    assert_eq!(
        stand_in.received().len(),
        2,
        "replay or auto reached the stand-in"
    );
    assert_eq!(plain.hits(), 1, "replay or auto reached the plain server");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_destination_comes_from_the_request() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let ca_dir = tmp.path().join("ca");
    let root = ca_init(&ca_dir)?;
    // Anything connecting here was sent by a request's Host header or URI.
    let trap = std::net::TcpListener::bind("127.0.0.1:0")?;
    trap.set_nonblocking(true)?;
    let trap_addr = trap.local_addr()?.to_string();
    let auth = format!("Bearer {JWT}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        ("host", trap_addr.as_str()),
    ];

    // Reverse mode: neither Host nor an absolute URI chooses where a request goes.
    std::fs::create_dir_all(tmp.path().join("r"))?;
    let (reverse, stand_in, _) = forwarding("record", &tmp.path().join("r"), &[]).await?;
    let r = absolute_form(
        reverse.addr,
        "POST",
        &format!("http://{trap_addr}{SEED_PATH}"),
        &headers[..2],
        SEED_BODY,
    )
    .await?;
    assert_eq!(r.header("x-graph-vcr-outcome"), Some("recorded"));
    let r = HttpClient::new()
        .send(
            "POST",
            &format!("{}{OTHER_PATH}", reverse.base),
            &headers,
            SEED_BODY,
        )
        .await?;
    assert_eq!(r.header("x-graph-vcr-outcome"), Some("recorded"));
    assert_eq!(stand_in.received().len(), 2);
    // CONNECT without --forward: a clear refusal that names the flag.
    let refused = connect_through(reverse.addr, &trap_addr, &root, &["h2"])
        .await?
        .refused()?;
    assert_eq!(refused.status, 405);
    assert!(refused.text().contains("--forward"), "{}", refused.text());
    drop(reverse);

    // Forward mode: inside an intercepted tunnel, a Host header pointing elsewhere changes
    // nothing; the request goes to the intercepted host's upstream.
    std::fs::create_dir_all(tmp.path().join("f"))?;
    let (forward, stand_in, _) = forwarding(
        "record",
        &tmp.path().join("f"),
        &["--forward", "--ca-dir", s(&ca_dir)?],
    )
    .await?;
    let mut tunnel = connect_through(forward.addr, GRAPH, &root, &["http/1.1"])
        .await?
        .tunnel()?;
    let r = tunnel
        .send(
            "POST",
            SEED_PATH,
            &[headers[0], headers[1], ("x-forwarded-host", &trap_addr)],
            SEED_BODY,
        )
        .await?;
    assert_eq!(r.header("x-graph-vcr-outcome"), Some("recorded"));
    assert_eq!(stand_in.received().len(), 1);
    drop(tunnel);
    drop(forward);
    assert!(
        trap.accept().is_err(),
        "a request steered graph-vcr to the trap"
    );
    Ok(())
}

/// A plain-HTTP server on loopback that answers `plain hello` and counts requests.
struct PlainServer {
    url: String,
    hits: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl PlainServer {
    async fn start() -> Result<Self, Error> {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://127.0.0.1:{}", listener.local_addr()?.port());
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let count = std::sync::Arc::clone(&hits);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let count = std::sync::Arc::clone(&count);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_req| {
                        count.fetch_add(1, Ordering::Relaxed);
                        async {
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from_static(
                                    b"plain hello",
                                )),
                            ))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Ok(Self { url, hits, task })
    }

    fn hits(&self) -> u64 {
        self.hits.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for PlainServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_upstream_an_intercepted_host_is_reached_at_its_own_address() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let ca_dir = tmp.path().join("ca");
    let root = ca_init(&ca_dir)?;
    let test_ca = TestCa::new()?;
    let test_ca_pem = test_ca.write_ca(tmp.path())?;
    let stand_in = StandIn::start(&test_ca).await?;
    let dir = tmp.path().join("cassettes");
    // No --upstream: the CONNECT target itself is the destination, because it is intercepted.
    let recorder = Proxy::start(&[
        "record",
        "--forward",
        "--intercept",
        "localhost",
        "--ca-dir",
        s(&ca_dir)?,
        "--upstream-ca",
        s(&test_ca_pem)?,
        "--cassettes",
        s(&dir)?,
    ])?;
    let target = format!("localhost:{}", stand_in.addr.port());
    let mut tunnel = connect_through(recorder.addr, &target, &root, &["h2"])
        .await?
        .tunnel()?;
    let r = tunnel.assign(SEED_PATH, SEED_BODY).await?;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(r.header("x-graph-vcr-outcome"), Some("recorded"));
    assert_eq!(stand_in.received().len(), 1);
    drop(tunnel);
    recorder.signal("TERM")?;
    let recorded = exported(&dir, "default")?;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0]["upstream"], format!("https://{target}"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_calls_inside_tunnels_and_does_not_wait_for_idle_tunnels() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (proxy, stand_in, _, root) =
        forward_proxy("record", tmp.path(), &["--tunnel", "localhost"]).await?;
    // An idle tunnel to a host that is not intercepted.
    let test_ca = std::fs::read_to_string(tmp.path().join("ca.pem"))?;
    let target = format!("localhost:{}", stand_in.addr.port());
    let idle = connect_through(proxy.addr, &target, &test_ca, &["http/1.1"])
        .await?
        .tunnel()?;
    // A call in flight inside an intercepted tunnel: the stand-in answers /slow/ after 5 s.
    let mut tunnel = connect_through(proxy.addr, GRAPH, &root, &["h2"])
        .await?
        .tunnel()?;
    // The client keeps its connection open afterwards: graph-vcr must close it gracefully.
    let slow = tokio::spawn(async move {
        let r = tunnel
            .assign(
                "/v1.0/deviceManagement/deviceConfigurations/slow/assign",
                r#"{"assignments":[]}"#,
            )
            .await;
        (tunnel, r)
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    let exit = tokio::task::spawn_blocking(move || proxy.signal("TERM")).await??;
    let (kept_open, answered) = slow.await?;
    let answered = answered?;
    assert_eq!(answered.status, 200, "cut off: {}", answered.text());
    assert_eq!(answered.header("x-graph-vcr-outcome"), Some("recorded"));
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_secs(3),
        "exited before the call finished"
    );
    // The grace period is 10 s: an idle tunnel holding shutdown would take that long.
    assert!(
        took < std::time::Duration::from_secs(9),
        "shutdown waited {took:?}"
    );
    assert!(exit.status.success(), "{}", exit.stderr);
    drop((idle, kept_open));
    stand_in.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_tunnel_counts_against_max_connections() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (proxy, stand_in, _, root) = forward_proxy(
        "record",
        tmp.path(),
        &["--max-connections", "1", "--tunnel", "localhost"],
    )
    .await?;
    let mut first = connect_through(proxy.addr, GRAPH, &root, &["http/1.1"])
        .await?
        .tunnel()?;
    assert_eq!(first.assign(SEED_PATH, SEED_BODY).await?.status, 204);
    // The CONNECT was answered long ago, but the tunnel still holds the only slot.
    let waiting = tokio::spawn({
        let (addr, root) = (proxy.addr, root.clone());
        async move { connect_through(addr, GRAPH, &root, &["h2"]).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert!(
        !waiting.is_finished(),
        "a second connection was served beside the tunnel"
    );
    drop(first);
    let mut second = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
        .await???
        .tunnel()?;
    assert_eq!(second.assign(OTHER_PATH, SEED_BODY).await?.status, 204);
    assert_eq!(stand_in.received().len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tunnel_is_closed_after_the_idle_timeout() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (proxy, stand_in, _, _) = forward_proxy(
        "record",
        tmp.path(),
        &["--idle-timeout", "1s", "--tunnel", "localhost"],
    )
    .await?;
    let test_ca = std::fs::read_to_string(tmp.path().join("ca.pem"))?;
    let target = format!("localhost:{}", stand_in.addr.port());
    let mut tunnel = connect_through(proxy.addr, &target, &test_ca, &["http/1.1"])
        .await?
        .tunnel()?;
    assert_eq!(tunnel.assign(SEED_PATH, SEED_BODY).await?.status, 204);
    // Silent for longer than --idle-timeout: graph-vcr closes the tunnel.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert!(
        tunnel.assign(SEED_PATH, SEED_BODY).await.is_err(),
        "the idle tunnel was still open"
    );
    assert_eq!(stand_in.received().len(), 1);
    Ok(())
}

/// Record as HTTPS_PROXY is no open proxy: by default it tunnels only to the Entra sign-in
/// hosts, to loopback only when it is named, never to itself; a refusal fails the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_go_only_where_the_tunnel_list_allows() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (recorder, stand_in, _, _) = forward_proxy("record", tmp.path(), &[]).await?;
    let test_ca = std::fs::read_to_string(tmp.path().join("ca.pem"))?;
    let local = format!("localhost:{}", stand_in.addr.port());
    let refused = connect_through(recorder.addr, &local, &test_ca, &["http/1.1"])
        .await?
        .refused()?;
    assert_eq!(refused.status, 403);
    let message = refused.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("not on the tunnel list") && message.contains("login.microsoftonline.com"),
        "{message}"
    );
    let exit = recorder.signal("TERM")?;
    assert_eq!(
        exit.status.code(),
        Some(1),
        "a refused tunnel fails the run: {}",
        exit.stderr
    );
    assert!(exit.stderr.contains("1 refused"), "{}", exit.stderr);

    // `*` allows public hosts, not loopback; naming 127.0.0.1 allows it, but not graph-vcr.
    let ca_dir = tmp.path().join("ca");
    for (list, target_is_self, why) in [
        ("*", false, "loopback, link-local or private"),
        ("127.0.0.1", true, "graph-vcr itself"),
    ] {
        let proxy = Proxy::start(&[
            "record",
            "--forward",
            "--ca-dir",
            s(&ca_dir)?,
            "--tunnel",
            list,
            "--upstream",
            &stand_in.url,
            "--cassettes",
            s(&tmp.path().join(format!("c-{target_is_self}")))?,
        ])?;
        let target = if target_is_self {
            format!("127.0.0.1:{}", proxy.addr.port())
        } else {
            format!("127.0.0.1:{}", stand_in.addr.port())
        };
        let refused = connect_through(proxy.addr, &target, &test_ca, &["http/1.1"])
            .await?
            .refused()?;
        let message = refused.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(message.contains(why), "{list}: {message}");
        drop(proxy);
    }
    stand_in.stop().await;
    Ok(())
}
