//! Respond: the responses graph-vcr sends, and the records it keeps of them.
//!
//! A replayed response is the recording with `client-request-id` echoing the request, as the
//! service would; a forwarded one is the upstream's, minus hop-by-hop headers. A miss explains
//! itself: the nearest recording of the same action and how its canonical body differs.

use crate::cassette::Cassette;
use crate::classify::{self, Classified};
use crate::diff;
use crate::graph_error::{GraphError, MISS_STATUS};
use crate::headers::{self, OUTCOME_HEADER};
use crate::interaction::{Interaction, Recorded};
use crate::key::{CanonicalBody, Key};
use crate::links;
use crate::redact;
use crate::upstream::UpstreamResponse;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;
use std::borrow::Cow;
use std::sync::Arc;

fn outcome(value: &'static str) -> (HeaderName, HeaderValue) {
    (headers::OUTCOME, HeaderValue::from_static(value))
}

/// The upstream's response, passed through.
pub fn forwarded(upstream: UpstreamResponse, how: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(upstream.body));
    *response.status_mut() = upstream.status;
    let h = response.headers_mut();
    for (name, value) in headers::end_to_end(&upstream.headers) {
        h.append(name.clone(), value.clone());
    }
    let (n, v) = outcome(how);
    h.insert(n, v);
    response
}

/// A recorded response ready to send, decoded and checked once.
///
/// Compact, because replay keeps every recording of a cassette in memory: the headers and the
/// body share one buffer (`u16` name length, name, `u16` value length, value, per header;
/// then the body). A plain shared slice, not `Bytes`: values are copied out per response (a
/// few dozen bytes), which costs less than a `Bytes` per recording would in memory. Shared so
/// that the memo's entry can name it beside its call (see `index::Entry`); its count is never
/// changed per request.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub position: u32,
    status: StatusCode,
    headers: u16,
    buf: Arc<[u8]>,
}

impl Prepared {
    /// Decodes a recording's response. A record that cannot be served is a corrupt cassette.
    pub fn of(interaction: &Recorded) -> Result<Self, GraphError> {
        Self::from_parts(
            &interaction.key,
            interaction.position,
            &interaction.response,
        )
    }

    pub fn from_parts(
        key: &str,
        position: u32,
        response: &crate::interaction::RecordedResponse,
    ) -> Result<Self, GraphError> {
        let corrupt = |what: &str| {
            GraphError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "graphVcrCorruptCassette",
                format!("recording {key} (position {position}) has {what}"),
            )
        };
        let body = response
            .body
            .to_bytes()
            .ok_or_else(|| corrupt("a body that is not valid base64"))?;
        let status =
            StatusCode::from_u16(response.status).map_err(|_| corrupt("an invalid status"))?;
        let mut buf = Vec::with_capacity(
            response
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len() + 4)
                .sum::<usize>()
                + body.len(),
        );
        let mut count: u16 = 0;
        for (name, value) in &response.headers {
            let (Ok(parsed), Ok(_)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) else {
                return Err(corrupt(&format!("an invalid header {name:?}")));
            };
            if parsed == http::header::CONTENT_LENGTH
                || parsed == http::header::TRANSFER_ENCODING
                || parsed.as_str() == OUTCOME_HEADER
            {
                continue;
            }
            let (Ok(name_len), Ok(value_len)) =
                (u16::try_from(name.len()), u16::try_from(value.len()))
            else {
                return Err(corrupt(&format!("a header over 64 KiB ({name:?})")));
            };
            let Some(next) = count.checked_add(1) else {
                return Err(corrupt("more than 65,535 headers"));
            };
            count = next;
            buf.extend_from_slice(&name_len.to_le_bytes());
            buf.extend_from_slice(parsed.as_str().as_bytes());
            buf.extend_from_slice(&value_len.to_le_bytes());
            buf.extend_from_slice(value.as_bytes());
        }
        buf.extend_from_slice(&body);
        Ok(Self {
            position,
            status,
            headers: count,
            buf: Arc::from(buf),
        })
    }

    /// The buffer the answer is made from, for [`warm`].
    pub fn buffer(&self) -> &Arc<[u8]> {
        &self.buf
    }

    /// The response, with `client-request-id` echoing the request's (`client_request_id`), as
    /// the service would, and its links pointing at `origin()`, the address the client used
    /// (see `links`; asked only when there is a link).
    pub fn respond(
        &self,
        client_request_id: Option<&HeaderValue>,
        origin: &dyn Fn() -> String,
    ) -> Response<Full<Bytes>> {
        let mut headers = HeaderMap::with_capacity(usize::from(self.headers) + 2);
        let mut at = 0;
        // `of` wrote and validated every part, so reading it back cannot go out of bounds or
        // meet an invalid name or value; the checks below only keep a bug from panicking.
        let field = |at: &mut usize| -> Option<&[u8]> {
            let len = usize::from(u16::from_le_bytes([
                *self.buf.get(*at)?,
                *self.buf.get(*at + 1)?,
            ]));
            let start = *at + 2;
            let end = start.checked_add(len).filter(|e| *e <= self.buf.len())?;
            *at = end;
            self.buf.get(start..end)
        };
        for _ in 0..self.headers {
            let (Some(name), Some(value)) = (field(&mut at), field(&mut at)) else {
                break;
            };
            if let (Ok(name), Ok(value)) = (header_name(name), HeaderValue::from_bytes(value)) {
                // Only a `Location` can hold a link: no other value is read as text.
                let value = if name == http::header::LOCATION
                    && let Ok(v) = value.to_str()
                {
                    links::served_location(v, &origin())
                        .and_then(|v| HeaderValue::from_str(&v).ok())
                        .unwrap_or(value)
                } else {
                    value
                };
                headers.append(name, value);
            }
        }
        let (n, v) = outcome("replayed");
        headers.insert(n, v);
        if let Some(id) = client_request_id {
            headers.insert(headers::CLIENT_REQUEST_ID, id.clone());
        }
        let body = match self.buf.get(at..) {
            Some(b) if !b.is_empty() => match links::served_body(b, origin) {
                std::borrow::Cow::Borrowed(b) => Bytes::copy_from_slice(b),
                std::borrow::Cow::Owned(v) => Bytes::from(v),
            },
            _ => Bytes::new(),
        };
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = self.status;
        *response.headers_mut() = headers;
        response
    }
}

