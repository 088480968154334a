//! Connection: one accepted TCP connection's state, shared by `listener` (which accepts and
//! serves it) and `forward` (which goes on serving its bytes after a `CONNECT`): when it last
//! moved bytes, how many requests it has in flight, its header and idle timeouts, and — in
//! forward mode — the [`ConnectionScope`] that keeps its slot and its shutdown drain for a
//! tunnel.
//!
//! Both timeouts are kept by one watch per connection that looks at flags every quarter of the
//! shorter one, not by a timer per request: hyper's own header timeout armed and cleared a
//! timer for every request, a tenth of replay's time under load (`docs/PERFORMANCE.md`).

use crate::drain::Watcher;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

/// Runs a connection until it ends or idles out. The connection is a task of its own and this
/// one only waits for it or for the idle watch: polled together in one task, the idle timer
/// was polled again on every wake-up of a busy connection, several per request.
pub(crate) async fn watch_connection<C, E>(
    conn: C,
    activity: &Activity,
    timeouts: Timeouts,
    peer: SocketAddr,
) where
    C: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let mut served = tokio::spawn(conn);
    tokio::select! {
        joined = &mut served => match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
            Err(e) => tracing::error!(%peer, error = %e, "connection task failed"),
        },
        why = activity.watch(timeouts) => {
            // Dropping the connection closes it, as leaving the select did before.
            served.abort();
            match why {
                Expired::Idle => tracing::debug!(%peer, "closing idle connection"),
                Expired::Head => tracing::info!(%peer, timeout = ?timeouts.header,
                    "closing a connection whose request head did not arrive within --header-timeout"),
            }
        }
    }
}

/// The limits a connection's watch keeps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// How long a request head may take once its first bytes came (`--header-timeout`);
    /// `None` for a raw tunnel, whose bytes are not requests.
    pub(crate) header: Option<Duration>,
    /// How long a connection may move no bytes with no request in flight (`--idle-timeout`).
    pub(crate) idle: Duration,
}

/// Why a connection's watch ended it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    Idle,
    Head,
}

/// The connection a forward-mode request arrived on. `forward` keeps a clone for as long as
/// it serves the connection's bytes after `CONNECT`, which keeps the connection's slot taken
/// (`--max-connections` counts tunnels), its idle timeout running, and shutdown waiting for it.
#[derive(Clone)]
pub struct ConnectionScope(Arc<ScopeInner>);

struct ScopeInner {
    builder: Arc<auto::Builder<TokioExecutor>>,
    timeouts: Timeouts,
    activity: Arc<Activity>,
    peer: SocketAddr,
    _slot: OwnedSemaphorePermit,
    /// Taken by the first connection served inside a tunnel (one per CONNECT).
    watcher: Mutex<Option<Watcher>>,
}

impl ConnectionScope {
    /// The scope of a forward-mode connection, holding its `slot` and shutdown `watcher`.
    pub(crate) fn new(
        builder: Arc<auto::Builder<TokioExecutor>>,
        timeouts: Timeouts,
        activity: Arc<Activity>,
        peer: SocketAddr,
        slot: OwnedSemaphorePermit,
        watcher: Watcher,
    ) -> Self {
        Self(Arc::new(ScopeInner {
            builder,
            timeouts,
            activity,
            peer,
            _slot: slot,
            watcher: Mutex::new(Some(watcher)),
        }))
    }

    /// How long a client gets for a TLS handshake inside a tunnel (`--header-timeout`).
    pub fn handshake_timeout(&self) -> Duration {
        self.0.timeouts.header.unwrap_or(self.0.timeouts.idle)
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
                answer(handler(req).await)
            }
        });
        let inner = &self.0;
        let conn = inner
            .builder
            .serve_connection(TokioIo::new(io), service)
            .into_owned();
        let watcher = inner
            .watcher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match watcher {
            Some(w) => {
                let conn = w.watch(conn.into_owned());
                watch_connection(conn, &inner.activity, inner.timeouts, inner.peer).await;
            }
            None => {
                watch_connection(conn, &inner.activity, inner.timeouts, inner.peer).await;
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
            _ = self.0.activity.watch(Timeouts { header: None, ..self.0.timeouts }) => None,
        }
    }
}

