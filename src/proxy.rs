//! Proxy: one request's path through graph-vcr.
//!
//! `listener` hands each request to [`Proxy::handle`], which runs the stages in order:
//! read the body (bounded) → pick the cassette → `classify` → `redact` → `key` → `mode`
//! (decide) → respond (replay, forward upstream and record, or miss). Every answer graph-vcr
//! makes itself is a Graph-format error (`graph_error`), and every outcome is counted (`stats`).

use crate::cassette::{Access, Cassette, CassetteName, Store, StoreError};
use crate::classify::{self, Classified};
use crate::diff;
use crate::graph_error::{GraphError, MISS_STATUS};
use crate::headers::{self, CASSETTE_HEADER, OUTCOME_HEADER};
use crate::interaction::{
    self, Body as StoredBody, Interaction, RecordedRequest, RecordedResponse,
};
use crate::key::{CanonicalBody, Key, KeyOptions};
use crate::mode::{self, Decision, Mode, Occurrences, OnExhausted};
use crate::redact::{self, Secrets};
use crate::stats::Stats;
use crate::upstream::{Upstream, UpstreamError, UpstreamOptions, UpstreamResponse};
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body;
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;
use thiserror::Error;

/// Largest request body accepted by default (assign bodies are a few KiB).
pub const DEFAULT_MAX_BODY: usize = 16 * 1024 * 1024;
/// How many recordings a miss examines to find the nearest one.
const NEAREST_SCAN_LIMIT: usize = 10_000;

/// Where cassettes live and which one a request uses.
#[derive(clap::Args, Debug, Clone)]
pub struct CassetteOptions {
    /// Directory holding the cassettes (one sled database).
    ///
    /// Example: `--cassettes tests/cassettes`.
    #[arg(
        long,
        env = "GRAPH_VCR_CASSETTES",
        value_name = "DIR",
        default_value = "cassettes"
    )]
    pub cassettes: PathBuf,

    /// Cassette used when a request has no `x-graph-vcr-cassette: NAME` header.
    ///
    /// Names are 1-100 letters, digits, '.', '_' or '-'. Example: `--cassette onboarding`.
    #[arg(
        long,
        env = "GRAPH_VCR_CASSETTE",
        value_name = "NAME",
        default_value = "default"
    )]
    pub cassette: CassetteName,

    /// Record (and key) every request, not only Intune assign actions.
    #[arg(long, env = "GRAPH_VCR_RECORD_ALL")]
    pub record_all: bool,
}

/// Everything a proxy needs to start.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub mode: Mode,
    pub cassettes: CassetteOptions,
    pub key: KeyOptions,
    /// Required for record and auto; ignored (and never connected) in replay.
    pub upstream: Option<UpstreamOptions>,
    pub on_exhausted: OnExhausted,
    pub max_body: usize,
}

/// Why a proxy could not start.
#[derive(Debug, Error)]
pub enum ProxyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("{0} mode needs an upstream")]
    NoUpstream(&'static str),
}

/// The shared state of a running proxy.
pub struct Proxy {
    mode: Mode,
    store: Store,
    cassettes: Mutex<HashMap<CassetteName, Cassette>>,
    default_cassette: CassetteName,
    record_all: bool,
    key: KeyOptions,
    upstream: Option<Upstream>,
    on_exhausted: OnExhausted,
    max_body: usize,
    occurrences: Occurrences,
    pub stats: Stats,
}

/// What the pipeline produced: a response and how it came about.
type Answer = Result<Response<Full<Bytes>>, GraphError>;

