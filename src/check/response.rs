//! The response half of the contract check: what the service answered (record, auto, audit).
//!
//! Response deviations are warnings: they describe the service, not the caller's code, and a
//! run should not fail because Graph answered 200 where its documentation says 204.

use super::{Code, Deviation};
use crate::contract::{Action, SuccessBody};
use http::{HeaderMap, StatusCode};
use serde_json::Value;

/// Checks a response from the service to a call of `action` (if graph-vcr knows it).
pub fn check_response(
    action: Option<&Action>,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Vec<Deviation> {
    let mut out = Vec::new();
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
            if status == StatusCode::OK
                && action.success_body == SuccessBody::Value
                && !is_value_collection(body)
            {
                out.push(Deviation::new(Code::SuccessBodyNotValue, "",
                    "a 200 from this action carries {\"value\": [...]}, the assignments now in force"));
            }
        }
        if status == StatusCode::NO_CONTENT && !body.is_empty() {
            out.push(Deviation::new(
                Code::BodyOn204,
                "",
                format!("204 No Content with a {}-byte body", body.len()),
            ));
        }
    } else if (status.is_client_error() || status.is_server_error()) && !is_graph_error(body) {
        out.push(Deviation::new(Code::ErrorBodyNotGraphFormat, "", format!(
            "{status} whose body is not {{\"error\":{{\"code\":…,\"message\":…}}}}: SDKs cannot read the cause")));
    }
    super::gate(&mut out);
    out
}

fn is_value_collection(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body).is_ok_and(|v| v.get("value").is_some_and(Value::is_array))
}

fn is_graph_error(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body).is_ok_and(|v| {
        v.get("error").is_some_and(|e| {
            e.get("code").is_some_and(Value::is_string)
                && e.get("message").is_some_and(Value::is_string)
        })
    })
}
