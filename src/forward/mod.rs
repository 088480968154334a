//! Forward: graph-vcr as an `HTTPS_PROXY`, for clients that cannot change their base URL.
//!
//! With `--forward`, the listener hands every request here first. Three shapes arrive:
//! - `CONNECT host:port`: for an intercepted host, graph-vcr answers 200, terminates TLS with
//!   a leaf from the local CA (`ca`), and serves the decrypted requests (h2 or HTTP/1.1)
//!   through [`Proxy::handle`], exactly like reverse mode. Any other host is tunnelled
//!   untouched in record and audit mode and refused (403) in replay and auto mode.
//! - `GET http://host/...` (absolute form, plain-HTTP proxying): the same decision per host.
//! - `GET /v1.0/...` (origin form): reverse mode, to `--upstream`, as without `--forward`.
//!
//! graph-vcr connects only where this module's [`route`] allows: the real address of an
//! intercepted host (or `--upstream` when given), or a tunnel in record and audit mode. A
//! `Host` header never chooses a destination, and in reverse mode nothing a client sends does.

mod tunnel;

pub use tunnel::{DEFAULT_TUNNEL, TunnelPolicy};

use crate::ca::{CaError, CaOptions, LocalCa};
use crate::connection::ConnectionScope;
use crate::graph_error::GraphError;
use crate::links::ClientOrigin;
use crate::mode::Mode;
use crate::proxy::Proxy;
use crate::upstream::Destination;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

/// Intercepted by default: Microsoft Graph's global service and its national clouds
/// (US Government L4 and L5, China operated by 21Vianet).
pub const DEFAULT_INTERCEPT: &[&str] = &[
    "graph.microsoft.com",
    "graph.microsoft.us",
    "dod-graph.microsoft.us",
    "microsoftgraph.chinacloudapi.cn",
];

/// Forward-proxy mode: which hosts to intercept and which CA signs for them.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ForwardOptions {
    /// Also work as a forward proxy: clients set HTTPS_PROXY=http://ADDR.
    ///
    /// CONNECT to an intercepted host is decrypted with a certificate from the local CA (make
    /// it once with `graph-vcr ca init`, trust it as `graph-vcr ca show` says) and goes through
    /// the same record/replay pipeline. Other hosts: tunnelled untouched in record and audit,
    /// refused in replay and auto. Base-URL (reverse) requests keep working beside it.
    #[arg(long, env = "GRAPH_VCR_FORWARD")]
    pub forward: bool,

    /// A host to intercept with --forward (repeatable, or comma-separated).
    ///
    /// Replaces the default list: graph.microsoft.com, graph.microsoft.us,
    /// dod-graph.microsoft.us, microsoftgraph.chinacloudapi.cn. Example: `--intercept graph.microsoft.com`.
    #[arg(
        long = "intercept",
        env = "GRAPH_VCR_INTERCEPT",
        value_name = "HOST",
        value_delimiter = ',',
        requires = "forward"
    )]
    pub intercept: Vec<String>,

    /// A host record and audit may tunnel to, untouched, with --forward (repeatable, or
    /// comma-separated; `*.suffix` and `*` allowed).
    ///
    /// Replaces the default list, the Entra ID sign-in hosts (login.microsoftonline.com,
    /// login.microsoft.com, login.windows.net and the national clouds'). Never a loopback,
    /// link-local or private address unless that host is named here (a wildcard does not name
    /// it), never graph-vcr itself. Example: `--tunnel login.microsoftonline.com,*.blob.core.windows.net`.
    #[arg(
        long = "tunnel",
        env = "GRAPH_VCR_TUNNEL",
        value_name = "HOST",
        value_delimiter = ',',
        requires = "forward"
    )]
    pub tunnel: Vec<String>,

    #[command(flatten)]
    pub ca: CaOptions,
}

/// Why forward mode could not start.
#[derive(Debug, Error)]
pub enum ForwardError {
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error("--intercept {0:?}: not a host name or IP address")]
    BadHost(String),
    #[error("--tunnel {0:?}: not a host name, IP address, `*.suffix` or `*`")]
    BadTunnel(String),
}

