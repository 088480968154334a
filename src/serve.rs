//! Serve: one run of a serving mode (record, replay, auto, audit), from its validated config
//! to its exit status. It starts the proxy (and the forward proxy), refuses stale recordings
//! when asked, listens, serves until a signal or until the wrapped command ends, closes the
//! proxy, writes the reports and turns the verdict into a status; a run that recorded then
//! leaves its cassette directory compacted. The binary only builds a [`Serve`] from its flags
//! and prints a [`ServeError`]; the error's [`exit_code`](ServeError::exit_code) is the one
//! place a failed run's status is chosen.

use crate::cassette::{Compacted, StoreError};
use crate::forward::{ForwardError, ForwardOptions, Forwarder};
use crate::listener::{ListenOptions, Listener};
use crate::proxy::{Proxy, ProxyConfig, ProxyError};
use crate::report::{Report, ReportOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Everything a serving mode needs, from its flags.
pub struct Serve {
    pub listen: ListenOptions,
    pub config: ProxyConfig,
    pub reports: ReportOptions,
    /// `--max-age` and whether `--strict` makes an older recording fatal (replay).
    pub max_age: Option<(Duration, bool)>,
    pub forward: ForwardOptions,
    /// `-- COMMAND [ARGS…]`: run it under the proxy (empty: serve until a signal).
    pub command: Vec<String>,
}

/// Why a run ended without a verdict, or with `--strict`'s refusal.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot start {mode} mode: {source}")]
    Start {
        mode: &'static str,
        source: ProxyError,
    },
    #[error("cannot start {mode} --forward: {source}")]
    Forward {
        mode: &'static str,
        source: ForwardError,
    },
    #[error("{0} (--strict); re-record them")]
    Stale(String),
    #[error("reading recording dates: {0}")]
    Dates(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read the bound address: {0}")]
    Address(std::io::Error),
    #[error("{0}")]
    Wrapped(String),
    #[error("shutting down: {0}")]
    Shutdown(String),
    #[error("building the report: {0}")]
    Report(StoreError),
}

impl ServeError {
    /// 1 for recordings `--strict` refuses (the run's verdict: the cassette fails it), 2 for
    /// a run that could not be carried out.
    pub fn exit_code(&self) -> u8 {
        match self {
            ServeError::Stale(_) => 1,
            _ => 2,
        }
    }
}

/// Runs `serve` and returns its exit status: the verdict (0 passed, 1 failed, 2 reports not
/// written), or with a wrapped command, the command's failure if it failed.
pub async fn run(serve: Serve) -> Result<u8, ServeError> {
    let Serve {
        mut listen,
        config,
        reports,
        max_age,
        forward,
        command,
    } = serve;
    // A wrapped command gets a free port unless one is asked for: nothing to collide with.
    if !command.is_empty() && listen.listen.is_none() {
        listen.listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    }
    let mode = config.mode.as_str();
    let dir = config.cassettes.cassettes.clone();
    let connect_timeout = config
        .upstream
        .as_ref()
        .map_or(Duration::from_secs(30), |u| u.upstream_timeout);
    let proxy = Arc::new(Proxy::new(config).map_err(|source| ServeError::Start { mode, source })?);
    let forwarder = if forward.forward {
        let explicit = proxy.upstream_is_explicit();
        Forwarder::new(&forward, proxy.mode(), explicit, connect_timeout)
            .map(|f| Some(Arc::new(f)))
            .map_err(|source| ServeError::Forward { mode, source })?
    } else {
        None
    };
    if let Some((age, strict)) = max_age {
        refuse_stale(&proxy, age, strict)?;
    }
    let listener = Listener::bind(&listen, Arc::clone(&proxy), forwarder.clone())
        .await
        .map_err(|source| ServeError::Listen {
            addr: listen.addr(),
            source,
        })?;
    let addr = listener.local_addr().map_err(ServeError::Address)?;
    announce(&proxy, forwarder.as_deref(), addr, &dir);
    let wrapped = if command.is_empty() {
        listener.serve(shutdown_signal()).await;
        None
    } else {
        let ca = forwarder.as_ref().map(|f| f.ca().info().files.cert.clone());
        let status = run_wrapped(listener, addr, ca.as_deref(), &command).await;
        Some(status.map_err(ServeError::Wrapped)?)
    };
    proxy.close().await.map_err(ServeError::Shutdown)?;
    for line in [proxy.stats.memo_summary(), proxy.stats.forward_summary()]
        .into_iter()
        .flatten()
    {
        eprintln!("graph-vcr: {line}");
    }
    let report = proxy.report().map_err(ServeError::Report)?;
    let verdict = conclude(&report, &reports);
    if report.totals.recorded > 0 {
        compact_after_recording(proxy, dir).await;
    }
    Ok(match wrapped {
        None => verdict,
        Some(status) => {
            let code = crate::wrap::exit_code(status, verdict);
            if !status.success() {
                eprintln!("graph-vcr: the command exited with {status}; exiting with {code}");
            }
            code
        }
    })
}

/// `--max-age`: names recordings older than `age` (the first 20 in the log), and with
/// `--strict` refuses to serve them.
fn refuse_stale(proxy: &Proxy, age: Duration, strict: bool) -> Result<(), ServeError> {
    let Some(found) = proxy.with_store(|store| crate::inspect::stale(store, age)) else {
        return Ok(());
    };
    let stale = found
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map_err(ServeError::Dates)?;
    if stale.is_empty() {
        return Ok(());
    }
    for (cassette, i) in stale.iter().take(20) {
        tracing::warn!(%cassette, key = &i.key[..16.min(i.key.len())], recorded_at = %i.recorded_at,
            action = %i.action, "recording older than --max-age");
    }
    let what = format!(
        "{} recording(s) older than {}",
        stale.len(),
        humantime::format_duration(age)
    );
    if strict {
        return Err(ServeError::Stale(what));
    }
    tracing::warn!("{what}; re-record them, or pass a larger --max-age");
    Ok(())
}

/// The `listening on` line scripts wait for (the only one on stdout), then the log's.
fn announce(proxy: &Proxy, forwarder: Option<&Forwarder>, addr: SocketAddr, dir: &Path) {
    if let Some(f) = forwarder {
        f.listening_on(addr);
    }
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "listening on http://{addr}");
    let _ = stdout.flush();
    tracing::info!(mode = proxy.mode().as_str(), cassettes = %dir.display(),
        journal = %proxy.journal_path().map_or("none".into(), |p| p.display().to_string()), "graph-vcr ready");
    if let Some(f) = forwarder {
        tracing::info!(intercept = %f.hosts().join(","), tunnel = %f.tunnel_hosts().join(","),
            ca = %f.ca().info().files.cert.display(),
            "forward proxy ready: clients set HTTPS_PROXY=http://{addr}");
    }
}

