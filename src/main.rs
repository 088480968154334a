//! The `graph-vcr` command line: flags in, a running proxy (or a check) out. All behaviour is
//! in the library; this file only wires the stages' own option structs together.

use clap::{Args, Parser, Subcommand, ValueEnum};
use graph_vcr::ca::{self, CaOptions};
use graph_vcr::cassette::{Access, CassetteName, Store};
use graph_vcr::check::{self, CheckOptions};
use graph_vcr::forward::ForwardOptions;
use graph_vcr::journal::JournalOptions;
use graph_vcr::key::KeyOptions;
use graph_vcr::listener::ListenOptions;
use graph_vcr::mode::{Mode, OnExhausted};
use graph_vcr::proxy::{
    CassetteOptions, ProxyConfig, PseudonymizeOption, RequestLimits, SanitizeConfig,
};
use graph_vcr::report::ReportOptions;
use graph_vcr::serve::Serve;
use graph_vcr::throttle::ThrottleOptions;
use graph_vcr::upstream::UpstreamOptions;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Record and replay Microsoft Graph Intune `assign` calls, for offline, deterministic tests.
///
/// Point your Graph client's base URL at the proxy (http://127.0.0.1:8080/v1.0 or /beta), or,
/// with `--forward`, set HTTPS_PROXY=http://127.0.0.1:8080 (after `graph-vcr ca init`).
/// `record` forwards to Graph and stores each assign call in a cassette; `replay` answers from
/// the cassette with no network at all; `auto` replays what it has and records the rest;
/// `audit` forwards everything and records nothing. Every mode checks each assign call against
/// the documented Graph contract. Every flag can also be set by the environment variable shown.
///
/// Wrap a test run: `graph-vcr replay --cassette onboarding -- pytest -q` starts the proxy on a
/// free port, runs the command with GRAPH_VCR_URL=http://127.0.0.1:PORT (with `--forward`, also
/// HTTPS_PROXY and a CA bundle in SSL_CERT_FILE, REQUESTS_CA_BUNDLE, NODE_EXTRA_CA_CERTS and
/// CURL_CA_BUNDLE), passes SIGINT/SIGTERM on to it, then stops the proxy, writes the reports and
/// exits with the command's status if it failed, else with the proxy's verdict.
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

    /// The project config file: flags and `[[sanitize]]` rules (default: graph-vcr.toml in
    /// the working directory, if there is one).
    ///
    /// A flag given on the command line or in its environment variable wins over the file.
    /// See README "Project config file".
    #[arg(long, global = true, env = "GRAPH_VCR_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Forward to the upstream and record every assign call into the cassette.
    ///
    /// A run that recorded compacts the cassette directory as it ends (about 3 s for 100,000
    /// recordings), so that replay opens it fast.
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
    /// After a run: which recordings were never played, which requests missed, what deviated.
    ///
    /// Reads the run's journal. Exit status as at the end of a run: 1 on misses or contract
    /// errors (unless allowed), 0 otherwise, 2 on usage errors.
    /// Example: graph-vcr verify --cassette onboarding --journal out/journal.jsonl --report-junit out/junit.xml
    Verify(VerifyArgs),
    /// List, show, remove, export and import cassettes.
    #[command(subcommand)]
    Cassette(CassetteCommand),
    /// Make and show the local CA that `--forward` intercepts HTTPS with.
    #[command(subcommand)]
    Ca(CaCommand),
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
    #[command(flatten)]
    report: ReportOptions,
    #[command(flatten)]
    limits: RequestLimits,
    #[command(flatten, next_help_heading = "Forward proxy")]
    forward: ForwardOptions,
    #[command(flatten, next_help_heading = "Throttling rehearsal")]
    throttle: ThrottleOptions,
    #[command(flatten)]
    pseudonymize: PseudonymizeOption,
    /// Run this command under the proxy, then stop it (see `graph-vcr --help`).
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
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
    #[command(flatten)]
    report: ReportOptions,
    #[command(flatten)]
    limits: RequestLimits,
    #[command(flatten, next_help_heading = "Forward proxy")]
    forward: ForwardOptions,
    #[command(flatten, next_help_heading = "Throttling rehearsal")]
    throttle: ThrottleOptions,
    /// What to answer when a request is made more often than it was recorded.
    #[arg(long, env = "GRAPH_VCR_ON_EXHAUSTED", value_enum, default_value_t = OnExhausted::Repeat)]
    on_exhausted: OnExhausted,
    /// Warn about recordings older than this (a changing API drifts from old cassettes).
    ///
    /// Example: `--max-age 90d`. With `--strict`, refuse to start instead.
    #[arg(long, env = "GRAPH_VCR_MAX_AGE", value_name = "DURATION", value_parser = humantime::parse_duration)]
    max_age: Option<std::time::Duration>,
    /// With `--max-age`: exit 1 instead of warning when a recording is too old.
    #[arg(long, env = "GRAPH_VCR_STRICT", requires = "max_age")]
    strict: bool,
    /// Analyze every request afresh instead of remembering what each distinct request analyzed
    /// to. Slower; the answers, journal and reports are the same. For diagnosing graph-vcr.
    #[arg(long, env = "GRAPH_VCR_NO_MEMO")]
    no_memo: bool,
    /// Run this command under the proxy, then stop it (see `graph-vcr --help`).
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