/// What forward mode does with a request for a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Decrypt (CONNECT) or take in (plain HTTP), and run the pipeline.
    Intercept,
    /// Pass on untouched: no check, no record, no journal.
    Tunnel,
    /// Answer 403: replay never touches the network, and auto passes on only what it intercepts.
    Refuse,
}

/// The whole policy, in one place.
pub fn route(mode: Mode, intercepted: bool) -> Route {
    match (intercepted, mode) {
        (true, _) => Route::Intercept,
        (false, Mode::Record | Mode::Audit) => Route::Tunnel,
        (false, Mode::Replay | Mode::Auto) => Route::Refuse,
    }
}

/// A running forward proxy's state.
pub struct Forwarder {
    mode: Mode,
    hosts: Vec<String>,
    ca: LocalCa,
    /// `--upstream` was given: intercepted requests go there instead of the host asked for.
    to_upstream: bool,
    connect_timeout: Duration,
    tunnel: TunnelPolicy,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("mode", &self.mode)
            .field("hosts", &self.hosts)
            .finish()
    }
}

impl Forwarder {
    /// Loads the CA (a clear error naming `graph-vcr ca init` when it is missing).
    pub fn new(
        options: &ForwardOptions,
        mode: Mode,
        to_upstream: bool,
        connect_timeout: Duration,
    ) -> Result<Self, ForwardError> {
        let valid = |h: &str| {
            !h.is_empty()
                && h.parse::<http::uri::Authority>()
                    .is_ok_and(|a| a.port().is_none() && a.host() == h)
        };
        let hosts = if options.intercept.is_empty() {
            DEFAULT_INTERCEPT.iter().map(|h| h.to_string()).collect()
        } else {
            options
                .intercept
                .iter()
                .map(|h| normalize_host(h))
                .map(|h| {
                    if valid(&h) {
                        Ok(h)
                    } else {
                        Err(ForwardError::BadHost(h))
                    }
                })
                .collect::<Result<_, _>>()?
        };
        let tunnel = options
            .tunnel
            .iter()
            .map(|h| normalize_host(h))
            .map(|h| {
                let pattern = h == "*" || h.strip_prefix("*.").is_some_and(&valid);
                if pattern || valid(&h) {
                    Ok(h)
                } else {
                    Err(ForwardError::BadTunnel(h))
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            mode,
            hosts,
            ca: LocalCa::load(&options.ca)?,
            to_upstream,
            connect_timeout,
            tunnel: TunnelPolicy::new(tunnel),
        })
    }

    /// Where the listener is, once bound: a tunnel never goes back to it.
    pub fn listening_on(&self, addr: std::net::SocketAddr) {
        self.tunnel.set_own(addr);
    }

    /// The hosts record and audit may tunnel to.
    pub fn tunnel_hosts(&self) -> &[String] {
        self.tunnel.hosts()
    }

    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    pub fn ca(&self) -> &LocalCa {
        &self.ca
    }

    pub fn intercepts(&self, host: &str) -> bool {
        let host = normalize_host(host);
        self.hosts.contains(&host)
    }

    /// Answers one request that reached the listener in forward mode.
    pub async fn handle(
        self: &Arc<Self>,
        proxy: &Arc<Proxy>,
        request: Request<Incoming>,
        scope: &ConnectionScope,
    ) -> Response<Full<Bytes>> {
        if request.method() == Method::CONNECT {
            return self.connect(proxy, request, scope).await;
        }
        let Some(authority) = request.uri().authority().cloned() else {
            // Origin form: a base-URL client, reverse mode.
            return proxy.handle(request).await;
        };
        let https = request.uri().scheme_str() == Some("https");
        let host = normalize_host(authority.host());
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        match route(self.mode, self.intercepts(&host)) {
            Route::Intercept => {
                let mut request = request;
                request
                    .extensions_mut()
                    .insert(ClientOrigin(origin_of(https, &host, port)));
                // Graph speaks only HTTPS: a plain-HTTP request to it goes out over TLS.
                let port = if https { port } else { 443 };
                if let Some(d) = self.destination(&host, port) {
                    request.extensions_mut().insert(d);
                }
                proxy.handle(request).await
            }
            Route::Tunnel => {
                if let Err(why) = self.tunnel.resolve(&host, port).await {
                    return self.refuse(proxy, &request, &authority_of(&host, port), &why);
                }
                proxy.stats.tunnelled.bump();
                let to = Destination {
                    https,
                    authority: authority_of(&host, port),
                };
                tracing::debug!(to = %to.url(), "passing on a plain-HTTP request");
                proxy.pass_on(request, &to).await
            }
            Route::Refuse => {
                let why = self.not_intercepted();
                self.refuse(proxy, &request, &authority_of(&host, port), why)
            }
        }
    }

    async fn connect(
        self: &Arc<Self>,
        proxy: &Arc<Proxy>,
        mut request: Request<Incoming>,
        scope: &ConnectionScope,
    ) -> Response<Full<Bytes>> {
        let Some(authority) = request.uri().authority().cloned() else {
            return GraphError::new(
                StatusCode::BAD_REQUEST,
                "graphVcrBadConnect",
                "CONNECT needs a host:port target",
            )
            .into_response(None);
        };
        let host = normalize_host(authority.host());
        let port = authority.port_u16().unwrap_or(443);
        let target = authority_of(&host, port);
        match route(self.mode, self.intercepts(&host)) {
            Route::Refuse => self.refuse(proxy, &request, &target, self.not_intercepted()),
            Route::Intercept => {
                let config = match self.ca.server_config(&host) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(host = %host, error = %e, "cannot make a certificate");
                        return GraphError::new(
                            StatusCode::BAD_GATEWAY,
                            "graphVcrInterceptFailed",
                            format!("graph-vcr could not make a certificate for {host}: {e}"),
                        )
                        .into_response(None);
                    }
                };
                let upgrade = hyper::upgrade::on(&mut request);
                let destination = self.destination(&host, port);
                let origin = ClientOrigin(origin_of(true, &host, port));
                let (proxy, scope) = (Arc::clone(proxy), scope.clone());
                tokio::spawn(async move {
                    let io = match upgrade.await {
                        Ok(io) => TokioIo::new(io),
                        Err(e) => {
                            tracing::debug!(error = %e, "CONNECT was not followed through");
                            return;
                        }
                    };
                    let accept = TlsAcceptor::from(config).accept(io);
                    let tls = match tokio::time::timeout(scope.handshake_timeout(), accept).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::warn!(host = %host, error = %e,
                                "TLS handshake with the client failed: does it trust graph-vcr's CA? (`graph-vcr ca show`)");
                            return;
                        }
                        Err(_) => {
                            tracing::warn!(host = %host, "client did not finish the TLS handshake in time");
                            return;
                        }
                    };
                    tracing::debug!(host = %host, "intercepting");
                    scope
                        .serve(tls, move |request| {
                            let proxy = Arc::clone(&proxy);
                            let destination = destination.clone();
                            let origin = origin.clone();
                            async move { inside(&proxy, request, destination, origin).await }
                        })
                        .await;
                });
                Response::new(Full::new(Bytes::new()))
            }
            Route::Tunnel => {
                let addrs = match self.tunnel.resolve(&host, port).await {
                    Ok(addrs) => addrs,
                    Err(why) => return self.refuse(proxy, &request, &target, &why),
                };
                // Connect before answering, so a failure is a clear 502, not a dead tunnel; to
                // the addresses just checked, not to a second lookup's.
                let connected =
                    tokio::time::timeout(self.connect_timeout, TcpStream::connect(&addrs[..]))
                        .await;
                let mut stream = match connected {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return tunnel_failed(&target, &e.to_string()),
                    Err(_) => return tunnel_failed(&target, "timed out"),
                };
                proxy.stats.tunnelled.bump();
                tracing::info!(%target, "tunnelling (not intercepted)");
                let upgrade = hyper::upgrade::on(&mut request);
                let scope = scope.clone();
                tokio::spawn(async move {
                    let mut io = match upgrade.await {
                        Ok(io) => TokioIo::new(io),
                        Err(e) => {
                            tracing::debug!(error = %e, "CONNECT was not followed through");
                            return;
                        }
                    };
                    let copied = scope
                        .hold(tokio::io::copy_bidirectional(&mut io, &mut stream))
                        .await;
                    tracing::debug!(%target, ?copied, "tunnel closed");
                });
                Response::new(Full::new(Bytes::new()))
            }
        }
    }

    /// Where an intercepted host's requests go: its real address, unless `--upstream` is given.
    fn destination(&self, host: &str, port: u16) -> Option<Destination> {
        (!self.to_upstream).then(|| Destination {
            https: true,
            authority: authority_of(host, port),
        })
    }

    /// Why a host that is not intercepted is refused in this mode.
    fn not_intercepted(&self) -> &'static str {
        match self.mode {
            Mode::Replay => {
                "the host is not intercepted and replay mode never opens a network connection"
            }
            _ => "the host is not intercepted and auto mode passes on only the hosts it intercepts",
        }
    }

    fn refuse(
        &self,
        proxy: &Proxy,
        request: &Request<Incoming>,
        target: &str,
        why: &str,
    ) -> Response<Full<Bytes>> {
        tracing::warn!(method = %request.method(), %target, %why, "refused");
        let error = GraphError::new(
            StatusCode::FORBIDDEN,
            "graphVcrNotIntercepted",
            format!(
                "graph-vcr refused {} {target}: {why}. Intercepted hosts: {} (change with --intercept HOST)",
                request.method(),
                self.hosts.join(", ")
            ),
        )
        .with_detail("target", target);
        proxy.refused(request.method(), request.uri(), target, error)
    }
}

