//! Upstream: the real Graph service (or a stand-in), reached over TLS with rustls.
//!
//! Only record and auto mode build an `Upstream`; replay never has one, so it cannot open a
//! connection even by mistake. Connections are pooled (hyper-util's client) and verified
//! against the Mozilla roots (webpki-roots) plus any `--upstream-ca` roots, which is how a
//! corporate TLS-inspection root or a test CA is trusted. Each failure becomes an
//! [`UpstreamError`] that names the upstream and the cause; the proxy turns it into a
//! Graph-format 502 or 504.

use crate::headers;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Largest upstream response body graph-vcr will hold (assign responses are tiny).
pub const MAX_RESPONSE_BODY: usize = 64 * 1024 * 1024;
/// Where requests go when `--upstream` is not given.
pub const DEFAULT_UPSTREAM: &str = "https://graph.microsoft.com";

/// Another destination than the configured upstream for one request: set only by forward
/// mode, for a host it intercepts (its real address) or a plain-HTTP request it passes on.
/// Never taken from anything a client sends in reverse mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub https: bool,
    /// `host:port`.
    pub authority: String,
}

impl Destination {
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.authority)
    }
}

/// Where record and auto mode forward to.
#[derive(clap::Args, Debug, Clone)]
pub struct UpstreamOptions {
    /// Base URL of the service to forward to: https, or plain http for a local stand-in.
    ///
    /// The request's path is appended, so `/v1.0/deviceManagement/...` goes to
    /// `URL/v1.0/deviceManagement/...`. Default: https://graph.microsoft.com. With `--forward`,
    /// intercepted requests go to the host the client asked for unless this is given, in which
    /// case all of them go here. Example: `--upstream https://graph.microsoft.us`.
    #[arg(long, env = "GRAPH_VCR_UPSTREAM", value_name = "URL")]
    pub upstream: Option<String>,

    /// Also trust the root certificates in this PEM file (repeatable).
    ///
    /// For a corporate TLS-inspection proxy, or a test CA. The public web roots stay trusted.
    /// Example: `--upstream-ca /etc/ssl/corp-root.pem`.
    #[arg(
        long = "upstream-ca",
        env = "GRAPH_VCR_UPSTREAM_CA",
        value_name = "PEM"
    )]
    pub upstream_ca: Vec<PathBuf>,

    /// Give up on an upstream call after this long (answered 504).
    ///
    /// Example: `--upstream-timeout 30s`. Graph's own SDK default is 100 s.
    #[arg(long, env = "GRAPH_VCR_UPSTREAM_TIMEOUT", value_name = "DURATION", default_value = "100s",
          value_parser = humantime::parse_duration)]
    pub upstream_timeout: Duration,
}

/// Why an upstream call or setup failed.
#[derive(Debug, Error)]
pub enum UpstreamError {
    #[error("invalid --upstream {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("--upstream-ca {path}: {reason}")]
    BadCa { path: PathBuf, reason: String },
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    #[error("could not get a response from upstream {upstream}: {cause}")]
    Unreachable { upstream: String, cause: String },
    #[error("upstream {upstream} did not answer within {after}")]
    Timeout { upstream: String, after: String },
    #[error("upstream {upstream} sent a response body over {limit} bytes")]
    TooLarge { upstream: String, limit: usize },
}

impl UpstreamError {
    /// The status a client is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    /// A stable code for the Graph-format error body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "graphVcrUpstreamTimeout",
            Self::TooLarge { .. } => "graphVcrUpstreamResponseTooLarge",
            _ => "graphVcrUpstreamUnreachable",
        }
    }

    /// The Graph-format answer to the client, naming the upstream that failed.
    pub fn graph_error(&self, upstream: String) -> crate::graph_error::GraphError {
        crate::graph_error::GraphError::new(self.status(), self.code(), self.to_string())
            .with_detail("upstream", upstream)
    }
}

/// A complete upstream response.
#[derive(Debug)]
pub struct UpstreamResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A connection pool to one upstream.
pub struct Upstream {
    /// Whether `--upstream` was given (forward mode then sends everything there).
    explicit: bool,
    scheme: String,
    authority: String,
    prefix: String,
    display: String,
    timeout: Duration,
    client: Client<Connector, Full<Bytes>>,
}

