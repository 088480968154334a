//! Listener: accepts connections and serves HTTP/1.1 and HTTP/2 (prior knowledge) on them.
//!
//! Each connection runs on its own task and hands every request to [`Proxy::handle`]. The
//! listener owns the connection-level limits: how many connections at once (more wait in the
//! kernel's backlog: backpressure, not errors), how large and how many request headers (431),
//! how long a client may take to send them (slow-loris), and how long a connection may sit
//! idle. On shutdown it stops accepting, lets in-flight requests finish within a grace period,
//! and returns; the caller then prints the summary.
//!
//! With `--forward`, each request also carries its [`ConnectionScope`], so that `forward` can
//! go on serving the connection's bytes after a `CONNECT` under the same limits, the same
//! connection slot, and the same shutdown drain.

use crate::forward::{self, Forwarder};
use crate::proxy::Proxy;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long in-flight requests get to finish after a shutdown signal.
pub const GRACE: Duration = Duration::from_secs(10);

/// Where to listen, and the connection limits.
#[derive(clap::Args, Debug, Clone)]
pub struct ListenOptions {
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    ///
    /// Example: `--listen 127.0.0.1:0`. Bind to loopback unless you mean to share the proxy.
    #[arg(
        long,
        env = "GRAPH_VCR_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,

    /// Most connections served at once; more wait until one closes.
    #[arg(long, env = "GRAPH_VCR_MAX_CONNECTIONS", value_name = "N", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Largest request head (request line and headers) in bytes; larger is answered 431.
    #[arg(long, env = "GRAPH_VCR_MAX_HEADER_SIZE", value_name = "BYTES", default_value_t = 64 * 1024,
          value_parser = clap::value_parser!(u32).range(8192..))]
    pub max_header_size: u32,

    /// Most request headers; more are answered 431.
    #[arg(long, env = "GRAPH_VCR_MAX_HEADERS", value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_headers: u32,

    /// Close a connection whose client takes longer than this to send a request head.
    ///
    /// Protects against slow-loris clients. Example: `--header-timeout 5s`.
    #[arg(long, env = "GRAPH_VCR_HEADER_TIMEOUT", value_name = "DURATION", default_value = "10s",
          value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,

    /// Close a keep-alive connection with no request in flight after this long without traffic.
    #[arg(long, env = "GRAPH_VCR_IDLE_TIMEOUT", value_name = "DURATION", default_value = "60s",
          value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
}

/// A bound listener, ready to serve.
pub struct Listener {
    listener: TcpListener,
    proxy: Arc<Proxy>,
    forward: Option<Arc<Forwarder>>,
    options: ListenOptions,
}

impl Listener {
    /// `forward` makes the listener a forward proxy too (`--forward`).
    pub async fn bind(
        options: &ListenOptions,
        proxy: Arc<Proxy>,
        forward: Option<Arc<Forwarder>>,
    ) -> io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(options.listen).await?,
            proxy,
            forward,
            options: options.clone(),
        })
    }

    /// The address actually bound (the real port when 0 was asked).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then drains in-flight requests for up to [`GRACE`].
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let graceful = GracefulShutdown::new();
        let builder = Arc::new(self.http_builder());
        let slots = Arc::new(Semaphore::new(self.options.max_connections as usize));
        tokio::pin!(shutdown);
        loop {
            // Take a slot before accepting: past the limit, clients wait in the backlog.
            let slot = tokio::select! {
                slot = Arc::clone(&slots).acquire_owned() => match slot {
                    Ok(s) => s,
                    Err(_) => break,
                },
                () = &mut shutdown => break,
            };
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                () = &mut shutdown => break,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let activity = Arc::new(Activity::default());
            let io = TokioIo::new(Watched {
                inner: stream,
                activity: Arc::clone(&activity),
            });
            let proxy = Arc::clone(&self.proxy);
            let idle_timeout = self.options.idle_timeout;
            let Some(forwarder) = &self.forward else {
                // Reverse mode only: the hot path carries nothing per request.
                let in_flight = Arc::clone(&activity);
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let proxy = Arc::clone(&proxy);
                    let in_flight = Arc::clone(&in_flight);
                    async move {
                        let _busy = in_flight.begin();
                        if req.method() == http::Method::CONNECT {
                            return Ok::<_, Infallible>(forward::not_forwarding(&req));
                        }
                        Ok::<_, Infallible>(proxy.handle(req).await)
                    }
                });
                let conn = graceful.watch(builder.serve_connection(io, service).into_owned());
                tokio::spawn(async move {
                    watch_connection(conn, &activity, idle_timeout, peer).await;
                    drop(slot);
                });
                continue;
            };
            // Forward mode: the connection slot belongs to the scope, which a tunnel keeps.
            let scope = ConnectionScope(Arc::new(ScopeInner {
                builder: Arc::clone(&builder),
                handshake_timeout: self.options.header_timeout,
                idle_timeout,
                activity: Arc::clone(&activity),
                peer,
                _slot: slot,
                watcher: Mutex::new(Some(graceful.watcher())),
            }));
            let forwarder = Arc::clone(forwarder);
            let request_scope = scope.clone();
            let service = service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                let proxy = Arc::clone(&proxy);
                let forwarder = Arc::clone(&forwarder);
                let scope = request_scope.clone();
                async move {
                    let _busy = scope.busy();
                    req.extensions_mut().insert(scope.clone());
                    Ok::<_, Infallible>(forwarder.handle(&proxy, req, &scope).await)
                }
            });
            let conn = graceful.watch(
                builder
                    .serve_connection_with_upgrades(io, service)
                    .into_owned(),
            );
            tokio::spawn(async move {
                watch_connection(conn, &activity, idle_timeout, peer).await;
                drop(scope);
            });
        }
        drop(self.listener);
        if tokio::time::timeout(GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("in-flight requests did not finish within {GRACE:?}; stopping anyway");
        }
    }

    /// HTTP/1.1 and h2 with the connection limits; shared by every connection, including the
    /// ones forward mode decrypts.
    fn http_builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.options.header_timeout)
            .max_headers(self.options.max_headers as usize)
            .max_buf_size(self.options.max_header_size as usize);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(self.options.max_header_size);
        builder
    }
}