/// A request decrypted from an intercepted tunnel.
async fn inside(
    proxy: &Proxy,
    mut request: Request<Incoming>,
    destination: Option<Destination>,
    origin: ClientOrigin,
) -> Response<Full<Bytes>> {
    if request.method() == Method::CONNECT {
        return GraphError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "graphVcrBadConnect",
            "CONNECT inside an intercepted connection is not supported",
        )
        .into_response(None);
    }
    if let Some(d) = destination {
        request.extensions_mut().insert(d);
    }
    request.extensions_mut().insert(origin);
    proxy.handle(request).await
}

/// The origin a client used for a host it reached through the proxy: what links in its
/// answers must point at (`links`).
fn origin_of(https: bool, host: &str, port: u16) -> String {
    match (https, port) {
        (true, 443) => format!("https://{host}"),
        (false, 80) => format!("http://{host}"),
        (true, _) => format!("https://{}", authority_of(host, port)),
        (false, _) => format!("http://{}", authority_of(host, port)),
    }
}

/// The answer to `CONNECT` when graph-vcr was started without `--forward`.
pub fn not_forwarding<B>(request: &Request<B>) -> Response<Full<Bytes>> {
    tracing::warn!(target = %request.uri(), "CONNECT without --forward; refused");
    GraphError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "graphVcrNotAForwardProxy",
        "graph-vcr is running as a reverse proxy (point the client's base URL at it); \
         to use it as HTTPS_PROXY, start it with --forward",
    )
    .into_response(request.headers().get(crate::headers::CLIENT_REQUEST_ID))
}