#[derive(Args, Debug)]
struct VerifyArgs {
    /// Directory holding the cassettes (a sled database, or JSON exports).
    #[arg(
        long,
        env = "GRAPH_VCR_CASSETTES",
        value_name = "DIR",
        default_value = "cassettes"
    )]
    cassettes: PathBuf,
    /// Verify only this cassette (default: every cassette the journal names).
    #[arg(long, env = "GRAPH_VCR_CASSETTE", value_name = "NAME")]
    cassette: Option<CassetteName>,
    /// The run's journal. Default: journal.jsonl in the cassette directory.
    #[arg(long, env = "GRAPH_VCR_JOURNAL", value_name = "FILE")]
    journal: Option<PathBuf>,
    #[command(flatten)]
    report: ReportOptions,
}

#[derive(Subcommand, Debug)]
enum CassetteCommand {
    /// One line per cassette: name, interactions, actions, recorded dates.
    ///
    /// Exit status 1 when a cassette is damaged (see `cassette check`).
    List(DirArg),
    /// Read every recording of every cassette and hold the counts against the directory's
    /// manifest: exit 0 when all is whole, 1 naming what is damaged.
    ///
    /// Example: graph-vcr cassette check --cassettes tests/cassettes
    Check(DirArg),
    /// Every interaction of a cassette, readable (compressed bodies decoded).
    Show {
        name: CassetteName,
        #[command(flatten)]
        dir: DirArg,
    },
    /// Remove a cassette.
    ///
    /// The database is rewritten after, so the cassette's recordings leave the disk too (sled
    /// would keep them in its file until it reused the space).
    Rm {
        name: CassetteName,
        #[command(flatten)]
        dir: DirArg,
    },
    /// Write a cassette as deterministic, pretty JSON (same cassette, same bytes).
    ///
    /// Example: graph-vcr cassette export onboarding -o tests/cassettes/onboarding.json
    /// With --all, -o names a directory and each cassette goes to NAME.json in it.
    Export {
        /// The cassette (omit with --all).
        #[arg(required_unless_present = "all")]
        name: Option<CassetteName>,
        /// Export every cassette.
        #[arg(long, conflicts_with = "name")]
        all: bool,
        /// Output file (or directory with --all); default: standard output.
        #[arg(short, long, value_name = "PATH")]
        output: Option<PathBuf>,
        #[command(flatten)]
        dir: DirArg,
    },
    /// Load exported cassettes back into the sled database.
    Import {
        /// Export files (JSON).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Import under this name instead of the one in the file (one file only).
        #[arg(long = "as", value_name = "NAME")]
        as_name: Option<CassetteName>,
        /// Replace a cassette that already has recordings.
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        dir: DirArg,
    },
    /// Apply the project's `[[sanitize]]` rules (and, with --pseudonymize, pseudonymisation)
    /// to stored cassettes, without re-recording: every recording rewritten, re-keyed and
    /// through the secret scan again.
    ///
    /// Example: graph-vcr cassette sanitize --all --pseudonymize
    /// A cassette already pseudonymised stays so (with the key it was made with).
    Sanitize {
        /// The cassette (omit with --all).
        #[arg(required_unless_present = "all")]
        name: Option<CassetteName>,
        /// Every cassette of the directory.
        #[arg(long, conflicts_with = "name")]
        all: bool,
        /// Also pseudonymise identifiers (GUIDs, UPNs and e-mail addresses, tenant domains),
        /// and remember it in the cassette.
        #[arg(long)]
        pseudonymize: bool,
        #[command(flatten)]
        dir: DirArg,
    },
    /// For git's textconv: print the cassettes of a sled `db` file as JSON.
    ///
    /// git config diff.graph-vcr.textconv "graph-vcr cassette textconv"
    Textconv {
        /// The `db` file git hands over.
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum CaCommand {
    /// Make a local root certificate and key (the key file is readable by its owner only).
    ///
    /// Example: graph-vcr ca init, then graph-vcr ca show for how to trust it.
    Init {
        /// Replace an existing CA (clients must then trust the new certificate).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        ca: CaOptions,
    },
    /// Print where the CA certificate is, its fingerprint, and how to make clients trust it.
    Show {
        /// Print only the certificate, as PEM (for piping into a trust store).
        #[arg(long)]
        pem: bool,
        #[command(flatten)]
        ca: CaOptions,
    },
}

#[derive(Args, Debug)]
struct DirArg {
    /// Directory holding the cassettes.
    #[arg(
        long,
        env = "GRAPH_VCR_CASSETTES",
        value_name = "DIR",
        default_value = "cassettes"
    )]
    cassettes: PathBuf,
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
    /// Also hold this bearer token's permissions (`scp` or `roles`) against the action's.
    ///
    /// Its claims are read, never verified, stored or printed. Prefer the environment
    /// variable: a command line is visible to other users of the machine.
    #[arg(
        long,
        value_name = "JWT",
        env = "GRAPH_VCR_CHECK_TOKEN",
        hide_env_values = true,
        conflicts_with = "scopes"
    )]
    token: Option<String>,
    /// Also hold these delegated scopes (space- or comma-separated) against the action's.
    ///
    /// Example: `--scopes DeviceManagementConfiguration.ReadWrite.All`.
    #[arg(long, value_name = "SCOPES")]
    scopes: Option<String>,
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
    use clap::{CommandFactory, FromArgMatches};
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let project = match graph_vcr::config::ProjectConfig::discover(&argv) {
        Ok(p) => p,
        Err(e) => return fail(&format!("project config: {e}")),
    };
    let given = argv.len();
    let argv = match project.merge_args(&Cli::command(), argv) {
        Ok(a) => a,
        Err(e) => return fail(&format!("project config: {e}")),
    };
    let from_file = argv.len() - given;
    let cli = match Cli::command()
        .try_get_matches_from(&argv)
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(c) => c,
        Err(e) => {
            if from_file > 0
                && e.use_stderr()
                && let Some(path) = &project.path
            {
                let _ = e.print();
                eprintln!(
                    "graph-vcr: {} flag(s) came from the project config {}",
                    from_file,
                    path.display()
                );
                return ExitCode::from(2);
            }
            e.exit()
        }
    };
    let rules = std::sync::Arc::clone(&project.rules);
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(cli.log)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let serve = match cli.command {
        Command::Check(a) => return run_check(&a),
        Command::Verify(a) => return run_verify(&a),
        Command::Cassette(c) => return run_cassette(c, &rules),
        Command::Ca(c) => return run_ca(c),
        Command::Record(a) => forward_config(Mode::Record, a, rules),
        Command::Auto(a) => forward_config(Mode::Auto, a, rules),
        Command::Audit(a) => forward_config(Mode::Audit, a, rules),
        Command::Replay(a) => Serve {
            listen: a.listen,
            config: ProxyConfig {
                mode: Mode::Replay,
                cassettes: a.cassettes,
                key: a.key,
                upstream: None,
                on_exhausted: a.on_exhausted,
                check: a.check,
                journal: a.journal,
                limits: a.limits,
                memo: !a.no_memo,
                throttle: a.throttle,
                sanitize: SanitizeConfig {
                    pseudonymize: false,
                    rules,
                },
            },
            reports: a.report,
            max_age: a.max_age.map(|age| (age, a.strict)),
            forward: a.forward,
            command: a.command,
        },
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(graph_vcr::serve::run(serve)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("graph-vcr: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn forward_config(
    mode: Mode,
    a: ForwardArgs,
    rules: std::sync::Arc<graph_vcr::sanitize::Rules>,
) -> Serve {
    Serve {
        listen: a.listen,
        config: ProxyConfig {
            mode,
            cassettes: a.cassettes,
            key: a.key,
            upstream: Some(a.upstream),
            on_exhausted: OnExhausted::Repeat,
            check: a.check,
            journal: a.journal,
            limits: a.limits,
            memo: false,
            throttle: a.throttle,
            sanitize: SanitizeConfig {
                pseudonymize: a.pseudonymize.pseudonymize,
                rules,
            },
        },
        reports: a.report,
        max_age: None,
        forward: a.forward,
        command: a.command,
    }
}

fn run_verify(a: &VerifyArgs) -> ExitCode {
    let journal = a
        .journal
        .clone()
        .unwrap_or_else(|| a.cassettes.join(graph_vcr::cassette::JOURNAL_FILE));
    let report = match graph_vcr::report::verify(&a.cassettes, a.cassette.as_ref(), &journal) {
        Ok(r) => r,
        Err(e @ graph_vcr::report::VerifyError::NotInJournal { .. }) => {
            eprintln!("graph-vcr: FAIL {e}");
            eprintln!("graph-vcr: result: failed: the cassette was never used");
            return ExitCode::from(1);
        }
        Err(e) => return fail(&e.to_string()),
    };
    let t = &report.totals;
    let mut names: Vec<&str> = report.calls.iter().map(|c| c.cassette.as_str()).collect();
    names.dedup();
    eprintln!(
        "graph-vcr: cassette{} {}: {} requests, {} missed, {} contract errors, {} warnings, {} never played",
        if names.len() == 1 { "" } else { "s" },
        names.join(", "),
        t.requests,
        t.misses,
        t.deviation_errors,
        t.deviation_warnings,
        t.unplayed
    );
    for u in &report.unplayed {
        eprintln!(
            "graph-vcr: never played: {} {} #{} (key {}, recorded {})",
            u.method,
            u.path,
            u.position,
            &u.key[..12.min(u.key.len())],
            u.recorded_at
        );
    }
    ExitCode::from(graph_vcr::serve::conclude(&report, &a.report))
}

fn run_cassette(
    command: CassetteCommand,
    rules: &std::sync::Arc<graph_vcr::sanitize::Rules>,
) -> ExitCode {
    match cassette_command(command, rules) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CassetteFailure::Damaged) => ExitCode::from(1),
        Err(CassetteFailure::Error(message)) => fail(&message),
    }
}

