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

use crate::connection::{Activity, ConnectionScope, Timeouts, Watched, watch_connection};
use crate::forward::{self, Forwarder};
use crate::proxy::Proxy;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// hyper's limit on request headers, which `--max-headers` defaults to (`http_builder`).
const HYPER_MAX_HEADERS: usize = 100;

/// How long in-flight requests get to finish after a shutdown signal.
pub const GRACE: Duration = Duration::from_secs(10);

/// Where to listen, and the connection limits.
#[derive(clap::Args, Debug, Clone)]
pub struct ListenOptions {
    /// Address to listen on [default: 127.0.0.1:8080; with `-- COMMAND`, a free port];
    /// port 0 picks a free port (printed on stdout).
    ///
    /// Example: `--listen 127.0.0.1:0`. Bind to loopback unless you mean to share the proxy.
    #[arg(long, env = "GRAPH_VCR_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Most connections served at once; more wait until one closes.
    #[arg(long, env = "GRAPH_VCR_MAX_CONNECTIONS", value_name = "N", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Largest request head (request line and headers) in bytes; larger is answered 431.
    #[arg(long, env = "GRAPH_VCR_MAX_HEADER_SIZE", value_name = "BYTES", default_value_t = 64 * 1024,
          value_parser = clap::value_parser!(u32).range(8192..))]
    pub max_header_size: u32,

    /// Most request headers; more are answered 431.
    #[arg(long, env = "GRAPH_VCR_MAX_HEADERS", value_name = "N", default_value_t = HYPER_MAX_HEADERS as u32,
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

/// The address served without `--listen`.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);

impl ListenOptions {
    /// Where to listen: `--listen`, else [`DEFAULT_LISTEN`].
    pub fn addr(&self) -> SocketAddr {
        self.listen.unwrap_or(DEFAULT_LISTEN)
    }
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
            listener: TcpListener::bind(options.addr()).await?,
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
        let graceful = crate::drain::Drain::default();
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
            let timeouts = Timeouts {
                header: Some(self.options.header_timeout),
                idle: self.options.idle_timeout,
            };
            let Some(forwarder) = &self.forward else {
                // Reverse mode only: the hot path carries nothing per request.
                let in_flight = Arc::clone(&activity);
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let proxy = Arc::clone(&proxy);
                    let in_flight = Arc::clone(&in_flight);
                    async move {
                        let _busy = in_flight.begin();
                        if req.method() == http::Method::CONNECT {
                            return crate::connection::answer(forward::not_forwarding(&req));
                        }
                        crate::connection::answer(proxy.handle(req).await)
                    }
                });
                let conn = graceful.watch(builder.serve_connection(io, service).into_owned());
                tokio::spawn(async move {
                    watch_connection(conn, &activity, timeouts, peer).await;
                    drop(slot);
                });
                continue;
            };
            // Forward mode: the connection slot belongs to the scope, which a tunnel keeps.
            let scope = ConnectionScope::new(
                Arc::clone(&builder),
                timeouts,
                Arc::clone(&activity),
                peer,
                slot,
                graceful.watcher(),
            );
            let forwarder = Arc::clone(forwarder);
            let request_scope = scope.clone();
            let service = service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                let proxy = Arc::clone(&proxy);
                let forwarder = Arc::clone(&forwarder);
                let scope = request_scope.clone();
                async move {
                    let _busy = scope.busy();
                    req.extensions_mut().insert(scope.clone());
                    crate::connection::answer(forwarder.handle(&proxy, req, &scope).await)
                }
            });
            let conn = graceful.watch(
                builder
                    .serve_connection_with_upgrades(io, service)
                    .into_owned(),
            );
            tokio::spawn(async move {
                watch_connection(conn, &activity, timeouts, peer).await;
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
        let mut http1 = builder.http1();
        // `--header-timeout` is kept by each connection's watch (`connection`), not by a timer
        // hyper would arm for every request (30 s by default once it has a timer).
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(None::<Duration>)
            .max_buf_size(self.options.max_header_size as usize);
        // hyper's own limit is the default; setting it, even to the same number, makes hyper
        // fill a heap vector of that many slots on every request instead of using its inline
        // array (`smallvec!` against `smallvec_inline!`): 2% of replay's time under load.
        if self.options.max_headers as usize != HYPER_MAX_HEADERS {
            http1.max_headers(self.options.max_headers as usize);
        }
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(self.options.max_header_size);
        builder
    }
}
