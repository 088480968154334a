//! The bare server of the wrk benchmark (`bench/wrk/ratio.sh`): hyper 1's HTTP/1.1 server on
//! tokio's multi-threaded runtime, reading each request's body and answering `204 No
//! Content`, and nothing else. What graph-vcr's replay is measured against, built with the
//! same profile.
//!
//! Usage: `cargo run --release --example bare_hyper -- 127.0.0.1:18081`

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18081".into());
    tokio::runtime::Runtime::new()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        println!("listening on http://{}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    let mut r = http::Response::new(Empty::<Bytes>::new());
                    *r.status_mut() = http::StatusCode::NO_CONTENT;
                    Ok::<_, std::convert::Infallible>(r)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