/// Runs a connection until it ends or idles out.
async fn watch_connection<E: std::fmt::Display>(
    conn: impl Future<Output = Result<(), E>>,
    activity: &Activity,
    idle_timeout: Duration,
    peer: SocketAddr,
) {
    tokio::select! {
        result = conn => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        () = activity.idle_for(idle_timeout) => {
            tracing::debug!(%peer, "closing idle connection");
        }
    }
}

/// The connection a forward-mode request arrived on. `forward` keeps a clone for as long as
/// it serves the connection's bytes after `CONNECT`, which keeps the connection's slot taken
/// (`--max-connections` counts tunnels), its idle timeout running, and shutdown waiting for it.
#[derive(Clone)]
pub struct ConnectionScope(Arc<ScopeInner>);

struct ScopeInner {
    builder: Arc<auto::Builder<TokioExecutor>>,
    handshake_timeout: Duration,
    idle_timeout: Duration,
    activity: Arc<Activity>,
    peer: SocketAddr,
    _slot: OwnedSemaphorePermit,
    /// Taken by the first connection served inside a tunnel (one per CONNECT).
    watcher: Mutex<Option<Watcher>>,
}

impl ConnectionScope {
    /// How long a client gets for a TLS handshake inside a tunnel (`--header-timeout`).
    pub fn handshake_timeout(&self) -> Duration {
        self.0.handshake_timeout
    }

    /// Marks a request in flight (the idle timeout waits for it) until dropped.
    pub fn busy(&self) -> Busy {
        self.0.activity.begin()
    }

    /// Serves HTTP/1.1 or h2 on `io` (a decrypted tunnel) with the listener's limits, until
    /// the client closes it, it idles out, or the listener shuts down.
    pub async fn serve<I, F, Fut>(&self, io: I, handler: F)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        F: Fn(http::Request<hyper::body::Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = http::Response<Full<Bytes>>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let scope = self.clone();
        let service = service_fn(move |req| {
            let handler = Arc::clone(&handler);
            let busy = scope.busy();
            async move {
                let _busy = busy;
                Ok::<_, Infallible>(handler(req).await)
            }
        });
        let inner = &self.0;
        let conn = inner.builder.serve_connection(TokioIo::new(io), service);
        let watcher = inner
            .watcher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match watcher {
            Some(w) => {
                let conn = w.watch(conn.into_owned());
                watch_connection(conn, &inner.activity, inner.idle_timeout, inner.peer).await;
            }
            None => {
                watch_connection(conn, &inner.activity, inner.idle_timeout, inner.peer).await;
            }
        }
    }

    /// Runs a raw tunnel until it ends or has moved no bytes for the idle timeout. Shutdown
    /// does not wait for tunnels: they carry no call graph-vcr answers or records, and a
    /// client's idle keep-alive tunnel would otherwise hold every shutdown for the grace period.
    pub async fn hold<F: Future>(&self, tunnel: F) -> Option<F::Output> {
        drop(
            self.0
                .watcher
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        tokio::select! {
            out = tunnel => Some(out),
            () = self.0.activity.idle_for(self.0.idle_timeout) => None,
        }
    }
}

/// When a connection last moved bytes, and how many requests it has in flight.
struct Activity {
    start: Instant,
    last_millis: AtomicU64,
    in_flight: AtomicUsize,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            last_millis: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }
}

impl Activity {
    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_millis.store(ms, Ordering::Relaxed);
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Busy(Arc::clone(self))
    }

    /// Completes once the connection has had no traffic and no request for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let last = Duration::from_millis(self.last_millis.load(Ordering::Relaxed));
            let idle = self.start.elapsed().saturating_sub(last);
            if self.in_flight.load(Ordering::Relaxed) == 0 && idle >= limit {
                return;
            }
            // Check again when the limit could next be reached (at least every limit).
            tokio::time::sleep(limit.saturating_sub(idle).max(Duration::from_millis(10))).await;
        }
    }
}

/// Marks a request in flight until dropped.
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A TCP stream that records when it last moved bytes.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
