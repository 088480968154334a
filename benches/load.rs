//! Load benchmark: graph-vcr replaying beside a bare hyper server, same machine, same run.
//!
//! `cargo bench --bench load -- [--interactions N] [--connections C] [--seconds S] [--rounds R]`
//!
//! Builds a cassette of N seed-style interactions, starts a bare hyper server that answers
//! every request 204 (this same binary, re-executed with `--bare-server`) and the real
//! `graph-vcr replay`, drives each with C keep-alive connections for S seconds, cycling through
//! the N distinct bodies, and prints throughput, p50/p99 latency, the ratio, graph-vcr's
//! time to first response and its resident memory after the run. It alternates R rounds
//! (default 3) of bare then graph-vcr and reports the median ratio. The rounds start once
//! graph-vcr has indexed its cassette (src/index.rs), and the time that took is printed too:
//! from then on every stored call is known, so a first call costs what a repeated one does.
//!
//! `-- --record [--connections C] [--seconds S]` measures record mode instead: the bare server
//! is the upstream, driven once directly and once through `graph-vcr record` (which stores
//! every call durably before answering), and through `graph-vcr audit` (which forwards and
//! journals but stores nothing), and the benchmark prints the latency each call gains.

mod common;

use bytes::Bytes;
use graph_vcr::cassette::{Access, Store};
use graph_vcr::export;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Error> {
    if std::env::args().any(|a| a == "--bare-server") {
        return common::bare_server("127.0.0.1:0");
    }
    if let Some(upstream) = std::env::args().skip_while(|a| a != "--bare-proxy").nth(1) {
        return bare_proxy(upstream);
    }
    let n = arg("--interactions", 1_000);
    let connections = arg("--connections", 32);
    let seconds = arg("--seconds", 5) as u64;
    if std::env::args().any(|a| a == "--record") {
        return record(n, connections, seconds);
    }

    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("cassettes");
    let built = Instant::now();
    {
        let store = Store::open(&dir, Access::ReadWrite)?;
        export::import(&store, common::document(n), None, false, "bench")?;
    }
    eprintln!(
        "built a cassette of {n} interactions in {:?}",
        built.elapsed()
    );

    let bodies: Arc<Vec<Bytes>> = Arc::new((0..n).map(|i| Bytes::from(common::body(i))).collect());
    let rt = tokio::runtime::Runtime::new()?;

    let (mut bare, bare_addr) = spawn(Command::new(std::env::current_exe()?).arg("--bare-server"))?;
    let started = Instant::now();
    let (mut vcr, vcr_addr) = spawn(Command::new(env!("CARGO_BIN_EXE_graph-vcr")).args([
        "replay",
        "--cassettes",
        dir.to_str().ok_or("path")?,
        "--cassette",
        "bench",
        "--listen",
        "127.0.0.1:0",
        "--log",
        "error",
        "--allow-misses",
    ]))?;
    let first = rt.block_on(first_response(vcr_addr, bodies[0].clone()))?;
    let first_after = started.elapsed();
    let rss_at_start = common::rss(vcr.id());
    if first != 204 {
        return Err(format!("graph-vcr answered {first} to the first request").into());
    }
    // Measure the steady state: replay indexes its cassettes in the background after it
    // starts listening (see src/index.rs), which would otherwise share the first round's CPU.
    let indexed = wait_for_index(&vcr, started)?;
    let rss_indexed = common::rss(vcr.id());
    let misses = arg("--misses", 0);
    if misses > 0 {
        // Distinct requests the cassette has no recording for: each explained with its
        // nearest recording (src/nearest.rs); the first summarises the cassette.
        let miss = |i: usize| Bytes::from(common::body(n + 1_000_000 + i));
        let t = Instant::now();
        let status = rt.block_on(first_response(vcr_addr, miss(0)))?;
        let first_miss = t.elapsed();
        let t = Instant::now();
        for i in 1..=misses {
            rt.block_on(first_response(vcr_addr, miss(i)))?;
        }
        let rest = t.elapsed();
        println!(
            "misses on {n} recordings: the first (status {status}) {first_miss:?}; then {misses} in {rest:?}: {:.0} misses/s; resident memory after: {}",
            misses as f64 / rest.as_secs_f64(),
            common::rss(vcr.id())
        );
        let _ = bare.kill();
        let _ = vcr.kill();
        return Ok(());
    }

    // Alternate rounds (bare, then graph-vcr) and report the median ratio: this machine's
    // throughput drifts by ±15% over tens of seconds, which one pair of runs cannot separate
    // from a real difference.
    let duration = Duration::from_secs(seconds);
    let mut rounds = Vec::new();
    for _ in 0..arg("--rounds", 3).max(1) {
        let bare_result =
            rt.block_on(load(bare_addr, connections, duration, Arc::clone(&bodies)))?;
        let vcr_result = rt.block_on(load(vcr_addr, connections, duration, Arc::clone(&bodies)))?;
        rounds.push((bare_result, vcr_result));
    }
    let rss_after = common::rss(vcr.id());
    let _ = bare.kill();
    let _ = vcr.kill();

    println!("interactions: {n}, connections: {connections}, seconds: {seconds} per run");
    println!(
        "{:<8} {:<20} {:>12} {:>10} {:>10} {:>8}",
        "round", "server", "requests/s", "p50 (µs)", "p99 (µs)", "errors"
    );
    let mut ratios = Vec::new();
    let mut p99_diffs = Vec::new();
    for (i, (bare_result, vcr_result)) in rounds.iter().enumerate() {
        for (name, r) in [
            ("bare hyper (204)", bare_result),
            ("graph-vcr replay", vcr_result),
        ] {
            println!(
                "{:<8} {name:<20} {:>12.0} {:>10} {:>10} {:>8}",
                i + 1,
                r.rate,
                r.p50,
                r.p99,
                r.errors
            );
        }
        ratios.push(100.0 * vcr_result.rate / bare_result.rate.max(1.0));
        p99_diffs.push(vcr_result.p99 as i64 - bare_result.p99 as i64);
    }
    ratios.sort_by(f64::total_cmp);
    p99_diffs.sort_unstable();
    println!(
        "ratio graph-vcr / bare: median {:.1}% (rounds: {})",
        ratios[ratios.len() / 2],
        ratios
            .iter()
            .map(|r| format!("{r:.1}%"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "p99 difference: median {} µs (rounds: {})",
        p99_diffs[p99_diffs.len() / 2],
        p99_diffs
            .iter()
            .map(|d| format!("{d} µs"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "graph-vcr first response after start: {first_after:?}; every recording indexed after: {indexed:?}"
    );
    println!(
        "graph-vcr resident memory: {rss_at_start} after the first response, {rss_indexed} once indexed, {rss_after} after the run"
    );
    Ok(())
}

/// Waits until graph-vcr's indexing thread (`graph-vcr-index`, see src/index.rs) has
/// exited, as /proc shows its threads; the time since `started`.
fn wait_for_index(vcr: &Child, started: Instant) -> Result<Duration, Error> {
    let tasks = format!("/proc/{}/task", vcr.id());
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let indexing = std::fs::read_dir(&tasks)?.flatten().any(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|name| name.trim() == "graph-vcr-index")
        });
        if !indexing {
            return Ok(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err("graph-vcr did not finish indexing in 120 s".into())
}

/// Record mode's cost per call: the same load straight to the upstream and through
/// `graph-vcr record` to it.
fn record(n: usize, connections: usize, seconds: u64) -> Result<(), Error> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("cassettes");
    let bodies: Arc<Vec<Bytes>> = Arc::new((0..n).map(|i| Bytes::from(common::body(i))).collect());
    let rt = tokio::runtime::Runtime::new()?;
    let (mut bare, bare_addr) = spawn(Command::new(std::env::current_exe()?).arg("--bare-server"))?;
    let upstream = format!("http://{bare_addr}");
    let forwarding = |mode: &str, dir: &std::path::Path| {
        let dir = dir.to_str().ok_or("path")?;
        spawn(Command::new(env!("CARGO_BIN_EXE_graph-vcr")).args([
            mode,
            "--cassettes",
            dir,
            "--cassette",
            "bench",
            "--upstream",
            &upstream,
            "--listen",
            "127.0.0.1:0",
            "--log",
            "error",
        ]))
    };
    let (mut vcr, vcr_addr) = forwarding("record", &dir)?;
    // A bare hyper proxy (server and pooled client, nothing else) is what any forwarding proxy
    // pays on this machine: on loopback, with the load generator and the upstream sharing two
    // cores, every extra hop costs the others CPU.
    let (mut proxy, proxy_addr) = spawn(
        Command::new(std::env::current_exe()?)
            .arg("--bare-proxy")
            .arg(&upstream),
    )?;
    // Audit forwards and journals like record but stores nothing: the gap between it and the
    // upstream is the cost of being a proxy at all, the gap between it and record is the cost
    // of recording.
    let (mut audit, audit_addr) = forwarding("audit", &tmp.path().join("audit"))?;
    let duration = Duration::from_secs(seconds);
    let direct = rt.block_on(load(bare_addr, connections, duration, Arc::clone(&bodies)))?;
    let proxied = rt.block_on(load(proxy_addr, connections, duration, Arc::clone(&bodies)))?;
    let audited = rt.block_on(load(audit_addr, connections, duration, Arc::clone(&bodies)))?;
    let through = rt.block_on(load(vcr_addr, connections, duration, Arc::clone(&bodies)))?;
    let _ = vcr.kill();
    let _ = audit.kill();
    let _ = proxy.kill();
    let _ = bare.kill();
    println!(
        "record mode: {n} distinct calls cycled, connections: {connections}, seconds: {seconds}"
    );
    println!(
        "{:<34} {:>12} {:>10} {:>10} {:>10} {:>8}",
        "path", "requests/s", "mean (µs)", "p50 (µs)", "p99 (µs)", "errors"
    );
    for (name, r) in [
        ("upstream directly", &direct),
        ("through a bare hyper proxy", &proxied),
        ("through graph-vcr audit", &audited),
        ("through graph-vcr record", &through),
    ] {
        println!(
            "{name:<34} {:>12.0} {:>10.0} {:>10} {:>10} {:>8}",
            r.rate,
            connections as f64 * 1e6 / r.rate.max(1.0),
            r.p50,
            r.p99,
            r.errors
        );
    }
    for (name, r) in [
        ("a bare hyper proxy", &proxied),
        ("audit", &audited),
        ("record", &through),
    ] {
        println!(
            "{name} adds per call: mean {:.0} µs, p50 {} µs, p99 {} µs",
            connections as f64 * 1e6 / r.rate.max(1.0)
                - connections as f64 * 1e6 / direct.rate.max(1.0),
            r.p50 as i64 - direct.p50 as i64,
            r.p99 as i64 - direct.p99 as i64
        );
    }
    Ok(())
}

/// Starts a server process and waits for its `listening on http://ADDR` line.
fn spawn(cmd: &mut Command) -> Result<(Child, std::net::SocketAddr), Error> {
    spawn_with(cmd, Stdio::inherit())
}

/// [`spawn`], with stderr going to `stderr` ([`Stdio::piped`] to read its log).
fn spawn_with(cmd: &mut Command, stderr: Stdio) -> Result<(Child, std::net::SocketAddr), Error> {
    let mut child = cmd.stdout(Stdio::piped()).stderr(stderr).spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .ok_or(format!("unexpected {line:?}"))?
        .parse()?;
    Ok((child, addr))
}

fn request(
    addr: std::net::SocketAddr,
    body: Bytes,
) -> Result<http::Request<Full<Bytes>>, http::Error> {
    http::Request::post(format!("http://{addr}{}", common::PATH))
        .header("host", addr.to_string())
        .header(
            "authorization",
            "Bearer eyJ0eXAiOiJKV1QifQ.eyJhdWQiOiJiZW5jaCJ9.c2ln",
        )
        .header("content-type", "application/json")
        .body(Full::new(body))
}

async fn first_response(addr: std::net::SocketAddr, body: Bytes) -> Result<u16, Error> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let r = send.send_request(request(addr, body)?).await?;
    Ok(r.status().as_u16())
}

struct Outcome {
    rate: f64,
    p50: u64,
    p99: u64,
    errors: u64,
}

async fn load(
    addr: std::net::SocketAddr,
    connections: usize,
    duration: Duration,
    bodies: Arc<Vec<Bytes>>,
) -> Result<Outcome, Error> {
    // Warm up connections and caches for a second, then measure.
    let _ = run(
        addr,
        connections,
        Duration::from_secs(1),
        Arc::clone(&bodies),
    )
    .await?;
    let start = Instant::now();
    let (mut latencies, errors) = run(addr, connections, duration, bodies).await?;
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    Ok(Outcome {
        rate: latencies.len() as f64 / elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
        errors,
    })
}

async fn run(
    addr: std::net::SocketAddr,
    connections: usize,
    duration: Duration,
    bodies: Arc<Vec<Bytes>>,
) -> Result<(Vec<u64>, u64), Error> {
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let bodies = Arc::clone(&bodies);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
                return (latencies, 1);
            };
            let _ = stream.set_nodelay(true);
            let Ok((mut send, conn)) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
            else {
                return (latencies, 1);
            };
            tokio::spawn(conn);
            let mut i = c;
            while Instant::now() < deadline {
                let Ok(req) = request(addr, bodies[i % bodies.len()].clone()) else {
                    break;
                };
                i += connections;
                let t = Instant::now();
                match send.send_request(req).await {
                    Ok(r) if r.status().as_u16() == 204 => {
                        let _ = r.into_body().collect().await;
                        latencies.push(t.elapsed().as_micros() as u64);
                    }
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        all.extend(l);
        errors += e;
    }
    Ok((all, errors))
}

/// A bare forwarding proxy: hyper's server, hyper-util's pooled client, each request passed
/// to `upstream` as it came and the answer passed back.
fn bare_proxy(upstream: String) -> Result<(), Error> {
    use hyper_util::client::legacy::Client;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let client: Client<_, hyper::body::Incoming> =
            Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        let upstream: Arc<str> = upstream.into();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("listening on http://{}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let (client, upstream) = (client.clone(), Arc::clone(&upstream));
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (client, upstream) = (client.clone(), Arc::clone(&upstream));
                    async move {
                        let (mut parts, body) = req.into_parts();
                        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                        let uri: Result<http::Uri, _> = format!("{upstream}{path}").parse();
                        let answer: Result<_, std::io::Error> = match uri {
                            Ok(uri) => {
                                parts.uri = uri;
                                client
                                    .request(http::Request::from_parts(parts, body))
                                    .await
                                    .map_err(std::io::Error::other)
                            }
                            Err(e) => Err(std::io::Error::other(e)),
                        };
                        answer
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
