//! Pass-on: forward mode's plain-HTTP request for a host graph-vcr does not intercept, passed
//! on untouched (record and audit only; `forward` decides): no analysis, no key, no recording,
//! no journal entry. Bounded like any request.

use super::Proxy;
use crate::graph_error::GraphError;
use crate::redact;
use crate::respond;
use crate::upstream::Destination;
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::body::Body;

impl Proxy {
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
        let id = parts
            .headers
            .get(crate::headers::CLIENT_REQUEST_ID)
            .cloned();
        let Some(upstream) = self.backend.upstream() else {
            return GraphError::new(
                StatusCode::FORBIDDEN,
                "graphVcrNotIntercepted",
                "this mode never opens a network connection",
            )
            .into_response(id.as_ref());
        };
        let body = match self.read_body(body).await {
            Ok(b) => b,
            Err(refusal) => return refusal.into_response(id.as_ref()),
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
                tracing::warn!(to = %to.url(), error = %redact::text(&e.to_string()),
                    "passing on a plain-HTTP request failed");
                e.graph_error(to.url()).into_response(id.as_ref())
            }
        }
    }
}
