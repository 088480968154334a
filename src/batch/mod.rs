//! Batch: a JSON `$batch` unpacked into the calls it carries, and their answers packed again.
//!
//! Graph's `POST /{version}/$batch` carries up to 20 requests, each `{id, method, url,
//! headers, body, dependsOn}` with `url` relative to the version root. graph-vcr treats each
//! item exactly as the call it carries would be treated on its own: the same path
//! (`/{version}{url}`), query, headers (the batch's, overlaid by the item's) and body, so it
//! is classified, checked, keyed, recorded and replayed as that call, and a batch recording
//! answers a direct call and the other way round. The answer is packed again as Graph packs
//! it (`answer`): every item's id in the client's order, `424` for an item whose dependency
//! failed.
//!
//! What makes a batch one Graph refuses whole (not JSON, no `requests` list, an item without
//! `id`, `method` or `url`, more than 20 items, a repeated id, a `dependsOn` naming no other
//! item) is a deviation on the batch, which is then handled as one opaque call: recorded
//! and replayed whole, as the service's 400 would be.
//!
//! Facts from Graph's JSON batching documentation and msgraph-core 1.5.2 (see
//! docs/DECISIONS.md, "Batches").

pub mod answer;

use crate::check::{Code, Deviation};
use crate::contract::ApiVersion;
use crate::json::{Json, Object};
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

/// Most items Graph accepts in one batch.
pub const MAX_ITEMS: usize = 20;

/// The members an item may have; anything else Graph ignores (and says nothing).
const ITEM_MEMBERS: [&str; 6] = ["id", "method", "url", "headers", "body", "dependsOn"];

/// One request inside a batch, as the call it carries.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    pub method: Method,
    /// `/{version}/path?query`, as the call would be sent on its own.
    pub uri: String,
    /// The item's own headers (the batch's are added when it is made a request).
    pub headers: HeaderMap,
    /// The body as a direct call would send it: a JSON body as JSON text, a base64 body
    /// decoded.
    pub body: Bytes,
    /// The ids it depends on, as sent.
    pub depends_on: Vec<String>,
    /// The item's other members as sent (compact JSON text of an object), forwarded as they
    /// came. The body is kept once, in `body`, not twice: a batch may carry a 15 MB body.
    rest: String,
    /// How the body was sent, to write it back the same way when forwarded.
    sent_body: SentBody,
}

/// How an item's `body` member was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SentBody {
    Absent,
    Null,
    /// JSON: `body` holds its JSON text.
    Json,
    /// A base64 string (a non-JSON content type): `body` holds the decoded bytes.
    Base64,
}

/// A batch graph-vcr can unpack.
#[derive(Debug)]
pub struct Batch {
    pub items: Vec<Item>,
    /// Deviations of the batch's own rules that do not stop unpacking it.
    pub deviations: Vec<Deviation>,
}

/// What a `$batch` body is.
#[derive(Debug)]
pub enum Parsed {
    Batch(Batch),
    /// One Graph refuses whole: handled as one call, with why.
    Opaque(Vec<Deviation>),
}

/// Whether a request is a JSON batch: `POST /v1.0/$batch` or `/beta/$batch` (any case).
pub fn is_batch(method: &Method, path: &str) -> Option<ApiVersion> {
    // Every request asks this: most paths are told apart by their last bytes alone.
    let last = path.trim_end_matches('/');
    let tail = last
        .len()
        .checked_sub("$batch".len())
        .and_then(|at| last.get(at..));
    if method != Method::POST || !tail.is_some_and(|t| t.eq_ignore_ascii_case("$batch")) {
        return None;
    }
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    let version = ApiVersion::from_segment(segments.next()?)?;
    let batch = segments.next()?;
    (batch.eq_ignore_ascii_case("$batch") && segments.next().is_none()).then_some(version)
}

