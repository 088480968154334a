//! Listener: accepts connections and serves HTTP/1.1 and HTTP/2 (prior knowledge) on them.
//!
//! Each connection runs on its own task and hands every request to [`Proxy::handle`]. On
//! shutdown the listener stops accepting, lets in-flight requests finish within a grace
//! period, and returns; the caller then prints the summary.

use crate::proxy::Proxy;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long in-flight requests get to finish after a shutdown signal.
pub const GRACE: Duration = Duration::from_secs(10);

/// Where to listen.
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
}

/// A bound listener, ready to serve.
pub struct Listener {
    listener: TcpListener,
    proxy: Arc<Proxy>,
}

impl Listener {
    pub async fn bind(addr: SocketAddr, proxy: Arc<Proxy>) -> std::io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
            proxy,
        })
    }

    /// The address actually bound (the real port when 0 was asked).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then drains in-flight requests for up to [`GRACE`].
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let graceful = GracefulShutdown::new();
        let builder = auto::Builder::new(TokioExecutor::new());
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
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
                    let proxy = Arc::clone(&self.proxy);
                    let service = service_fn(move |req| {
                        let proxy = Arc::clone(&proxy);
                        async move { Ok::<_, Infallible>(proxy.handle(req).await) }
                    });
                    let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                () = &mut shutdown => break,
            }
        }
        drop(self.listener);
        if tokio::time::timeout(GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("in-flight requests did not finish within {GRACE:?}; stopping anyway");
        }
    }
}
