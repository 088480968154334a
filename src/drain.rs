//! Drain: the listener's graceful shutdown. On shutdown every connection is told to finish
//! the requests it has and close, and shutdown waits until all of them have.
//!
//! Each connection has a signal of its own (a oneshot), looked at only when the connection
//! has nothing to do. hyper-util's `GracefulShutdown`, used before, gives every connection a
//! receiver of one shared watch channel and polls it on every wake-up of the connection,
//! which locks one of the eight mutexes the channel's receivers all share: about 2% of
//! replay's samples under load (`docs/PERFORMANCE.md`).

use hyper_util::server::graceful::GracefulConnection;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use tokio::sync::{Notify, oneshot};

/// The connections being served, and whether they are being drained.
#[derive(Default)]
pub struct Drain {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    /// Told when the last connection ends while draining.
    emptied: Notify,
}

#[derive(Default)]
struct State {
    draining: bool,
    next: u64,
    /// Every connection not yet ended, with its signal until it is sent.
    live: HashMap<u64, Option<oneshot::Sender<()>>>,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drain {
    /// `conn`, ended gracefully when the drain begins.
    pub fn watch<C: GracefulConnection>(&self, conn: C) -> Draining<C> {
        self.watcher().watch(conn)
    }

    /// A place for a connection that is not made yet (forward mode's first connection
    /// inside a tunnel): counted from now, so shutdown waits for it.
    pub fn watcher(&self) -> Watcher {
        let (tx, rx) = oneshot::channel();
        let mut state = self.inner.state();
        let id = state.next;
        state.next += 1;
        // Made while draining: told at once.
        let tx = if state.draining {
            let _ = tx.send(());
            None
        } else {
            Some(tx)
        };
        state.live.insert(id, tx);
        drop(state);
        Watcher {
            signal: rx,
            entry: Entry {
                inner: Arc::clone(&self.inner),
                id,
            },
        }
    }

    /// How many connections have not ended.
    #[cfg(test)]
    fn count(&self) -> usize {
        self.inner.state().live.len()
    }

    /// Tells every connection to finish, and waits until all have ended.
    pub async fn shutdown(&self) {
        {
            let mut state = self.inner.state();
            state.draining = true;
            for tx in state.live.values_mut().filter_map(Option::take) {
                let _ = tx.send(());
            }
        }
        loop {
            let emptied = self.inner.emptied.notified();
            tokio::pin!(emptied);
            // Registered before looking, so an end between the look and the wait is not missed.
            emptied.as_mut().enable();
            if self.inner.state().live.is_empty() {
                return;
            }
            emptied.await;
        }
    }
}

/// A connection's place in the drain, until it ends.
struct Entry {
    inner: Arc<Inner>,
    id: u64,
}

impl Drop for Entry {
    fn drop(&mut self) {
        let mut state = self.inner.state();
        state.live.remove(&self.id);
        if state.draining && state.live.is_empty() {
            drop(state);
            self.inner.emptied.notify_waiters();
        }
    }
}

/// A connection's place, taken before the connection exists ([`Drain::watcher`]).
pub struct Watcher {
    signal: oneshot::Receiver<()>,
    entry: Entry,
}

impl Watcher {
    pub fn watch<C: GracefulConnection>(self, conn: C) -> Draining<C> {
        Draining {
            conn: Box::pin(conn),
            signal: Some(self.signal),
            _entry: self.entry,
        }
    }
}

/// A connection that ends gracefully when its drain begins.
pub struct Draining<C> {
    // Boxed once per connection, so that this future is `Unpin` and needs no pin projection.
    conn: Pin<Box<C>>,
    /// Until the drain has begun.
    signal: Option<oneshot::Receiver<()>>,
    _entry: Entry,
}

impl<C: GracefulConnection> Future for Draining<C> {
    type Output = C::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = &mut *self;
        let polled = this.conn.as_mut().poll(cx);
        if polled.is_ready() {
            return polled;
        }
        // Only now that the connection waits: a busy one is not slowed by looking.
        let begun = this
            .signal
            .as_mut()
            .is_some_and(|signal| Pin::new(signal).poll(cx).is_ready());
        if !begun {
            return Poll::Pending;
        }
        this.signal = None;
        this.conn.as_mut().graceful_shutdown();
        this.conn.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::TokioIo;
    use std::time::Duration;