/// Reads a batch body.
pub fn parse(version: ApiVersion, body: &[u8]) -> Parsed {
    let malformed =
        |at: &str, why: String| Parsed::Opaque(vec![Deviation::new(Code::BatchMalformed, at, why)]);
    let Ok(Json::Object(mut top)) = Json::parse(body) else {
        return malformed(
            "",
            "the batch body is not a JSON object; Graph answers 400".into(),
        );
    };
    let Some(Json::Array(requests)) = top.remove("requests") else {
        return malformed(
            "/requests",
            "no \"requests\" list; Graph answers 400".into(),
        );
    };
    if requests.len() > MAX_ITEMS {
        return Parsed::Opaque(vec![Deviation::new(
            Code::BatchTooManyRequests,
            "/requests",
            format!(
                "{} requests in one batch; Graph takes at most {MAX_ITEMS} and answers 400",
                requests.len()
            ),
        )]);
    }
    let mut items = Vec::with_capacity(requests.len());
    let mut deviations = Vec::new();
    for (i, raw) in requests.into_iter().enumerate() {
        match item(version, raw, i, &mut deviations) {
            Ok(item) => items.push(item),
            Err(why) => return malformed(&format!("/requests/{i}"), why),
        }
    }
    let mut opaque = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let repeated = items[..i]
            .iter()
            .any(|o| o.id.eq_ignore_ascii_case(&item.id));
        if repeated {
            opaque.push(Deviation::new(
                Code::BatchDuplicateId,
                format!("/requests/{i}/id"),
                format!(
                    "id {:?} is used by two items; Graph answers 400 for the whole batch",
                    item.id
                ),
            ));
        }
        for d in &item.depends_on {
            let known = !d.eq_ignore_ascii_case(&item.id)
                && items.iter().any(|o| o.id.eq_ignore_ascii_case(d));
            if !known {
                opaque.push(Deviation::new(
                    Code::BatchDependsOnUnknown,
                    format!("/requests/{i}/dependsOn"),
                    format!(
                        "item {:?} depends on {d:?}, which is not another item of this batch; Graph answers 400",
                        item.id
                    ),
                ));
            }
        }
    }
    if !opaque.is_empty() {
        opaque.extend(deviations);
        return Parsed::Opaque(opaque);
    }
    if let Some(cycle) = first_in_cycle(&items) {
        return Parsed::Opaque(vec![Deviation::new(
            Code::BatchDependsOnUnknown,
            format!("/requests/{cycle}/dependsOn"),
            "the items' dependsOn form a cycle, so none of them can run; Graph answers 400",
        )]);
    }
    Parsed::Batch(Batch { items, deviations })
}

