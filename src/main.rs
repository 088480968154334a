//! The `graph-vcr` command line: flags in, a running proxy out. All behaviour is in the library.

use clap::{Args, Parser, Subcommand};
use graph_vcr::key::KeyOptions;
use graph_vcr::listener::{ListenOptions, Listener};
use graph_vcr::mode::{Mode, OnExhausted};
use graph_vcr::proxy::{CassetteOptions, DEFAULT_MAX_BODY, Proxy, ProxyConfig};
use graph_vcr::upstream::UpstreamOptions;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

/// Record and replay Microsoft Graph Intune `assign` calls, for offline, deterministic tests.
///
/// Point your Graph client's base URL at the proxy (http://127.0.0.1:8080/v1.0 or /beta).
/// `record` forwards to Graph and stores each assign call in a cassette; `replay` answers from
/// the cassette with no network at all; `auto` replays what it has and records the rest.
/// Every flag can also be set by the environment variable shown.
#[derive(Parser, Debug)]
#[command(name = "graph-vcr", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    /// Log level on stderr: error, warn, info, debug or trace.
    #[arg(
        long,
        global = true,
        env = "GRAPH_VCR_LOG",
        value_name = "LEVEL",
        default_value = "info"
    )]
    log: tracing::Level,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Forward to the upstream and record every assign call into the cassette.
    ///
    /// Example: graph-vcr record --cassette onboarding
    Record(ForwardArgs),
    /// Answer from the cassette only; never opens a network connection.
    ///
    /// Example: graph-vcr replay --cassette onboarding
    Replay(ReplayArgs),
    /// Replay what is recorded; forward and record the rest.
    ///
    /// Example: graph-vcr auto --cassette onboarding
    Auto(ForwardArgs),
}

#[derive(Args, Debug)]
struct ForwardArgs {
    #[command(flatten)]
    listen: ListenOptions,
    #[command(flatten)]
    cassettes: CassetteOptions,
    #[command(flatten)]
    key: KeyOptions,
    #[command(flatten)]
    upstream: UpstreamOptions,
}

#[derive(Args, Debug)]
struct ReplayArgs {
    #[command(flatten)]
    listen: ListenOptions,
    #[command(flatten)]
    cassettes: CassetteOptions,
    #[command(flatten)]
    key: KeyOptions,
    /// What to answer when a request is made more often than it was recorded.
    #[arg(long, env = "GRAPH_VCR_ON_EXHAUSTED", value_enum, default_value_t = OnExhausted::Repeat)]
    on_exhausted: OnExhausted,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(cli.log)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let (listen, config) = match cli.command {
        Command::Record(a) => forward_config(Mode::Record, a),
        Command::Auto(a) => forward_config(Mode::Auto, a),
        Command::Replay(a) => (
            a.listen,
            ProxyConfig {
                mode: Mode::Replay,
                cassettes: a.cassettes,
                key: a.key,
                upstream: None,
                on_exhausted: a.on_exhausted,
                max_body: DEFAULT_MAX_BODY,
            },
        ),
    };

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(run(listen, config))
}

fn forward_config(mode: Mode, a: ForwardArgs) -> (ListenOptions, ProxyConfig) {
    (
        a.listen,
        ProxyConfig {
            mode,
            cassettes: a.cassettes,
            key: a.key,
            upstream: Some(a.upstream),
            on_exhausted: OnExhausted::Repeat,
            max_body: DEFAULT_MAX_BODY,
        },
    )
}

async fn run(listen: ListenOptions, config: ProxyConfig) -> ExitCode {
    let mode = config.mode;
    let dir = config.cassettes.cassettes.clone();
    let proxy = match Proxy::new(config) {
        Ok(p) => Arc::new(p),
        Err(e) => return fail(&format!("cannot start {} mode: {e}", mode.as_str())),
    };
    let listener = match Listener::bind(listen.listen, Arc::clone(&proxy)).await {
        Ok(l) => l,
        Err(e) => return fail(&format!("cannot listen on {}: {e}", listen.listen)),
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => return fail(&format!("cannot read the bound address: {e}")),
    };
    // The one line scripts wait for; everything else goes to stderr.
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "listening on http://{addr}");
    let _ = stdout.flush();
    tracing::info!(mode = mode.as_str(), cassettes = %dir.display(), "graph-vcr ready");

    listener.serve(shutdown_signal()).await;
    if let Err(e) = proxy.store().flush().await {
        return fail(&format!("final flush of {} failed: {e}", dir.display()));
    }
    eprintln!("graph-vcr: {}", proxy.stats.summary());
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
}

fn fail(message: &str) -> ExitCode {
    eprintln!("graph-vcr: error: {message}");
    ExitCode::from(2)
}
