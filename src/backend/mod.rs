//! Backend: what each mode does with an analyzed request, one type per mode, so a mode
//! holds exactly what it uses and nothing it cannot (replay has no upstream, audit no store).
//!
//! - [`Replay`]: the in-memory `index` of the cassettes and the `memo` of analyses; never a
//!   network connection;
//! - [`Record`] (record and auto): the store, its recorder thread, and the upstream;
//! - [`Audit`]: the upstream only.
//!
//! A backend returns an [`Answer`] (what was served and how) or a [`Refusal`] (the outcome it
//! is counted under and the Graph-format error the client gets); `proxy` settles the
//! exchange with it. Work that blocks (the store, sled) runs off the async runtime.

mod audit;
mod record;
mod replay;

pub use audit::Audit;
pub use record::{Record, Scope};
pub use replay::{Remembered, Replay};

use crate::cassette::{Store, StoreError};
use crate::check;
use crate::exchange::{Exchange, Refusal};
use crate::graph_error::GraphError;
use crate::outcome::Outcome;
use crate::upstream::{Destination, Upstream, UpstreamResponse};
use bytes::Bytes;
use http::StatusCode;

/// The mode's backend.
pub enum Backend {
    Replay(Replay),
    // Boxed: the store and upstream are large, and there is one backend per process.
    Record(Box<Record>),
    Audit(Box<Audit>),
}

impl Backend {
    /// The upstream, in the modes that have one.
    pub fn upstream(&self) -> Option<&Upstream> {
        match self {
            Self::Replay(_) => None,
            Self::Record(r) => Some(r.upstream()),
            Self::Audit(a) => Some(a.upstream()),
        }
    }

    /// Runs `f` on the cassette store (none in audit). Blocks: replay may reopen its copy.
    pub fn with_store<T>(&self, f: impl FnOnce(&Store) -> T) -> Option<Result<T, StoreError>> {
        match self {
            Self::Replay(r) => Some(r.index().with_store(f)),
            Self::Record(r) => Some(Ok(f(r.store()))),
            Self::Audit(_) => None,
        }
    }
}

/// The 500 for a store that failed, counted as `store-error` (or `corrupt-record`).
pub fn store_failure(e: &StoreError) -> Refusal {
    tracing::error!(error = %e, "cassette store failed");
    let outcome = match e {
        StoreError::Corrupt { .. } => Outcome::CorruptRecord,
        _ => Outcome::StoreError,
    };
    let code = match outcome {
        Outcome::CorruptRecord => "graphVcrCorruptCassette",
        _ => "graphVcrCassetteError",
    };
    Refusal::new(
        outcome,
        GraphError::new(StatusCode::INTERNAL_SERVER_ERROR, code, e.to_string()),
    )
}

/// Where a request is (or would be) forwarded, for records and messages.
pub fn upstream_url(upstream: &Upstream, ex: &Exchange<'_>) -> String {
    match ex.parts.extensions.get::<Destination>() {
        Some(d) => d.url(),
        None => upstream.url().to_string(),
    }
}

/// The upstream's answer about to be passed on: links to the service (the upstream's own or a
/// Graph host's) pointed at the address the client used (see `links`). The one place record,
/// auto, audit and a batch the upstream refused whole do it.
pub fn links_to_client(upstream: &Upstream, response: &mut UpstreamResponse, ex: &Exchange<'_>) {
    let from = crate::links::service_origins(&upstream_url(upstream, ex));
    crate::links::to_client(response, &from, &ex.client_origin());
}

/// Sends the request on and checks the response of an assign call. The one way record, auto
/// and audit reach the upstream.
pub async fn forward(
    upstream: &Upstream,
    body: Bytes,
    classified: &crate::classify::Classified,
    ex: &mut Exchange<'_>,
) -> Result<UpstreamResponse, Refusal> {
    let parts = ex.parts;
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let to = parts.extensions.get::<Destination>();
    let response = upstream
        .send(
            to,
            parts.method.clone(),
            path_and_query,
            &parts.headers,
            body,
        )
        .await;
    let response = match response {
        Ok(r) => r,
        Err(e) => {
            let error = e.graph_error(upstream_url(upstream, ex));
            let cause = ex.secrets().scrub_text(&e.to_string());
            tracing::warn!(cassette = %ex.cassette, path = %ex.path, error = %cause,
                "upstream call failed; nothing recorded");
            return Err(Refusal::new(Outcome::UpstreamError, error));
        }
    };
    if classified.assign_shaped {
        let (found, omitted) = check::check_response_counted(
            classified.action,
            response.status,
            &response.headers,
            &response.body,
        );
        ex.add_deviations(found, omitted);
    }
    Ok(response)
}

/// Runs blocking work (the store) on tokio's blocking pool; a task that panicked is a store
/// failure of this request, not of the proxy.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Refusal> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(store_failure(&e)),
        Err(e) => {
            tracing::error!(error = %e, "a cassette store task failed");
            Err(Refusal::new(
                Outcome::StoreError,
                GraphError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "graphVcrCassetteError",
                    "reading the cassette store failed (see the proxy's log)",
                ),
            ))
        }
    }
}