    type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

    /// A served HTTP/1.1 connection over an in-memory pipe, watched by `drain`. Its requests
    /// to `/slow` are answered once `release` fires; `started` says when one has begun.
    async fn connection(
        drain: &Drain,
        release: Option<oneshot::Receiver<()>>,
        started: Option<oneshot::Sender<()>>,
    ) -> Result<
        (
            hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
            tokio::task::JoinHandle<Result<(), hyper::Error>>,
        ),
        hyper::Error,
    > {
        let (client, server) = tokio::io::duplex(4096);
        let gate = Arc::new(Mutex::new((release, started)));
        let service =
            hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let gate = Arc::clone(&gate);
                async move {
                    if req.uri().path() == "/slow" {
                        let (release, started) = {
                            let mut g = gate.lock().unwrap_or_else(|p| p.into_inner());
                            (g.0.take(), g.1.take())
                        };
                        if let Some(s) = started {
                            let _ = s.send(());
                        }
                        if let Some(r) = release {
                            let _ = r.await;
                        }
                    }
                    Ok::<_, std::convert::Infallible>(http::Response::new(Empty::<Bytes>::new()))
                }
            });
        let served = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(server), service);
        tokio::spawn(drain.watch(served));
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(client)).await?;
        Ok((sender, tokio::spawn(conn)))
    }

    fn get(path: &str) -> http::Request<Empty<Bytes>> {
        let mut req = http::Request::new(Empty::new());
        *req.uri_mut() = path.parse().unwrap_or_default();
        req
    }

    #[tokio::test]
    async fn shutdown_waits_for_the_request_in_flight_and_closes_idle_connections() -> TestResult {
        let drain = Arc::new(Drain::default());
        let (release, released) = oneshot::channel();
        let (began, started) = oneshot::channel();
        let (mut busy, _) = connection(&drain, Some(released), Some(began)).await?;
        let (mut idle, idle_closed) = connection(&drain, None, None).await?;
        assert_eq!(idle.send_request(get("/")).await?.status(), 200);
        let in_flight = tokio::spawn(async move { busy.send_request(get("/slow")).await });
        started.await?;
        assert_eq!(drain.count(), 2);

        let stopping = Arc::clone(&drain);
        let mut shutdown = tokio::spawn(async move { stopping.shutdown().await });
        // The idle connection closes; the busy one is still answering.
        tokio::time::timeout(Duration::from_secs(5), idle_closed).await???;
        assert!(
            tokio::time::timeout(Duration::from_millis(200), &mut shutdown)
                .await
                .is_err(),
            "shutdown did not wait for the request in flight"
        );
        assert_eq!(drain.count(), 1);

        let _ = release.send(());
        let answer = in_flight.await??;
        assert_eq!(answer.status(), 200);
        let _ = answer.into_body().collect().await?;
        tokio::time::timeout(Duration::from_secs(5), shutdown).await??;
        assert_eq!(drain.count(), 0);
        Ok(())
    }

    #[tokio::test]
    async fn a_place_taken_while_draining_is_told_at_once() -> TestResult {
        let drain = Arc::new(Drain::default());
        let early = drain.watcher();
        let stopping = Arc::clone(&drain);
        let shutdown = tokio::spawn(async move { stopping.shutdown().await });
        while !drain.inner.state().draining {
            tokio::task::yield_now().await;
        }
        let mut late = drain.watcher();
        assert!(late.signal.try_recv().is_ok());
        drop(late);
        assert!(
            !shutdown.is_finished(),
            "shutdown ended with a place still taken"
        );
        drop(early);
        tokio::time::timeout(Duration::from_secs(5), shutdown).await??;
        // Nothing to wait for: at once.
        tokio::time::timeout(Duration::from_secs(1), Drain::default().shutdown()).await?;
        Ok(())
    }
}
