//! The response half of the contract check: what the service answered (record, auto, audit).
//!
//! Response deviations are warnings: they describe the service, not the caller's code, and a
//! run should not fail because Graph answered 200 where its documentation says 204.

use super::{Code, Deviation};
use crate::contract::{Action, SuccessBody};
use crate::json::Json;
use http::{HeaderMap, StatusCode};
use serde_json::Value;

/// Checks a response from the service to a call of `action` (if graph-vcr knows it).
pub fn check_response(
    action: Option<&Action>,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Vec<Deviation> {
    check_response_counted(action, status, headers, body).0
}

/// [`check_response`], and how many deviations past the cap of the `value` walk were only
/// counted.
pub fn check_response_counted(
    action: Option<&Action>,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> (Vec<Deviation>, usize) {
    let mut out = Vec::new();
    let mut omitted = 0;
    if !headers.contains_key("request-id") {
        out.push(Deviation::new(
            Code::ResponseMissingRequestId,
            "request-id",
            "no request-id header; Graph sends one on every response (support needs it)",
        ));
    }
    if matches!(status.as_u16(), 429 | 503) && !headers.contains_key(http::header::RETRY_AFTER) {
        out.push(Deviation::new(
            Code::ThrottleMissingRetryAfter,
            "Retry-After",
            format!("{status} without Retry-After: clients fall back to exponential backoff"),
        ));
    }
    if status.is_success() {
        if let Some(action) = action {
            if status.as_u16() != action.success_status {
                out.push(Deviation::new(
                    Code::UnexpectedSuccessStatus,
                    "status",
                    format!(
                        "answered {status}; the documented success is {}",
                        action.success_status
                    ),
                ));
            }
            if status == StatusCode::OK && action.success_body == SuccessBody::Value {
                match value_collection(body) {
                    Some(items) => {
                        let (found, more) = elements(action, &items);
                        out.extend(found);
                        omitted = more;
                    }
                    None => out.push(Deviation::new(Code::SuccessBodyNotValue, "",
                        "a 200 from this action carries {\"value\": [...]}, the assignments now in force")),
                }
            }
        }
        if status == StatusCode::NO_CONTENT
            && let Some(len) = body_on_204(headers, body)
        {
            out.push(Deviation::new(
                Code::BodyOn204,
                "",
                format!("204 No Content with a body ({len}); clients do not read it"),
            ));
        }
    } else if (status.is_client_error() || status.is_server_error()) && !is_graph_error(body) {
        out.push(Deviation::new(Code::ErrorBodyNotGraphFormat, "", format!(
            "{status} whose body is not {{\"error\":{{\"code\":…,\"message\":…}}}}: SDKs cannot read the cause")));
    }
    super::gate(&mut out);
    (out, omitted)
}

fn value_collection(body: &[u8]) -> Option<Vec<Json<'_>>> {
    match Json::parse(body).ok()? {
        Json::Object(mut top) => match top.remove("value")? {
            Json::Array(items) => Some(items),
            _ => None,
        },
        _ => None,
    }
}

/// The assignments a 200 says are now in force, held to the element type like a request's
/// (as warnings: they describe the service), at `/value/…`.
fn elements(action: &Action, items: &[Json<'_>]) -> (Vec<Deviation>, usize) {
    let Some(param) = action.parameters.first() else {
        return (Vec::new(), 0);
    };
    let mut found = super::Found::default();
    super::body::check_collection(
        action.version,
        &param.element_type,
        items,
        "/value",
        &mut found,
    );
    let (mut deviations, omitted) = found.into_parts();
    for d in &mut deviations {
        d.severity = super::Severity::Warning;
    }
    (deviations, omitted)
}

/// A 204 that carries a body, or says it does: HTTP clients (hyper among them) drop a 204's
/// body unread, so the headers are the evidence when the bytes are gone.
fn body_on_204(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    if !body.is_empty() {
        return Some(format!("{} bytes", body.len()));
    }
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|n| *n > 0);
    if let Some(n) = declared {
        return Some(format!("Content-Length: {n}"));
    }
    headers
        .contains_key(http::header::TRANSFER_ENCODING)
        .then(|| "Transfer-Encoding".to_string())
}

fn is_graph_error(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body).is_ok_and(|v| {
        v.get("error").is_some_and(|e| {
            e.get("code").is_some_and(Value::is_string)
                && e.get("message").is_some_and(Value::is_string)
        })
    })
}
