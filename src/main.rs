//! The `graph-vcr` command line: flags in, a running proxy (or a check) out. All behaviour is
//! in the library; this file only wires the stages' own option structs together.

use clap::{Args, Parser, Subcommand, ValueEnum};
use graph_vcr::check::{self, CheckOptions};
use graph_vcr::journal::JournalOptions;
use graph_vcr::key::KeyOptions;
use graph_vcr::listener::{ListenOptions, Listener};
use graph_vcr::mode::{Mode, OnExhausted};
use graph_vcr::proxy::{CassetteOptions, DEFAULT_MAX_BODY, Proxy, ProxyConfig};
use graph_vcr::upstream::UpstreamOptions;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Record and replay Microsoft Graph Intune `assign` calls, for offline, deterministic tests.
///
/// Point your Graph client's base URL at the proxy (http://127.0.0.1:8080/v1.0 or /beta).
/// `record` forwards to Graph and stores each assign call in a cassette; `replay` answers from
/// the cassette with no network at all; `auto` replays what it has and records the rest;
/// `audit` forwards everything and records nothing. Every mode checks each assign call against
/// the documented Graph contract. Every flag can also be set by the environment variable shown.
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
    /// Forward everything, record nothing; check and journal every assign call.
    ///
    /// Example: graph-vcr audit --on-deviation reject --journal audit.jsonl
    Audit(ForwardArgs),
    /// Check a request body offline against an action's contract.
    ///
    /// Exit status: 0 when there is no `error` deviation, 1 when there is, 2 on usage errors.
    /// Example: graph-vcr check --action /v1.0/deviceManagement/deviceConfigurations/{id}/assign body.json
    Check(CheckArgs),
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
    #[command(flatten)]
    check: CheckOptions,
    #[command(flatten)]
    journal: JournalOptions,
}

#[derive(Args, Debug)]
struct ReplayArgs {
    #[command(flatten)]
    listen: ListenOptions,
    #[command(flatten)]
    cassettes: CassetteOptions,
    #[command(flatten)]
    key: KeyOptions,
    #[command(flatten)]
    check: CheckOptions,
    #[command(flatten)]
    journal: JournalOptions,
    /// What to answer when a request is made more often than it was recorded.
    #[arg(long, env = "GRAPH_VCR_ON_EXHAUSTED", value_enum, default_value_t = OnExhausted::Repeat)]
    on_exhausted: OnExhausted,
}

#[derive(Args, Debug)]
struct CheckArgs {
    /// The action whose contract applies: its path template or a real path.
    ///
    /// Without a version, v1.0 is assumed. Example: `--action /beta/deviceAppManagement/mobileApps/{id}/assign`.
    #[arg(long, value_name = "PATH", default_value = check::SEED_ACTION)]
    action: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// The request body to check, or `-` for standard input.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
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
        Command::Check(a) => return run_check(&a),
        Command::Record(a) => forward_config(Mode::Record, a),
        Command::Auto(a) => forward_config(Mode::Auto, a),
        Command::Audit(a) => forward_config(Mode::Audit, a),
        Command::Replay(a) => (
            a.listen,
            ProxyConfig {
                mode: Mode::Replay,
                cassettes: a.cassettes,
                key: a.key,
                upstream: None,
                on_exhausted: a.on_exhausted,
                check: a.check,
                journal: a.journal,
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
            check: a.check,
            journal: a.journal,
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
    tracing::info!(mode = mode.as_str(), cassettes = %dir.display(),
        journal = %proxy.journal_path().map_or("none".into(), |p| p.display().to_string()), "graph-vcr ready");

    listener.serve(shutdown_signal()).await;
    if let Err(e) = proxy.close().await {
        return fail(&format!("shutting down: {e}"));
    }
    eprintln!("graph-vcr: {}", proxy.stats.summary());
    ExitCode::SUCCESS
}

fn run_check(args: &CheckArgs) -> ExitCode {
    let mut body = Vec::new();
    let read = if args.file.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut body).map(|_| ())
    } else {
        std::fs::read(&args.file).map(|b| body = b)
    };
    if let Err(e) = read {
        return fail(&format!("cannot read {}: {e}", args.file.display()));
    }
    let (action, deviations) = match check::check_offline(&args.action, &body) {
        Ok(r) => r,
        Err(message) => return fail(&message),
    };
    let text = match args.format {
        Format::Text => format!("{action}\n{}", check::format_text(&deviations)),
        Format::Json => {
            let errors = deviations
                .iter()
                .filter(|d| d.severity == check::Severity::Error)
                .count();
            let doc = serde_json::json!({
                "action": action,
                "errors": errors,
                "warnings": deviations.len() - errors,
                "deviations": deviations,
            });
            format!("{doc:#}\n")
        }
    };
    let _ = std::io::stdout().write_all(text.as_bytes());
    if check::has_error(&deviations) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
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