/// How much of an answer's buffer [`warm`] reads: the headers and a small body. Past it,
/// `respond` copies the body in order, which the CPU's own prefetching follows; reading a large
/// body here too would only add a pass over it to every request.
const WARMED: usize = 1024;

/// Reads a byte of each cache line of the start of an answer's buffer ([`Prepared::buffer`]),
/// so that when replay has more recordings than the caches hold, their misses are taken
/// together and early, not one after another as `respond` walks the buffer. See
/// `index::Entry::warm`.
pub fn warm(buffer: &[u8]) {
    let mut sum = 0u8;
    for at in (0..buffer.len().min(WARMED)).step_by(64) {
        sum ^= buffer.get(at).copied().unwrap_or(0);
    }
    std::hint::black_box(sum);
}

/// Headers Graph sends that `http` has no constant for: served from these static names, since
/// parsing a name `http` does not know allocates it afresh for every response.
static GRAPH_HEADERS: [HeaderName; 5] = [
    HeaderName::from_static("request-id"),
    headers::CLIENT_REQUEST_ID,
    HeaderName::from_static("x-ms-ags-diagnostic"),
    HeaderName::from_static("x-ms-resource-unit"),
    HeaderName::from_static("odata-version"),
];

fn header_name(name: &[u8]) -> Result<HeaderName, http::header::InvalidHeaderName> {
    match GRAPH_HEADERS.iter().find(|h| h.as_str().as_bytes() == name) {
        Some(known) => Ok(known.clone()),
        None => HeaderName::from_bytes(name),
    }
}

/// The end-to-end headers as text pairs, not yet through the gate (`redact::response` gates
/// a response's, remembering its credentials).
pub fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers::end_to_end(headers)
        .map(|(name, value)| {
            let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_string(), text)
        })
        .collect()
}

/// Headers as stored: end-to-end only, through the redaction gate.
pub fn stored_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut pairs = header_pairs(headers);
    redact::stored_headers(&mut pairs, &mut redact::Secrets::default());
    pairs
}

/// The answer to a request the cassette has no recording for. Owned, so that explaining it
/// (which reads the store) can run off the async runtime.
#[derive(Debug)]
pub struct Miss {
    pub method: Method,
    pub path: String,
    /// The query, redacted.
    pub query: Option<String>,
    pub classified: Classified,
    pub key: Key,
    pub canonical: CanonicalBody,
    /// 0-based occurrence of this request.
    pub occurrence: u32,
    /// How many recordings the key has (all played, with `--on-exhausted miss`).
    pub recorded: u32,
}