/// Record and auto leave their directory compacted when they recorded (see
/// `cassette::compact_dir`): every later replay of it opens faster. Best effort: the
/// recordings are durable already, so a directory that cannot be compacted now is named and
/// left as it is, and the run's verdict stands.
async fn compact_after_recording(proxy: Arc<Proxy>, dir: std::path::PathBuf) {
    // A connection that outlived the grace period still holds the proxy, and with it the store.
    if Arc::into_inner(proxy).is_none() {
        tracing::warn!(cassettes = %dir.display(), "not compacted: a connection is still open");
        return;
    }
    // Seconds for a large cassette: say so first, so the pause is not taken for a hang.
    tracing::info!(cassettes = %dir.display(), "compacting the cassette directory");
    let compacting = dir.clone();
    let done = tokio::task::spawn_blocking(move || crate::cassette::compact_dir(&compacting))
        .await
        .unwrap_or_else(|e| {
            Err(StoreError::Io {
                dir: dir.clone(),
                source: std::io::Error::other(e),
            })
        });
    log_compaction(&dir, done);
}

/// What the compaction after a record run or an import did (`cassette::compact_dir`).
pub fn log_compaction(dir: &Path, done: Result<Option<Compacted>, StoreError>) {
    match done {
        Ok(Some(c)) => tracing::info!(cassettes = %dir.display(), before_bytes = c.before,
            after_bytes = c.after, took_ms = c.took.as_millis(), "cassette directory compacted"),
        Ok(None) => tracing::info!(cassettes = %dir.display(),
            "not compacted: it holds large recordings (sled's blobs); `cassette sanitize` compacts it"),
        Err(e) => tracing::warn!(cassettes = %dir.display(), error = %e,
            "not compacted; replay of it opens more slowly until a later record run or import compacts it"),
    }
}

/// Runs the wrapped command while the listener serves, then stops the listener gracefully.
async fn run_wrapped(
    listener: Listener,
    addr: SocketAddr,
    ca: Option<&Path>,
    command: &[String],
) -> Result<std::process::ExitStatus, String> {
    let scratch =
        crate::wrap::scratch_dir().map_err(|e| format!("cannot make a scratch directory: {e}"))?;
    let env = crate::wrap::environment(addr, ca, &scratch)
        .map_err(|e| format!("preparing the command's environment: {e}"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(listener.serve(async {
        let _ = stopped.await;
    }));
    let status = match env {
        Ok(env) => crate::wrap::run(command, &env)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    let _ = stop.send(());
    let _ = serving.await;
    let _ = std::fs::remove_dir_all(&scratch);
    status
}

/// Writes the reports, prints the verdict, and turns it into the exit status: 0 passed, 1
/// failed, 2 when the reports could not be written.
pub fn conclude(report: &Report, opts: &ReportOptions) -> u8 {
    if let Err(e) = report.write(opts) {
        eprintln!("graph-vcr: error: writing reports: {e}");
        return 2;
    }
    for line in report.summary_lines(opts) {
        eprintln!("graph-vcr: {line}");
    }
    if report.failures(opts).is_empty() {
        0
    } else {
        1
    }
}

/// Resolves at Ctrl-C or SIGTERM: the end of a run that wraps no command.
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
