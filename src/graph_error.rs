//! Graph-format errors: how graph-vcr answers when it cannot pass a response through.
//!
//! Graph SDKs deserialize `{"error":{"code","message","innerError":{…}}}` (with that exact
//! `innerError` casing) into their `ODataError` type, so every answer graph-vcr makes up itself
//! has that shape and lands in the client's normal error handling, with a message that says
//! what happened and what to do.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// The status of a replay miss. Not 429/503/504, which Graph SDKs retry (a miss never heals on
/// retry), and not 404, which application code often treats as a legitimate "not found".
pub const MISS_STATUS: StatusCode = StatusCode::NOT_IMPLEMENTED;

/// An error graph-vcr answers with.
#[derive(Debug, Clone)]
pub struct GraphError {
    pub status: StatusCode,
    /// A stable code, e.g. `graphVcrNoRecording`.
    pub code: &'static str,
    pub message: String,
    /// Extra `innerError` members (diagnostics for people and tools).
    /// Boxed: most errors have none, and a `Refusal` travels in every `Result` of the pipeline.
    pub details: Box<Map<String, Value>>,
}

impl GraphError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Box::default(),
        }
    }

    /// The same error with more said at the end of its message.
    pub fn with_message_suffix(mut self, more: &str) -> Self {
        self.message.push_str(more);
        self
    }

    pub fn with_detail(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.details.insert(name.to_string(), value.into());
        self
    }

    /// The response, echoing the client's `client-request-id` as Graph does.
    pub fn into_response(self, client_request_id: Option<&HeaderValue>) -> Response<Full<Bytes>> {
        let request_id = new_request_id();
        let mut inner = Map::new();
        inner.insert("date".into(), Value::String(graph_date(SystemTime::now())));
        inner.insert("request-id".into(), Value::String(request_id.clone()));
        if let Some(id) = client_request_id.and_then(|v| v.to_str().ok()) {
            inner.insert("client-request-id".into(), Value::String(id.to_string()));
        }
        inner.extend(*self.details);
        let body =
            json!({"error": {"code": self.code, "message": self.message, "innerError": inner}});
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        *response.status_mut() = self.status;
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            h.insert("request-id", v);
        }
        if let Some(id) = client_request_id {
            h.insert(crate::headers::CLIENT_REQUEST_ID, id.clone());
        }
        h.insert("x-graph-vcr-error", HeaderValue::from_static(self.code));
        response
    }
}

/// `2025-02-13T10:17:05`: the `innerError.date` format (UTC, no offset, no fraction).
pub fn graph_date(t: SystemTime) -> String {
    let s = humantime::format_rfc3339_seconds(t).to_string();
    s.trim_end_matches('Z').to_string()
}

/// A fresh GUID-shaped request id. Unique per process run, not cryptographically random: it
/// only has to tell requests apart in logs.
pub fn new_request_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut h = Sha256::new();
    h.update(n.to_be_bytes());
    h.update(nanos.to_be_bytes());
    h.update(std::process::id().to_be_bytes());
    let d = h.finalize();
    let hex: String = d.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn error_body_has_graph_shape() {
        let cid = HeaderValue::from_static("abc-123");
        let r = GraphError::new(
            StatusCode::BAD_GATEWAY,
            "graphVcrUpstreamUnreachable",
            "nope",
        )
        .with_detail("upstream", "https://x")
        .into_response(Some(&cid));
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(r.headers().get("client-request-id"), Some(&cid));
        let body = r
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(v["error"]["code"], "graphVcrUpstreamUnreachable");
        assert_eq!(v["error"]["message"], "nope");
        assert_eq!(v["error"]["innerError"]["client-request-id"], "abc-123");
        assert_eq!(v["error"]["innerError"]["upstream"], "https://x");
        let date = v["error"]["innerError"]["date"].as_str().unwrap_or("");
        assert_eq!(date.len(), 19, "{date}");
        assert!(crate::classify::is_guid(
            v["error"]["innerError"]["request-id"]
                .as_str()
                .unwrap_or("")
        ));
    }
}