/// How a cassette tool failed: damage found (exit 1, already printed), or an error (exit 2).
enum CassetteFailure {
    Damaged,
    Error(String),
}

impl From<String> for CassetteFailure {
    fn from(message: String) -> Self {
        Self::Error(message)
    }
}

/// Prints each damage and fails with exit status 1 when there is any.
fn damaged_is_failure(damaged: &[String]) -> Result<(), CassetteFailure> {
    for d in damaged {
        eprintln!("graph-vcr: DAMAGED {d}");
    }
    if damaged.is_empty() {
        Ok(())
    } else {
        Err(CassetteFailure::Damaged)
    }
}

fn cassette_command(
    command: CassetteCommand,
    rules: &std::sync::Arc<graph_vcr::sanitize::Rules>,
) -> Result<(), CassetteFailure> {
    use graph_vcr::{export, inspect};
    match command {
        CassetteCommand::List(dir) => {
            let (text, damaged) =
                inspect::list(&open_dir(&dir, Access::ReadOnly)?).map_err(|e| e.to_string())?;
            write_stdout(text.as_bytes())?;
            damaged_is_failure(&damaged)
        }
        CassetteCommand::Check(dir) => {
            let store = open_dir(&dir, Access::ReadOnly)?;
            let (text, damaged) = inspect::list(&store).map_err(|e| e.to_string())?;
            let cassettes = text.lines().count().saturating_sub(1);
            if damaged.is_empty() {
                eprintln!(
                    "graph-vcr: {} cassette(s) in {}: every recording reads, none is missing",
                    cassettes,
                    dir.cassettes.display()
                );
            }
            damaged_is_failure(&damaged)
        }
        CassetteCommand::Show { name, dir } => {
            let store = open_dir(&dir, Access::ReadOnly)?;
            require(&store, &name)?;
            let cassette = store.cassette(&name).map_err(|e| e.to_string())?;
            Ok(write_stdout(
                inspect::show(&cassette)
                    .map_err(|e| e.to_string())?
                    .as_bytes(),
            )?)
        }
        CassetteCommand::Rm { name, dir } => Ok(remove_cassette(&name, &dir)?),
        CassetteCommand::Export {
            name,
            all,
            output,
            dir,
        } => Ok(export_cassettes(name, all, output.as_deref(), &dir)?),
        CassetteCommand::Import {
            files,
            as_name,
            replace,
            dir,
        } => Ok(import_files(&files, as_name, replace, &dir)?),
        CassetteCommand::Sanitize {
            name,
            all,
            pseudonymize,
            dir,
        } => sanitize_cassettes(name, all, pseudonymize, &dir, rules),
        CassetteCommand::Textconv { file } => Ok(write_stdout(&export::textconv(&file)?)?),
    }
}