impl Miss {
    /// How this request is summarised to find its nearest recordings (`nearest`).
    pub fn summary(&self) -> crate::nearest::Summary {
        crate::nearest::Summary::of(
            &self.classified.action_label(),
            self.method.as_str(),
            &self.path,
            self.query.as_deref(),
            &self.canonical,
        )
    }

    /// The miss's Graph error, with the nearest recording of `cassette` among `candidates`
    /// (the closest by `nearest`'s summaries) when the key has none.
    pub fn error(&self, cassette: &Cassette, candidates: &[(Key, u32)]) -> GraphError {
        let name = cassette.name();
        let target = format!("{} {}", self.method, self.path);
        let mut message = if self.recorded > 0 {
            format!(
                "cassette \"{name}\" has {} recording(s) of {target} and all were played (--on-exhausted miss); \
                 this is occurrence {} of that request",
                self.recorded,
                self.occurrence + 1
            )
        } else {
            format!(
                "no recording in cassette \"{name}\" for {target} (key {})",
                &self.key.to_hex()[..16]
            )
        };
        let mut error = GraphError::new(MISS_STATUS, "graphVcrNoRecording", String::new())
            .with_detail("cassette", name.as_str())
            .with_detail("key", self.key.to_hex())
            .with_detail("occurrence", self.occurrence + 1);
        if self.recorded == 0 {
            match self.nearest(cassette, candidates) {
                Some((near, lines)) => {
                    message.push_str(&format!(
                        ". Nearest recording of the same action (key {}, recorded {}) differs in:\n  {}",
                        &near.key[..16.min(near.key.len())],
                        near.recorded_at,
                        lines.join("\n  ")
                    ));
                    error = error.with_detail(
                        "nearest",
                        json!({"key": near.key, "recordedAt": near.recorded_at, "differences": lines}),
                    );
                }
                None => message.push_str(&format!(
                    ". The cassette has no recording of this action ({}).",
                    self.classified.action_label()
                )),
            }
        }
        error.message = message;
        error
    }

    /// The recording of the same action and method nearest to the request, with the differences.
    fn nearest(
        &self,
        cassette: &Cassette,
        candidates: &[(Key, u32)],
    ) -> Option<(Interaction, Vec<String>)> {
        let label = self.classified.action_label();
        let request_body = match &self.canonical {
            CanonicalBody::Json(s) => Cow::Borrowed(s.as_str()),
            CanonicalBody::Bytes(b) => String::from_utf8_lossy(b),
        };
        // Read only once a recording of the same action and method is there to compare.
        let mut probe = None;
        let mut best: Option<(usize, Interaction, Vec<String>)> = None;
        let recordings = candidates
            .iter()
            .filter_map(|(key, position)| cassette.get_interaction(key, *position).ok().flatten());
        for recorded in recordings {
            let same_method = recorded
                .request
                .method
                .eq_ignore_ascii_case(self.method.as_str());
            if recorded.action != label || !same_method {
                continue;
            }
            let mut lines = Vec::new();
            let theirs =
                classify::classify(&recorded.request.path, recorded.request.query.as_deref());
            if theirs.normalized_path != self.classified.normalized_path {
                lines.push(format!(
                    "path: recorded {}, request {}",
                    recorded.request.path, self.path
                ));
            }
            if theirs.normalized_query != self.classified.normalized_query {
                lines.push(format!(
                    "query: recorded {:?}, request {:?}",
                    theirs.normalized_query, self.classified.normalized_query
                ));
            }
            let recorded_body = match &recorded.request.canonical_body {
                Some(c) => c.clone(),
                None => recorded
                    .request
                    .body
                    .to_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default(),
            };
            let d = probe
                .get_or_insert_with(|| diff::Probe::new(&request_body))
                .diff(&recorded_body);
            let distance = lines.len() + d.count;
            let hidden = d.count - d.lines.len();
            lines.extend(d.lines);
            if hidden > 0 {
                lines.push(format!("… and {hidden} more differences"));
            }
            if distance == 0 {
                // Same request under other key options: say so rather than show an empty diff.
                lines.push(
                    "no difference in the canonical form: the cassette was keyed with other \
                     --ordered-arrays/--ignore-field options"
                        .into(),
                );
            }
            if best.as_ref().is_none_or(|(d, _, _)| distance < *d) {
                best = Some((distance, recorded, lines));
            }
        }
        best.map(|(_, i, lines)| (i, lines))
    }
}