impl Proxy {
    pub fn new(config: ProxyConfig) -> Result<Self, ProxyError> {
        let access = match config.mode {
            Mode::Replay => Access::ReadOnly,
            Mode::Record | Mode::Auto => Access::ReadWrite,
        };
        // Replay gets no upstream at all: it cannot open a connection even by mistake.
        let upstream = match (config.mode, &config.upstream) {
            (Mode::Replay, _) => None,
            (_, Some(opts)) => Some(Upstream::new(opts)?),
            (m, None) => return Err(ProxyError::NoUpstream(m.as_str())),
        };
        let store = Store::open(&config.cassettes.cassettes, access)?;
        let proxy = Self {
            mode: config.mode,
            store,
            cassettes: Mutex::new(HashMap::new()),
            default_cassette: config.cassettes.cassette,
            record_all: config.cassettes.record_all,
            key: config.key,
            upstream,
            on_exhausted: config.on_exhausted,
            max_body: config.max_body,
            occurrences: Occurrences::default(),
            stats: Stats::default(),
        };
        // Open the default cassette now, so a broken one fails at startup, not on first use.
        proxy.cassette(&proxy.default_cassette.clone())?;
        Ok(proxy)
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Answers one request. Never fails: every error becomes a Graph-format response.
    pub async fn handle<B>(&self, request: http::Request<B>) -> Response<Full<Bytes>>
    where
        B: Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        Stats::bump(&self.stats.requests);
        let (parts, body) = request.into_parts();
        let client_request_id = parts.headers.get("client-request-id").cloned();
        match self.pipeline(parts, body).await {
            Ok(response) => response,
            Err(e) => e.into_response(client_request_id.as_ref()),
        }
    }

    async fn pipeline<B>(&self, parts: Parts, body: B) -> Answer
    where
        B: Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let body = self.read_body(body).await?;
        let cassette = self.select_cassette(&parts.headers)?;

        let raw_query = parts.uri.query();
        let query = raw_query.map(redact::redact_query);
        let classified = classify::classify(parts.uri.path(), query.as_deref());
        let recordable = classified.is_assign || self.record_all;
        let (stored_body, _) = redact::redact_body(&body);
        let canonical = CanonicalBody::of(&stored_body, classified.action, &self.key);
        let key = Key::compute(parts.method.as_str(), &classified, &canonical);
        let n = self.occurrences.next(cassette.name(), &key);
        tracing::debug!(cassette = %cassette.name(), method = %parts.method, path = parts.uri.path(),
            key = %key, occurrence = n, "request");