/// A store of `dir` (a directory of exports is imported read-only), its error as text.
fn open_dir(dir: &DirArg, access: Access) -> Result<Store, String> {
    graph_vcr::export::open(&dir.cassettes, access).map_err(|e| e.to_string())
}

fn write_stdout(text: &[u8]) -> Result<(), String> {
    std::io::stdout().write_all(text).map_err(|e| e.to_string())
}

/// `cassette rm`: the cassette dropped, the manifest updated, the database rewritten.
fn remove_cassette(name: &CassetteName, dir: &DirArg) -> Result<(), String> {
    let store = open_dir(dir, Access::ReadWrite)?;
    require(&store, name)?;
    store.drop_cassette(name).map_err(|e| e.to_string())?;
    store.flush_blocking().map_err(|e| e.to_string())?;
    store.write_manifest().map_err(|e| e.to_string())?;
    // sled keeps a dropped tree's values in its log until it reuses the space: a directory
    // committed after `rm` would still hold them. Rewritten, as sanitize does.
    let shown = dir.cassettes.display();
    store
        .compact()
        .and_then(|store| store.flush_blocking())
        .map_err(|e| {
            format!(
                "removed cassette {name}, but its recordings stay in {shown}/db until the \
                 database is rewritten: {e} (`graph-vcr cassette sanitize --all` rewrites it)"
            )
        })?;
    eprintln!("graph-vcr: removed cassette {name} from {shown}");
    Ok(())
}