impl Upstream {
    pub fn new(opts: &UpstreamOptions) -> Result<Self, UpstreamError> {
        let url = opts.upstream.as_deref().unwrap_or(DEFAULT_UPSTREAM);
        let bad = |reason: &str| UpstreamError::BadUrl {
            url: url.to_string(),
            reason: reason.into(),
        };
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let scheme = match uri.scheme_str() {
            Some("https") => "https",
            Some("http") => "http",
            _ => {
                return Err(bad(
                    "the scheme must be https (or http for a local stand-in)",
                ));
            }
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?.to_string();
        if uri.query().is_some() {
            return Err(bad("a query is not allowed in the base URL"));
        }
        let prefix = uri.path().trim_end_matches('/').to_string();

        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for path in &opts.upstream_ca {
            let ca_err = |reason: String| UpstreamError::BadCa {
                path: path.clone(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| ca_err(format!("not PEM: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| ca_err(format!("not a usable root certificate: {e}")))?;
                added += 1;
            }
            if added == 0 {
                return Err(ca_err("no CERTIFICATE block in the file".into()));
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // The pool speaks HTTP/1.1 upstream; offering only that keeps ALPN honest.
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(opts.upstream_timeout));
        let connector = Connector {
            http,
            tls: TlsConnector::from(Arc::new(tls)),
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            // Queue a body's bytes rather than copy them into the connection's write buffer:
            // with TLS hyper would otherwise flatten a 15 MB body into a buffer of that size,
            // which the pooled connection then keeps.
            .http1_writev(true)
            .build(connector);
        Ok(Self {
            explicit: opts.upstream.is_some(),
            display: format!("{scheme}://{authority}{prefix}"),
            scheme: scheme.to_string(),
            authority,
            prefix,
            timeout: opts.upstream_timeout,
            client,
        })
    }

    /// The base URL, for messages and records.
    pub fn url(&self) -> &str {
        &self.display
    }

    /// Whether `--upstream` was given rather than defaulted.
    pub fn is_explicit(&self) -> bool {
        self.explicit
    }

    /// Sends one request and reads the whole response. `headers` are the client's headers:
    /// hop-by-hop and control headers are dropped here, credentials are passed on untouched.
    /// `to` replaces the configured upstream for this request (forward mode only).
    pub async fn send(
        &self,
        to: Option<&Destination>,
        method: Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let (uri, display) = match to {
            None => (
                format!(
                    "{}://{}{}{}",
                    self.scheme, self.authority, self.prefix, path_and_query
                ),
                self.display.clone(),
            ),
            Some(d) => (format!("{}{path_and_query}", d.url()), d.url()),
        };
        let mut builder = http::Request::builder().method(method).uri(&uri);
        for (name, value) in headers::end_to_end(headers) {
            builder = builder.header(name, value);
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| UpstreamError::Unreachable {
                upstream: display.clone(),
                cause: format!("cannot build request for {uri}: {e}"),
            })?;
        let call = async {
            let response =
                self.client
                    .request(request)
                    .await
                    .map_err(|e| UpstreamError::Unreachable {
                        upstream: display.clone(),
                        cause: error_chain(&e),
                    })?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BODY)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        UpstreamError::TooLarge {
                            upstream: display.clone(),
                            limit: MAX_RESPONSE_BODY,
                        }
                    } else {
                        UpstreamError::Unreachable {
                            upstream: display.clone(),
                            cause: format!("response body broken off: {}", error_chain(e.as_ref())),
                        }
                    }
                })?;
            Ok(UpstreamResponse {
                status: parts.status,
                headers: parts.headers,
                body: body.to_bytes(),
            })
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::Timeout {
                upstream: display.clone(),
                after: humantime::format_duration(self.timeout).to_string(),
            }),
        }
    }
}

/// `outer: inner: innermost`, skipping a message its parent already contains.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let msg = s.to_string();
        if !parts.iter().any(|p| p.contains(&msg)) {
            parts.push(msg);
        }
        cur = s.source();
    }
    parts.join(": ")
}

#[derive(Clone)]
struct Connector {
    http: HttpConnector,
    tls: TlsConnector,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tower_service::Service::<Uri>::poll_ready(&mut self.http, cx).map_err(io::Error::other)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let mut http = self.http.clone();
        let tls = self.tls.clone();
        Box::pin(async move {
            let https = uri.scheme_str() == Some("https");
            let host = uri
                .host()
                .unwrap_or_default()
                .trim_matches(['[', ']'])
                .to_string();
            let tcp = http
                .call(uri)
                .await
                .map_err(|e| io::Error::other(format!("TCP connect: {}", error_chain(&e))))?
                .into_inner();
            if !https {
                return Ok(TokioIo::new(Stream::Plain(tcp)));
            }
            let name = ServerName::try_from(host.clone())
                .map_err(|e| io::Error::other(format!("bad TLS server name {host:?}: {e}")))?;
            let stream = tls
                .connect(name, tcp)
                .await
                .map_err(|e| io::Error::other(format!("TLS handshake with {host}: {e}")))?;
            Ok(TokioIo::new(Stream::Tls(Box::new(stream))))
        })
    }
}

/// A TCP or TLS connection to the upstream.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
