//! Wrap: `graph-vcr <mode> [flags] -- COMMAND [ARGS…]` runs a test command under the proxy,
//! so a CI job is one step with nothing to wait for and nothing to hang.
//!
//! The CLI starts the proxy first (a proxy that cannot start never runs the command), then
//! this module runs COMMAND with the proxy's address in its environment ([`environment`]),
//! forwards SIGINT and SIGTERM to it, and returns how it ended. The CLI then stops the proxy
//! gracefully, writes the reports and exits with [`exit_code`]: the command's status when it
//! failed, else the proxy's verdict.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

/// The variable that carries the proxy's root URL: a client's base URL is
/// `$GRAPH_VCR_URL/v1.0` (or `/beta`).
pub const URL_VARIABLE: &str = "GRAPH_VCR_URL";

/// The variables through which the common runtimes find extra trusted CAs: OpenSSL and Go
/// (`SSL_CERT_FILE`), Python's requests (`REQUESTS_CA_BUNDLE`), Node.js
/// (`NODE_EXTRA_CA_CERTS`), curl (`CURL_CA_BUNDLE`).
pub const CA_VARIABLES: [&str; 4] = [
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "CURL_CA_BUNDLE",
];

/// Where the system's trusted roots usually are (Debian/Ubuntu, Fedora/RHEL, Alpine/macOS,
/// openSUSE), after `SSL_CERT_FILE` if it is set.
const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

/// The command's environment: [`URL_VARIABLE`]; with `--forward` also `HTTPS_PROXY` and
/// `https_proxy`, and every [`CA_VARIABLES`] pointing at a bundle written into `scratch`: the
/// system's roots followed by graph-vcr's CA, so the command trusts both the hosts graph-vcr
/// tunnels and the ones it intercepts.
pub fn environment(
    addr: SocketAddr,
    forward_ca: Option<&Path>,
    scratch: &Path,
) -> std::io::Result<Vec<(String, String)>> {
    let url = format!("http://{addr}");
    let mut env = vec![(URL_VARIABLE.to_string(), url.clone())];
    if let Some(ca) = forward_ca {
        let bundle = ca_bundle(ca, scratch)?;
        let bundle = bundle.display().to_string();
        env.push(("HTTPS_PROXY".into(), url.clone()));
        env.push(("https_proxy".into(), url));
        env.extend(CA_VARIABLES.iter().map(|v| (v.to_string(), bundle.clone())));
    }
    Ok(env)
}

/// A private directory for the command's CA bundle; the caller removes it after the run (or
/// the next replay does, should this process die first).
pub fn scratch_dir() -> std::io::Result<PathBuf> {
    let dir = crate::cassette::scratch_path(crate::cassette::Scratch::Wrap);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Writes the system's roots and graph-vcr's CA certificate into `scratch/ca-bundle.pem`.
fn ca_bundle(ca: &Path, scratch: &Path) -> std::io::Result<PathBuf> {
    let from_env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let system = from_env
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from))
        .find_map(|p| std::fs::read(&p).ok());
    if system.is_none() {
        tracing::warn!(
            "no system CA bundle found; the command will trust only graph-vcr's CA through the CA variables"
        );
    }
    let mut bundle = system.unwrap_or_default();
    if !bundle.is_empty() && !bundle.ends_with(b"\n") {
        bundle.push(b'\n');
    }
    bundle.extend(std::fs::read(ca)?);
    let path = scratch.join("ca-bundle.pem");
    std::fs::write(&path, bundle)?;
    Ok(path)
}

/// Runs `command` with `env` added to this process's environment, forwarding SIGINT and
/// SIGTERM to it, until it exits.
pub async fn run(command: &[String], env: &[(String, String)]) -> std::io::Result<ExitStatus> {
    let Some((program, args)) = command.split_first() else {
        return Err(std::io::Error::other("no command after --"));
    };
    // Listened for before the command starts: a signal that came after it started but before
    // the handlers were installed would end this process by the default action and leave the
    // command running, with nobody to pass the signal on (seen in CI: the wrap test's shell
    // went on looping, holding its pipes, after the proxy had died of the SIGTERM).
    let signals = Signals::listen()?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot run {program}: {e}")))?;
    signals.forward(&mut child).await
}

/// The signals passed on to the command, caught from [`Signals::listen`] on.
#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn listen() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn forward(mut self, child: &mut tokio::process::Child) -> std::io::Result<ExitStatus> {
        loop {
            let sig = tokio::select! {
                status = child.wait() => return status,
                _ = self.term.recv() => libc::SIGTERM,
                _ = self.int.recv() => libc::SIGINT,
            };
            if let Some(pid) = child.id().and_then(|p| libc::pid_t::try_from(p).ok()) {
                tracing::info!(pid, signal = sig, "passing the signal on to the command");
                // SAFETY: kill(2) with a pid this process spawned and has not yet reaped
                // (`wait` has not returned), so it cannot name another process.
                unsafe {
                    libc::kill(pid, sig);
                }
            }
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn listen() -> std::io::Result<Self> {
        Ok(Self)
    }

    async fn forward(self, child: &mut tokio::process::Child) -> std::io::Result<ExitStatus> {
        tokio::select! {
            status = child.wait() => status,
            _ = tokio::signal::ctrl_c() => {
                child.start_kill()?;
                child.wait().await
            }
        }
    }
}

/// The wrapper's exit status: the command's when it failed (128 + N when signal N ended
/// it, as shells report it), else the proxy's verdict (`verdict`: 0 passed, 1 failed).
pub fn exit_code(status: ExitStatus, verdict: u8) -> u8 {
    if let Some(code) = status.code() {
        return match code {
            0 => verdict,
            c => u8::try_from(c).unwrap_or(1),
        };
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return u8::try_from(128 + sig).unwrap_or(1);
        }
    }
    1
}