        let decision = mode::decide(self.mode, recordable, &cassette, &key, n, self.on_exhausted)
            .map_err(|e| self.store_failure(&e))?;
        match decision {
            Decision::Replay(interaction) => {
                Stats::bump(&self.stats.replayed);
                replay_response(&interaction, &parts.headers)
            }
            Decision::Miss { recorded } => {
                Stats::bump(&self.stats.misses);
                Err(self.miss(
                    &cassette,
                    &parts,
                    &classified,
                    &key,
                    &canonical,
                    n,
                    recorded,
                ))
            }
            Decision::Forward { record } => {
                let upstream = self.upstream.as_ref().ok_or_else(|| {
                    GraphError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "graphVcrInternal",
                        "no upstream configured in this mode",
                    )
                })?;
                let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
                let response = upstream
                    .send(parts.method.clone(), path_and_query, &parts.headers, body.clone())
                    .await
                    .map_err(|e| {
                        Stats::bump(&self.stats.upstream_errors);
                        tracing::warn!(cassette = %cassette.name(), path = parts.uri.path(), error = %e,
                            "upstream call failed; nothing recorded");
                        GraphError::new(e.status(), e.code(), e.to_string())
                            .with_detail("upstream", upstream.url())
                    })?;
                if record {
                    let interaction = Interaction {
                        format: interaction::FORMAT,
                        key: key.to_hex(),
                        position: n,
                        action: classified.action_label(),
                        recorded_at: humantime::format_rfc3339_millis(SystemTime::now())
                            .to_string(),
                        upstream: upstream.url().to_string(),
                        request: RecordedRequest {
                            method: parts.method.to_string(),
                            version: classified.version.map(|v| v.to_string()),
                            path: parts.uri.path().to_string(),
                            query: query.map(|q| q.into_owned()),
                            headers: stored_headers(&parts.headers),
                            body: StoredBody::from_bytes(&stored_body),
                            canonical_body: match &canonical {
                                CanonicalBody::Json(s) => Some(s.clone()),
                                CanonicalBody::Bytes(_) => None,
                            },
                        },
                        response: RecordedResponse {
                            status: response.status.as_u16(),
                            headers: stored_headers(&response.headers),
                            body: StoredBody::from_bytes(&response.body),
                        },
                    };
                    self.record(&cassette, &key, &interaction, &parts.headers, &response)
                        .await?;
                    Stats::bump(&self.stats.recorded);
                    tracing::info!(cassette = %cassette.name(), action = %interaction.action,
                        status = interaction.response.status, key = %key, position = n, "recorded");
                    Ok(forwarded_response(response, "recorded"))
                } else {
                    Stats::bump(&self.stats.forwarded);
                    Ok(forwarded_response(response, "forwarded"))
                }
            }
        }
    }

    async fn read_body<B>(&self, body: B) -> Result<Bytes, GraphError>
    where
        B: Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        match Limited::new(body, self.max_body).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                Stats::bump(&self.stats.rejected);
                tracing::warn!(limit = self.max_body, "request body too large; rejected");
                Err(GraphError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "graphVcrRequestTooLarge",
                    format!(
                        "request body is over graph-vcr's limit of {} bytes; nothing was forwarded or recorded",
                        self.max_body
                    ),
                ))
            }
            Err(e) => {
                Stats::bump(&self.stats.rejected);
                Err(GraphError::new(
                    StatusCode::BAD_REQUEST,
                    "graphVcrBadRequestBody",
                    format!("request body could not be read: {e}"),
                ))
            }
        }
    }

    fn select_cassette(&self, headers: &HeaderMap) -> Result<Cassette, GraphError> {
        let name = match headers.get(CASSETTE_HEADER) {
            None => self.default_cassette.clone(),
            Some(v) => {
                let text = v.to_str().unwrap_or("\u{fffd}");
                CassetteName::new(text).map_err(|e| {
                    Stats::bump(&self.stats.rejected);
                    GraphError::new(
                        StatusCode::BAD_REQUEST,
                        "graphVcrBadCassette",
                        format!("{CASSETTE_HEADER}: {e}"),
                    )
                })?
            }
        };
        self.cassette(&name).map_err(|e| self.store_failure(&e))
    }

    fn cassette(&self, name: &CassetteName) -> Result<Cassette, StoreError> {
        let mut open = self.cassettes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = open.get(name) {
            return Ok(c.clone());
        }
        let cassette = self.store.cassette(name)?;
        let want = self.key.to_json();
        match (self.mode, cassette.meta()) {
            (Mode::Record | Mode::Auto, None) => {
                cassette.set_meta(&json!({"key_options": want}))?
            }
            (_, Some(meta)) if meta.get("key_options") != Some(&want) => {
                tracing::warn!(cassette = %name, recorded_with = %meta["key_options"], now = %want,
                    "cassette was recorded with other key options (--ordered-arrays, --ignore-field); \
                     requests will miss unless they match");
            }
            _ => {}
        }
        open.insert(name.clone(), cassette.clone());
        Ok(cassette)
    }

    fn store_failure(&self, e: &StoreError) -> GraphError {
        tracing::error!(error = %e, "cassette store failed");
        GraphError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "graphVcrCassetteError",
            e.to_string(),
        )
    }

    /// Writes an interaction and waits until it is durable: a client never holds a response
    /// whose recording could still be lost.
    async fn record(
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
        let written = serde_json::to_vec(interaction)
            .map_err(|e| StoreError::Io {
                dir: self.store.dir().into(),
                source: e.into(),
            })
            .map(|bytes| secrets.scrub(bytes));
        let result = match written {
            Ok(bytes) => match cassette.put(key, interaction.position, bytes) {
                Ok(()) => self.store.flush().await,
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        result.map_err(|e| {
            tracing::error!(cassette = %cassette.name(), error = %e, "recording failed");
            GraphError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "graphVcrRecordFailed",
                format!(
                    "the call reached the upstream, which answered {}, but recording it failed: {e}",
                    response.status
                ),
            )
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn miss(
        &self,
        cassette: &Cassette,
        parts: &Parts,
        classified: &Classified,
        key: &Key,
        canonical: &CanonicalBody,
        n: u32,
        recorded: u32,
    ) -> GraphError {
        let target = format!("{} {}", parts.method, parts.uri.path());
        let mut message = if recorded > 0 {
            format!(
                "cassette \"{}\" has {recorded} recording(s) of {target} and all were played (--on-exhausted miss); \
                 this is occurrence {} of that request",
                cassette.name(),
                n + 1
            )
        } else {
            format!(
                "no recording in cassette \"{}\" for {target} (key {})",
                cassette.name(),
                &key.to_hex()[..16]
            )
        };
        let mut error = GraphError::new(MISS_STATUS, "graphVcrNoRecording", String::new())
            .with_detail("cassette", cassette.name().as_str())
            .with_detail("key", key.to_hex())
            .with_detail("occurrence", n + 1);
        if recorded == 0 {
            match nearest(cassette, parts, classified, canonical) {
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
                    classified.action_label()
                )),
            }
        }
        tracing::warn!(cassette = %cassette.name(), request = %target, key = %key, "replay miss");
        error.message = message;
        error
    }
}

/// The recording of the same action and method nearest to the request, with the differences.
fn nearest(
    cassette: &Cassette,
    parts: &Parts,
    classified: &Classified,
    canonical: &CanonicalBody,
) -> Option<(Interaction, Vec<String>)> {
    let label = classified.action_label();
    let request_body = canonical_text(canonical);
    let mut best: Option<(usize, Interaction, Vec<String>)> = None;
    for recorded in cassette.iter().take(NEAREST_SCAN_LIMIT).flatten() {
        if recorded.action != label
            || !recorded
                .request
                .method
                .eq_ignore_ascii_case(parts.method.as_str())
        {
            continue;
        }
        let mut lines = Vec::new();
        let theirs = classify::classify(&recorded.request.path, recorded.request.query.as_deref());
        if theirs.normalized_path != classified.normalized_path {
            lines.push(format!(
                "path: recorded {}, request {}",
                recorded.request.path,
                parts.uri.path()
            ));
        }
        if theirs.normalized_query != classified.normalized_query {
            lines.push(format!(
                "query: recorded {:?}, request {:?}",
                theirs.normalized_query, classified.normalized_query
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
        let d = diff::diff_bodies(&recorded_body, &request_body);
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

fn canonical_text(canonical: &CanonicalBody) -> String {
    match canonical {
        CanonicalBody::Json(s) => s.clone(),
        CanonicalBody::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
    }
}

/// Headers as stored: end-to-end only, credentials redacted, other values scanned for tokens.
fn stored_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers::end_to_end(headers)
        .map(|(name, value)| {
            let text = String::from_utf8_lossy(value.as_bytes());
            let stored = if redact::is_credential_header(name.as_str()) {
                redact::redact_credential_value(&text)
            } else {
                redact::redact_text(&text).into_owned()
            };
            (name.as_str().to_string(), stored)
        })
        .collect()
}

fn outcome(value: &'static str) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static(OUTCOME_HEADER),
        HeaderValue::from_static(value),
    )
}

fn forwarded_response(upstream: UpstreamResponse, how: &'static str) -> Response<Full<Bytes>> {
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

/// The recorded response, with `client-request-id` echoing this request as the service would.
fn replay_response(interaction: &Interaction, request_headers: &HeaderMap) -> Answer {
    let corrupt = |what: &str| {
        GraphError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "graphVcrCorruptCassette",
            format!(
                "recording {} (position {}) has {what}",
                interaction.key, interaction.position
            ),
        )
    };
    let body = interaction
        .response
        .body
        .to_bytes()
        .ok_or_else(|| corrupt("a body that is not valid base64"))?;
    let status = StatusCode::from_u16(interaction.response.status)
        .map_err(|_| corrupt("an invalid status"))?;
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let h = response.headers_mut();
    for (name, value) in &interaction.response.headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) else {
            return Err(corrupt(&format!("an invalid header {name:?}")));
        };
        if name == http::header::CONTENT_LENGTH || name == http::header::TRANSFER_ENCODING {
            continue;
        }
        h.append(name, value);
    }
    if let Some(id) = request_headers.get("client-request-id") {
        h.insert("client-request-id", id.clone());
    }
    let (n, v) = outcome("replayed");
    h.insert(n, v);
    Ok(response)
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("mode", &self.mode)
            .field("dir", &self.store.dir())
            .finish()
    }
}