/// Whether a connection has moved bytes lately, how many requests it has in flight, and
/// whether a request head has begun to arrive.
///
/// Bytes moved only set flags (no clock read per read or write: on a busy connection that was
/// a system-call-priced `clock_gettime` several times per request); the watch looks at them
/// every quarter of the shorter limit, so an idle connection is closed between 1 and 1.25
/// times `--idle-timeout` after its last byte, and a head still incomplete between 1 and 1.5
/// times `--header-timeout` after its first.
#[derive(Default)]
pub(crate) struct Activity {
    moved: AtomicBool,
    in_flight: AtomicUsize,
    /// Bytes arrived while no request was in flight: the next request's head has begun (on
    /// h2, frames that are not yet a request). Cleared when a request begins.
    head: AtomicBool,
    /// Requests begun so far: the watch tells a head that is still coming from a new one.
    begun: AtomicUsize,
}

impl Activity {
    pub(crate) fn touch(&self) {
        // A relaxed load first: a store on every read and write would bounce the cache line
        // between the cores that poll the connection.
        if !self.moved.load(Ordering::Relaxed) {
            self.moved.store(true, Ordering::Relaxed);
        }
    }

    /// Bytes were read: noted as traffic, and as a head begun if no request is in flight.
    pub(crate) fn read(&self) {
        self.touch();
        if self.in_flight.load(Ordering::Relaxed) == 0 && !self.head.load(Ordering::Relaxed) {
            self.head.store(true, Ordering::Relaxed);
        }
    }

    pub(crate) fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.begun.fetch_add(1, Ordering::Relaxed);
        if self.head.load(Ordering::Relaxed) {
            self.head.store(false, Ordering::Relaxed);
        }
        Busy(Arc::clone(self))
    }

    /// Completes when the connection has had no traffic and no request for the idle limit, or
    /// a request head has been arriving for the header limit with no request begun.
    pub(crate) async fn watch(&self, limits: Timeouts) -> Expired {
        let shortest = limits.header.map_or(limits.idle, |h| h.min(limits.idle));
        let step = (shortest / 4).max(Duration::from_millis(10));
        let mut quiet = Duration::ZERO;
        // How long a head has been seen arriving, from the first look that saw it.
        let mut head_for: Option<Duration> = None;
        let mut begun = self.begun.load(Ordering::Relaxed);
        loop {
            tokio::time::sleep(step).await;
            let moved = self.moved.swap(false, Ordering::Relaxed);
            let busy = self.in_flight.load(Ordering::Relaxed) > 0;
            if moved || busy {
                quiet = Duration::ZERO;
            } else {
                quiet += step;
                if quiet >= limits.idle {
                    return Expired::Idle;
                }
            }
            let now_begun = self.begun.load(Ordering::Relaxed);
            // The same head as at the last look: none begun since, none in flight.
            let waiting = !busy && now_begun == begun && self.head.load(Ordering::Relaxed);
            begun = now_begun;
            head_for = waiting.then(|| head_for.map_or(Duration::ZERO, |d| d + step));
            if let (Some(waited), Some(limit)) = (head_for, limits.header)
                && waited >= limit
            {
                return Expired::Head;
            }
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
pub(crate) struct Watched {
    pub(crate) inner: TcpStream,
    pub(crate) activity: Arc<Activity>,
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
            this.activity.read();
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

/// Marks a response that must not be sent: its connection is closed instead (`--faults`
/// `reset`), as a connection reset by the service would be.
#[derive(Debug, Clone, Copy)]
pub struct ResetConnection;

impl std::fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset injected by --faults")
    }
}

impl std::error::Error for ResetConnection {}

/// What a service gives hyper for a response: the response, or, for one marked
/// [`ResetConnection`], an error, on which hyper closes the connection without answering.
pub fn answer(
    response: http::Response<Full<Bytes>>,
) -> Result<http::Response<Full<Bytes>>, ResetConnection> {
    match response.extensions().get::<ResetConnection>() {
        Some(reset) => Err(*reset),
        None => Ok(response),
    }
}