fn tunnel_failed(target: &str, cause: &str) -> Response<Full<Bytes>> {
    tracing::warn!(%target, cause, "tunnel could not connect");
    GraphError::new(
        StatusCode::BAD_GATEWAY,
        "graphVcrTunnelFailed",
        format!("graph-vcr could not connect to {target}: {cause}"),
    )
    .into_response(None)
}

/// Lower-case, without a trailing dot: `Graph.Microsoft.com.` is `graph.microsoft.com`.
fn normalize_host(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

fn authority_of(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        for mode in [Mode::Record, Mode::Replay, Mode::Auto, Mode::Audit] {
            assert_eq!(route(mode, true), Route::Intercept);
        }
        assert_eq!(route(Mode::Record, false), Route::Tunnel);
        assert_eq!(route(Mode::Audit, false), Route::Tunnel);
        assert_eq!(route(Mode::Replay, false), Route::Refuse);
        assert_eq!(route(Mode::Auto, false), Route::Refuse);
    }

    #[test]
    fn hosts_compare_normalized() {
        assert_eq!(
            normalize_host("Graph.Microsoft.COM."),
            "graph.microsoft.com"
        );
        assert_eq!(authority_of("::1", 443), "[::1]:443");
        assert_eq!(authority_of("[::1]", 443), "[::1]:443");
        assert_eq!(authority_of("example.com", 8443), "example.com:8443");
    }
}
