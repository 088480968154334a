//! A batch's answer: the items' answers packed as Graph packs them, and the upstream's batch
//! answer unpacked into one answer per item.
//!
//! Graph answers a readable batch `200` with `{"responses": [{id, status, headers, body}]}`;
//! a JSON body is a JSON value, any other body a base64 string, and an item without a body
//! has no `body`. graph-vcr lists the items in the client's order (Graph may not, and
//! clients correlate by id).

use crate::graph_error::GraphError;
use crate::headers;
use crate::upstream::UpstreamResponse;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Map, Value, json};

/// One item's answer.
#[derive(Debug)]
pub struct ItemAnswer {
    pub id: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl ItemAnswer {
    /// The answer graph-vcr would have sent for the item as a direct call.
    pub async fn of(id: &str, response: Response<Full<Bytes>>) -> Self {
        let (parts, body) = response.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(never) => match never {},
        };
        Self {
            id: id.to_string(),
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// Graph's `424` for an item whose dependency failed.
    pub fn failed_dependency(id: &str, dependency: &str) -> GraphError {
        GraphError::new(
            StatusCode::FAILED_DEPENDENCY,
            "FailedDependency",
            format!("The request {id:?} depends on {dependency:?}, which failed; it was not run"),
        )
    }

    fn to_json(&self) -> Value {
        let mut headers = Map::new();
        for (name, value) in headers::end_to_end(&self.headers) {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            headers.insert(name.as_str().to_string(), Value::String(value));
        }
        let mut item = json!({"id": self.id, "status": self.status.as_u16(), "headers": headers});
        if !self.body.is_empty() {
            let json = is_json(&self.headers)
                .then(|| serde_json::from_slice::<Value>(&self.body).ok())
                .flatten();
            item["body"] = json.unwrap_or_else(|| Value::String(STANDARD.encode(&self.body)));
        }
        item
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().contains("json"))
}

/// The batch's `200`, its items in `answers`' order.
pub fn pack(answers: &[ItemAnswer], outcome: &'static str) -> Response<Full<Bytes>> {
    let responses: Vec<Value> = answers.iter().map(ItemAnswer::to_json).collect();
    let body = serde_json::to_vec(&json!({ "responses": responses })).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    let h = response.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; odata.metadata=minimal; charset=utf-8"),
    );
    h.insert(headers::OUTCOME, HeaderValue::from_static(outcome));
    response
}

/// The upstream's answer to a batch, one answer per item id, or `None` when it is not a
/// batch answer (Graph refused the batch whole: a `400`, a `429`, a gateway's error page).
pub fn unpack(response: &UpstreamResponse) -> Option<Vec<(String, UpstreamResponse)>> {
    if response.status != StatusCode::OK {
        return None;
    }
    let decoded;
    let body: &[u8] = match response.headers.get(http::header::CONTENT_ENCODING) {
        Some(e) => {
            decoded = crate::redact::decode(e.to_str().ok()?, &response.body)?;
            &decoded
        }
        None => &response.body,
    };
    let Value::Object(mut top) = serde_json::from_slice::<Value>(body).ok()? else {
        return None;
    };
    let Value::Array(items) = top.remove("responses")? else {
        return None;
    };
    items.into_iter().map(item_response).collect()
}

fn item_response(item: Value) -> Option<(String, UpstreamResponse)> {
    let Value::Object(mut obj) = item else {
        return None;
    };
    let id = match obj.remove("id")? {
        Value::String(s) => s,
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let status = StatusCode::from_u16(u16::try_from(obj.get("status")?.as_u64()?).ok()?).ok()?;
    let mut headers = HeaderMap::new();
    if let Some(Value::Object(h)) = obj.get("headers") {
        for (name, value) in h {
            if let (Ok(name), Some(Ok(value))) = (
                HeaderName::from_bytes(name.as_bytes()),
                value.as_str().map(HeaderValue::from_str),
            ) {
                headers.append(name, value);
            }
        }
    }
    let body = match obj.remove("body") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(s)) if !is_json(&headers) => Bytes::from(STANDARD.decode(&s).ok()?),
        Some(v) => Bytes::from(serde_json::to_vec(&v).ok()?),
    };
    Some((
        id,
        UpstreamResponse {
            status,
            headers,
            body,
        },
    ))
}