/// `cassette export`: one cassette to stdout or `-o FILE`, or `--all` into `-o DIR`.
fn export_cassettes(
    name: Option<CassetteName>,
    all: bool,
    output: Option<&std::path::Path>,
    dir: &DirArg,
) -> Result<(), String> {
    use graph_vcr::export;
    let store = open_dir(dir, Access::ReadOnly)?;
    let names = match name {
        Some(n) => {
            require(&store, &n)?;
            vec![n]
        }
        None => store.cassette_names(),
    };
    let write = |path: &std::path::Path, bytes: &[u8]| {
        std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
    };
    let make = |path: &std::path::Path| {
        std::fs::create_dir_all(path).map_err(|e| format!("{}: {e}", path.display()))
    };
    for n in names {
        let cassette = store.cassette(&n).map_err(|e| e.to_string())?;
        let bytes = export::to_bytes(&export::export(&cassette).map_err(|e| e.to_string())?);
        match (output, all) {
            (None, _) => write_stdout(&bytes)?,
            (Some(dir_out), true) => {
                make(dir_out)?;
                write(&dir_out.join(format!("{n}.json")), &bytes)?;
            }
            (Some(file), false) => {
                if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
                    make(parent)?;
                }
                write(file, &bytes)?;
            }
        }
    }
    Ok(())
}

/// `cassette import`: each file keyed and gated into the store, then the directory compacted.
fn import_files(
    files: &[PathBuf],
    as_name: Option<CassetteName>,
    replace: bool,
    dir: &DirArg,
) -> Result<(), String> {
    use graph_vcr::export;
    if as_name.is_some() && files.len() > 1 {
        return Err("--as takes one file".to_string());
    }
    let store = open_dir(dir, Access::ReadWrite)?;
    for file in files {
        let shown = file.display().to_string();
        let bytes = std::fs::read(file).map_err(|e| format!("{shown}: {e}"))?;
        let doc = export::parse(&bytes, &shown).map_err(|e| e.to_string())?;
        let done = export::import(&store, doc, as_name.clone(), replace, &shown)
            .map_err(|e| e.to_string())?;
        eprintln!(
            "graph-vcr: imported {} interaction(s) into cassette {} ({} re-keyed)",
            done.interactions, done.name, done.rekeyed
        );
    }
    // As a record run leaves it: replay opens a compact log faster. Best effort, as there:
    // what was imported is durable already.
    drop(store);
    graph_vcr::serve::log_compaction(
        &dir.cassettes,
        graph_vcr::cassette::compact_dir(&dir.cassettes),
    );
    Ok(())
}