/// One item, or why it cannot be read. Rules that do not stop unpacking add deviations.
fn item(
    version: ApiVersion,
    raw: Json<'_>,
    i: usize,
    deviations: &mut Vec<Deviation>,
) -> Result<Item, String> {
    let Json::Object(mut obj) = raw else {
        return Err(format!("item {i} is not a JSON object"));
    };
    let text = |name: &str| obj.get(name).and_then(Json::as_str);
    let id = match obj.get("id") {
        Some(Json::String(s)) if !s.is_empty() => s.to_string(),
        // The documentation says string; some clients send numbers, which Graph reads as text.
        Some(Json::Number(n)) => n.to_string(),
        _ => return Err(format!("item {i} has no \"id\"")),
    };
    let method = text("method")
        .and_then(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
        .ok_or_else(|| format!("item {id:?} has no valid \"method\""))?;
    let url = text("url").ok_or_else(|| format!("item {id:?} has no \"url\""))?;
    let uri = item_uri(version, url)
        .ok_or_else(|| format!("item {id:?} has a \"url\" that is not a Graph path: {url:?}"))?;
    let headers = item_headers(obj.get("headers"))
        .ok_or_else(|| format!("item {id:?} has \"headers\" that are not an object of strings"))?;
    let body = item_body(obj.get("body"), &headers)
        .ok_or_else(|| format!("item {id:?} has a base64 \"body\" that does not decode"))?;
    if obj.get("body").is_some() && !headers.contains_key(http::header::CONTENT_TYPE) {
        deviations.push(Deviation::new(
            Code::BatchItemMissingContentType,
            format!("/requests/{i}/headers"),
            format!("item {id:?} has a body but no Content-Type header; Graph requires one"),
        ));
    }
    // An empty or null unknown member changes nothing (msgraph-core writes `"depends_on": []`
    // on every item); one with a value is something the client meant and Graph drops.
    let meant = |v: &Json<'_>| !v.is_null() && !matches!(v, Json::Array(a) if a.is_empty());
    let unknown = obj
        .iter()
        .filter(|(k, v)| !ITEM_MEMBERS.contains(k) && meant(v))
        .map(|(k, _)| k);
    for name in unknown {
        let hint = if name.eq_ignore_ascii_case("depends_on")
            || name.eq_ignore_ascii_case("dependson")
        {
            " (did you mean \"dependsOn\"? msgraph-core 1.5.2 writes \"depends_on\"; Graph ignores it, so the items may run in any order)"
        } else {
            ""
        };
        deviations.push(Deviation::new(
            Code::BatchUnknownMember,
            format!("/requests/{i}/{name}"),
            format!("item {id:?} has a member {name:?} that Graph ignores{hint}"),
        ));
    }
    let depends_on = match obj.get("dependsOn") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(ids)) => ids
            .iter()
            .map(|d| match d {
                Json::String(s) => Ok(s.to_string()),
                Json::Number(n) => Ok(n.to_string()),
                _ => Err(format!(
                    "item {id:?} has a \"dependsOn\" entry that is not an id"
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(format!(
                "item {id:?} has a \"dependsOn\" that is not a list"
            ));
        }
    };
    let sent_body = match obj.remove("body") {
        None => SentBody::Absent,
        Some(Json::Null) => SentBody::Null,
        Some(Json::String(_)) if !is_json(&headers) => SentBody::Base64,
        Some(_) => SentBody::Json,
    };
    Ok(Item {
        id,
        method,
        uri,
        headers,
        body,
        depends_on,
        rest: serde_json::to_string(&obj).unwrap_or_else(|_| "{}".into()),
        sent_body,
    })
}

/// The item's `url` as a direct call's path and query: relative to the version root
/// (`/me`, `me`), or, as msgraph-core writes it, absolute (`https://graph.microsoft.com/v1.0/me`),
/// in which case its own version counts.
fn item_uri(version: ApiVersion, url: &str) -> Option<String> {
    let relative = match url.split_once("://") {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http") =>
        {
            let path = &rest[rest.find('/')?..];
            let first = path.split('/').find(|s| !s.is_empty())?;
            ApiVersion::from_segment(first.split('?').next()?)?;
            return Some(path.to_string());
        }
        Some(_) => return None,
        None => url,
    };
    let relative = relative.trim_start_matches('/');
    let uri = format!("/{version}/{relative}");
    uri.parse::<http::Uri>().ok().map(|_| uri)
}

fn item_headers(headers: Option<&Json<'_>>) -> Option<HeaderMap> {
    let mut map = HeaderMap::new();
    let Some(headers) = headers else {
        return Some(map);
    };
    let Json::Object(obj) = headers else {
        return None;
    };
    for (name, value) in obj.iter() {
        let value = value.as_str()?;
        let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
        map.append(name, HeaderValue::from_str(value).ok()?);
    }
    Some(map)
}

/// A JSON body as the JSON text a direct call would send; a string under a non-JSON content
/// type is base64, as Graph's batching documentation says.
fn item_body(body: Option<&Json<'_>>, headers: &HeaderMap) -> Option<Bytes> {
    match body {
        None | Some(Json::Null) => Some(Bytes::new()),
        Some(Json::String(s)) if !is_json(headers) => base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .ok()
            .map(Bytes::from),
        Some(v) => Some(Bytes::from(serde_json::to_vec(v).ok()?)),
    }
}

/// Whether an item's body is JSON by its content type (no content type: JSON).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|ct| ct.to_ascii_lowercase().contains("json"))
}

/// An item of a dependency cycle, if the items' `dependsOn` have one.
fn first_in_cycle(items: &[Item]) -> Option<usize> {
    let mut done = vec![false; items.len()];
    for _ in 0..items.len() {
        let mut progress = false;
        for (i, item) in items.iter().enumerate() {
            if !done[i] && item.depends_on.iter().all(|d| is_done(items, &done, d)) {
                done[i] = true;
                progress = true;
            }
        }
        if !progress {
            break;
        }
    }
    done.iter().position(|d| !d)
}

fn is_done(items: &[Item], done: &[bool], id: &str) -> bool {
    items
        .iter()
        .position(|o| o.id.eq_ignore_ascii_case(id))
        .is_some_and(|i| done[i])
}

/// The order to run items in: the client's, except that an item comes after the items it
/// depends on (the batch has no cycle: `parse` checked).
pub fn run_order(items: &[Item]) -> Vec<usize> {
    let mut order = Vec::with_capacity(items.len());
    let mut done = vec![false; items.len()];
    while order.len() < items.len() {
        let next = items.iter().enumerate().position(|(i, item)| {
            !done[i] && item.depends_on.iter().all(|d| is_done(items, &done, d))
        });
        let Some(i) = next else { break };
        done[i] = true;
        order.push(i);
    }
    order
}

/// The item's JSON text for a batch forwarded with only some of the items: its `dependsOn`
/// keeps only the ids that are forwarded too (the rest were answered by graph-vcr).
pub fn forwarded_item(item: &Item, forwarded: &[&str]) -> Vec<u8> {
    let mut rest = Json::parse(item.rest.as_bytes()).unwrap_or(Json::Object(Object::default()));
    if let Json::Object(obj) = &mut rest
        && let Some(Json::Array(deps)) = obj.get_mut("dependsOn")
    {
        deps.retain(|d| {
            let id = match d {
                Json::String(s) => s.to_string(),
                other => serde_json::to_string(other).unwrap_or_default(),
            };
            forwarded.iter().any(|f| f.eq_ignore_ascii_case(&id))
        });
        if deps.is_empty() {
            obj.remove("dependsOn");
        }
    }
    let mut out = serde_json::to_vec(&rest).unwrap_or_else(|_| b"{}".to_vec());
    let body: Option<Vec<u8>> = match item.sent_body {
        SentBody::Absent => None,
        SentBody::Null => Some(b"null".to_vec()),
        SentBody::Json => Some(item.body.to_vec()),
        SentBody::Base64 => {
            serde_json::to_vec(&base64::engine::general_purpose::STANDARD.encode(&item.body)).ok()
        }
    };
    if let Some(body) = body
        && out.pop() == Some(b'}')
    {
        if out.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(br#""body":"#);
        out.extend_from_slice(&body);
        out.push(b'}');
    }
    out
}

/// A batch body of `items`, each the JSON text of one.
pub fn body_of(items: Vec<Vec<u8>>) -> Bytes {
    let mut out = Vec::with_capacity(items.iter().map(|i| i.len() + 1).sum::<usize>() + 16);
    out.extend_from_slice(br#"{"requests":["#);
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item);
    }
    out.extend_from_slice(b"]}");
    Bytes::from(out)
}

#[cfg(test)]
mod tests;
