//! Forwarding: the pipeline's branch that reaches the upstream — forward a call, record it
//! durably (scrubbed of the call's own credentials), and, in forward-proxy mode, pass a
//! request for a host graph-vcr does not intercept on untouched.

use super::{Proxy, Trace};
use crate::cassette::{Cassette, StoreError};
use crate::classify::Classified;
use crate::graph_error::GraphError;
use crate::interaction::{
    self, Body as StoredBody, Interaction, RecordedRequest, RecordedResponse,
};
use crate::key::{CanonicalBody, Key};
use crate::redact::{self, Secrets};
use crate::respond;
use crate::stats::Stats;
use crate::upstream::{Destination, UpstreamResponse};
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Body;
use std::time::SystemTime;

impl Proxy {
    /// Where a request is (or would be) forwarded, for records and messages.
    pub(super) fn upstream_url(&self, parts: &Parts) -> String {
        match (parts.extensions.get::<Destination>(), &self.upstream) {
            (Some(d), _) => d.url(),
            (None, Some(u)) => u.url().to_string(),
            (None, None) => String::new(),
        }
    }

    pub(super) async fn forward(
        &self,
        parts: &Parts,
        body: Bytes,
        trace: &mut Trace,
    ) -> Result<UpstreamResponse, GraphError> {
        let Some(upstream) = &self.upstream else {
            return Err(GraphError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "graphVcrInternal",
                "no upstream configured in this mode",
            ));
        };
        let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let to = parts.extensions.get::<Destination>();
        upstream
            .send(
                to,
                parts.method.clone(),
                path_and_query,
                &parts.headers,
                body,
            )
            .await
            .map_err(|e| {
                trace.outcome = "upstream-error";
                Stats::bump(&self.stats.upstream_errors);
                tracing::warn!(cassette = %trace.cassette, path = parts.uri.path(), error = %e,
                "upstream call failed; nothing recorded");
                e.graph_error(self.upstream_url(parts))
            })
    }

    /// Forward mode: a plain-HTTP request for a host graph-vcr does not intercept, passed on
    /// untouched (record and audit only; `forward` decides): no check, no key, no recording,
    /// no journal entry. Bounded like any request.
    pub async fn pass_on<B>(
        &self,
        request: http::Request<B>,
        to: &Destination,
    ) -> Response<Full<Bytes>>
    where
        B: Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let (parts, body) = request.into_parts();
        let id = parts.headers.get("client-request-id").cloned();
        let Some(upstream) = &self.upstream else {
            return GraphError::new(
                StatusCode::FORBIDDEN,
                "graphVcrNotIntercepted",
                "this mode never opens a network connection",
            )
            .into_response(id.as_ref());
        };
        let body = match self.read_body(body).await {
            Ok(b) => b,
            Err(e) => return e.into_response(id.as_ref()),
        };
        let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        match upstream
            .send(
                Some(to),
                parts.method.clone(),
                path_and_query,
                &parts.headers,
                body,
            )
            .await
        {
            Ok(response) => respond::forwarded(response, "tunnelled"),
            Err(e) => {
                tracing::warn!(to = %to.url(), error = %e, "passing on a plain-HTTP request failed");
                e.graph_error(to.url()).into_response(id.as_ref())
            }
        }
    }

    /// Writes an interaction and waits until it is durable: a client never holds a response
    /// whose recording could still be lost.
    pub(super) async fn record(
        &self,
        cassette: &Cassette,
        key: &Key,
        interaction: &Interaction,
        request_headers: &HeaderMap,
        response: &UpstreamResponse,
    ) -> Result<(), GraphError> {
        let mut secrets = Secrets::default();
        for (name, value) in request_headers.iter().chain(response.headers.iter()) {
            if redact::is_credential_header(name.as_str())
                && let Ok(v) = value.to_str()
            {
                secrets.add_header_value(v);
            }
        }
        let result = match (serde_json::to_vec(interaction), &self.store) {
            (Ok(bytes), Some(store)) => {
                store
                    .record(cassette, key, interaction.position, secrets.scrub(bytes))
                    .await
            }
            (Ok(_), None) => Err(StoreError::NoStore),
            (Err(e), _) => Err(StoreError::Encode {
                cassette: cassette.name().to_string(),
                source: e,
            }),
        };
        result.map_err(|e| {
            tracing::error!(cassette = %cassette.name(), error = %e, "recording failed");
            GraphError::new(StatusCode::INTERNAL_SERVER_ERROR, "graphVcrRecordFailed", format!(
                "the call reached the upstream, which answered {}, but recording it failed: {e}",
                response.status
            ))
        })
    }
}

/// The record of a forwarded call, everything in it already redacted.
#[allow(clippy::too_many_arguments)]
pub(super) fn build_interaction(
    parts: &Parts,
    classified: &Classified,
    key: &Key,
    position: u32,
    query: &Option<std::borrow::Cow<'_, str>>,
    stored_body: &[u8],
    canonical: &CanonicalBody,
    response: &UpstreamResponse,
    upstream: &str,
) -> Interaction {
    Interaction {
        format: interaction::FORMAT,
        key: key.to_hex(),
        position,
        action: classified.action_label(),
        recorded_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        upstream: upstream.to_string(),
        request: RecordedRequest {
            method: parts.method.to_string(),
            version: classified.version.map(|v| v.to_string()),
            path: parts.uri.path().to_string(),
            query: query.as_ref().map(|q| q.to_string()),
            headers: respond::stored_headers(&parts.headers),
            body: StoredBody::from_bytes(stored_body),
            canonical_body: match canonical {
                CanonicalBody::Json(s) => Some(s.clone()),
                CanonicalBody::Bytes(_) => None,
            },
        },
        response: RecordedResponse {
            status: response.status.as_u16(),
            headers: respond::stored_headers(&response.headers),
            body: StoredBody::from_bytes(&response.body),
        },
    }
}