/// `cassette sanitize`: each named cassette rewritten through the rules and pseudonymisation.
fn sanitize_cassettes(
    name: Option<CassetteName>,
    all: bool,
    pseudonymize: bool,
    dir: &DirArg,
    rules: &std::sync::Arc<graph_vcr::sanitize::Rules>,
) -> Result<(), CassetteFailure> {
    let name = if all { None } else { name };
    if rules.is_empty() && !pseudonymize {
        eprintln!(
            "graph-vcr: warning: no [[sanitize]] rules and no --pseudonymize: only cassettes already pseudonymised change"
        );
    }
    let done = graph_vcr::export::sanitize_dir(
        &dir.cassettes,
        name.as_ref(),
        std::sync::Arc::clone(rules),
        pseudonymize,
    )
    .map_err(|e| e.to_string())?;
    for (file, d) in &done.cassettes {
        let place = file
            .as_ref()
            .map_or(String::new(), |f| format!(" in {}", f.display()));
        eprintln!(
            "graph-vcr: sanitized cassette {}{place}: {} interaction(s), {} re-keyed",
            d.name, d.interactions, d.rekeyed
        );
    }
    if let Some(journal) = &done.old_journal {
        eprintln!(
            "graph-vcr: warning: {} is an earlier run's journal, written before these rules: \
             remove it before sharing the directory",
            journal.display()
        );
    }
    if done.compacted {
        eprintln!(
            "graph-vcr: rewrote {}: the values replaced are no longer on disk",
            dir.cassettes.display()
        );
    }
    Ok(())
}

fn run_ca(command: CaCommand) -> ExitCode {
    let mut stdout = std::io::stdout();
    match command {
        CaCommand::Init { force, ca } => {
            let dir = match ca.dir() {
                Ok(d) => d,
                Err(e) => return fail(&e.to_string()),
            };
            match ca::init(&dir, force) {
                Ok(files) => {
                    let _ = writeln!(
                        stdout,
                        "created a graph-vcr CA in {}\n  certificate: {}\n  private key: {} (owner-only; never share or commit it)\nNext: `graph-vcr ca show{}` says how to trust it.",
                        files.dir.display(),
                        files.cert.display(),
                        files.key.display(),
                        ca.ca_dir
                            .as_ref()
                            .map_or(String::new(), |d| format!(" --ca-dir {}", d.display()))
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e.to_string()),
            }
        }
        CaCommand::Show { pem, ca } => {
            let info = match ca::show(&ca) {
                Ok(i) => i,
                Err(e) => return fail(&e.to_string()),
            };
            if pem {
                let _ = stdout.write_all(info.pem.as_bytes());
                return ExitCode::SUCCESS;
            }
            let when = |t| humantime::format_rfc3339_seconds(t).to_string();
            let _ = writeln!(
                stdout,
                "certificate: {}\nprivate key: {}{}\nsubject:     {}\nvalid:       {} to {}\nSHA-256:     {}\n\n{}",
                info.files.cert.display(),
                info.files.key.display(),
                if info.key_exposed {
                    "  WARNING: readable by others; run chmod 600 on it"
                } else {
                    ""
                },
                info.subject,
                when(info.not_before),
                when(info.not_after),
                info.sha256,
                ca::trust_instructions(&info.files.cert)
            );
            ExitCode::SUCCESS
        }
    }
}

fn require(store: &Store, name: &CassetteName) -> Result<(), String> {
    if store.cassette_names().contains(name) {
        Ok(())
    } else {
        Err(format!("no cassette {name} in {}", store.dir().display()))
    }
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
    let granted = match (&args.token, &args.scopes) {
        (Some(token), _) => match check::permissions::Granted::of_token(token.trim()) {
            Some(g) => Some(g),
            None => {
                return fail(
                    "--token: the token's claims cannot be read (not a JWT with scp or roles)",
                );
            }
        },
        (None, Some(scopes)) => Some(check::permissions::Granted::scopes(scopes)),
        (None, None) => None,
    };
    let (action, deviations) = match check::check_offline(&args.action, &body, granted.as_ref()) {
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

fn fail(message: &str) -> ExitCode {
    eprintln!("graph-vcr: error: {message}");
    ExitCode::from(2)
}
