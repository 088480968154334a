//! Proxy: one request's path through graph-vcr.
//!
//! `listener` hands each request to [`Proxy::handle`], which runs the stages in order:
//! read the body (bounded) → pick the cassette → `classify` → `check` → `redact` → `key` →
//! `mode` (decide) → `respond` (replay, forward upstream and record, or miss) → `journal`.
//! Every answer graph-vcr makes itself is a Graph-format error (`graph_error`); every outcome
//! is counted (`stats`), journaled, and its contract deviations are flagged on the response.
//! In replay, a call answered before takes the `memo` shortcut past the pure stages.
//!
//! This file holds the pipeline; its options are in `config`, and its two branches beside
//! it: `replaying` (recordings prepared once, the nth occurrence's choice) and `forwarding`
//! (upstream, durable recording, forward-proxy pass-through).

use crate::cassette::{Access, Cassette, CassetteName, JOURNAL_FILE, Store, StoreError};
use crate::check::{self, Deviation, OnDeviation, Severity};
use crate::graph_error::GraphError;
use crate::headers::CASSETTE_HEADER;
use crate::index::{self, Index};
use crate::journal::{Entry, Journal};
use crate::key::{Key, KeyOptions};
use crate::memo::{self, Analysis, Memo};
use crate::mode::{self, Decision, Mode, Occurrences, OnExhausted};
use crate::report::{Event, Report, RunLog};
use crate::respond::{self, Miss, Prepared};
use crate::stats::Stats;
use crate::upstream::Upstream;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

mod config;
mod forwarding;
mod replaying;

pub use config::{CassetteOptions, ProxyConfig, ProxyError, RequestLimits};
use forwarding::build_interaction;

/// Response header listing the contract deviations of the call.
pub const DEVIATIONS_HEADER: &str = "x-graph-vcr-deviations";

/// The shared state of a running proxy.
pub struct Proxy {
    mode: Mode,
    /// `None` in audit mode, which records nothing and reads nothing, and in replay, whose
    /// store is behind its `index`.
    store: Option<Store>,
    cassettes: Mutex<HashMap<CassetteName, Cassette>>,
    default_cassette: CassetteName,
    record_all: bool,
    key: KeyOptions,
    upstream: Option<Upstream>,
    on_exhausted: OnExhausted,
    on_deviation: OnDeviation,
    journal: Option<Journal>,
    limits: RequestLimits,
    occurrences: Occurrences,
    /// Replay only: every recording in memory, and the store it was read from.
    index: Option<Index>,
    /// Replay only: what the pure stages found for calls already answered or stored.
    memo: Option<Arc<Memo>>,
    run: RunLog,
    pub stats: Stats,
}

/// What happened to one request, for the journal and the deviations header.
struct Trace {
    cassette: CassetteName,
    /// Unset until classified (no allocation for requests turned away earlier).
    action: Option<Arc<str>>,
    key: Option<Key>,
    outcome: &'static str,
    position: Option<u32>,
    message: Option<String>,
    deviations: Vec<Deviation>,
    /// Replay's memo entry, when the call was answered from it.
    memo_hit: Option<Analysis>,
}

impl Proxy {
    pub fn new(config: ProxyConfig) -> Result<Self, ProxyError> {
        let dir = &config.cassettes.cassettes;
        // Replay gets no upstream at all: it cannot open a connection even by mistake.
        let upstream = match (config.mode, &config.upstream) {
            (Mode::Replay, _) => None,
            (_, Some(opts)) => Some(Upstream::new(opts)?),
            (m, None) => return Err(ProxyError::NoUpstream(m.as_str())),
        };
        let (store, index, memo) = match config.mode {
            Mode::Replay => {
                let memo = Arc::new(Memo::default());
                let prefill = index::Prefill {
                    memo: Arc::clone(&memo),
                    key: config.key.clone(),
                    max_json_depth: config.limits.max_json_depth,
                };
                let store = Store::open(dir, Access::ReadOnly)?;
                (None, Some(Index::start(store, prefill)?), Some(memo))
            }
            Mode::Record | Mode::Auto => (Some(Store::open(dir, Access::ReadWrite)?), None, None),
            Mode::Audit => (None, None, None),
        };
        let journal_path = match (&config.journal.journal, config.mode) {
            (Some(p), _) => Some(p.clone()),
            // Replay never writes into the cassette directory.
            (None, Mode::Replay) => None,
            (None, _) => Some(dir.join(JOURNAL_FILE)),
        };
        let journal = journal_path
            .map(|path| Journal::open(&path).map_err(|source| ProxyError::Journal { path, source }))
            .transpose()?;
        let proxy = Self {
            mode: config.mode,
            store,
            cassettes: Mutex::new(HashMap::new()),
            default_cassette: config.cassettes.cassette,
            record_all: config.cassettes.record_all,
            key: config.key,
            upstream,
            on_exhausted: config.on_exhausted,
            on_deviation: config.check.on_deviation,
            journal,
            limits: config.limits,
            occurrences: Occurrences::default(),
            index,
            memo,
            run: RunLog::default(),
            stats: Stats::default(),
        };
        // Open the default cassette now, so a broken one fails at startup, not on first use.
        if proxy.store.is_some() {
            proxy.cassette(&proxy.default_cassette.clone())?;
        }
        Ok(proxy)
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Runs `f` on the cassette store (none in audit mode). In replay the store is opened
    /// again if the index has closed it.
    pub fn with_store<T>(&self, f: impl FnOnce(&Store) -> T) -> Option<Result<T, StoreError>> {
        match (&self.store, &self.index) {
            (Some(store), _) => Some(Ok(f(store))),
            (None, Some(index)) => Some(index.with_store(f)),
            (None, None) => None,
        }
    }

    /// Replay: whether every recording is in memory (see `index`); other modes: true.
    pub fn is_indexed(&self) -> bool {
        self.index.as_ref().is_none_or(Index::is_complete)
    }

    /// Replay: whether the index's scan is still running (it logs why if it stops early).
    pub fn is_indexing(&self) -> bool {
        self.index.as_ref().is_some_and(Index::is_scanning)
    }

    /// Whether `--upstream` was given: forward mode then sends intercepted hosts there.
    pub fn upstream_is_explicit(&self) -> bool {
        self.upstream.as_ref().is_some_and(Upstream::is_explicit)
    }

    pub fn journal_path(&self) -> Option<&std::path::Path> {
        self.journal.as_ref().map(Journal::path)
    }

    /// Makes every recording durable and writes out the journal. Call once, at shutdown.
    pub async fn close(&self) -> Result<(), String> {
        if let Some(store) = &self.store {
            store.stop_recording();
            store.flush_blocking().map_err(|e| e.to_string())?;
        }
        if let Some(journal) = &self.journal {
            journal
                .close()
                .map_err(|e| format!("journal {}: {e}", journal.path().display()))?;
        }
        Ok(())
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
        let mut trace = Trace {
            cassette: self.default_cassette.clone(),
            action: None,
            key: None,
            outcome: "error",
            position: None,
            message: None,
            deviations: Vec::new(),
            memo_hit: None,
        };
        let mut response = match self.pipeline(&parts, body, &mut trace).await {
            Ok(response) => response,
            Err(e) => {
                trace.message = Some(e.message.clone());
                e.into_response(client_request_id.as_ref())
            }
        };
        if !trace.deviations.is_empty()
            && let Ok(v) = HeaderValue::from_str(&check::header_value(&trace.deviations))
        {
            response.headers_mut().insert(DEVIATIONS_HEADER, v);
        }
        self.finish(&parts, &trace, response.status());
        response
    }

    async fn pipeline<B>(
        &self,
        parts: &Parts,
        body: B,
        trace: &mut Trace,
    ) -> Result<Response<Full<Bytes>>, GraphError>
    where
        B: Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let body = self.read_body(body).await?;
        trace.cassette = self.cassette_name(&parts.headers)?;
        // Replay: a call answered before skips the pure stages (see `memo`).
        let digest = self.memo.as_ref().map(|m| {
            let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
            m.digest(
                trace.cassette.as_str(),
                &parts.method,
                path_and_query,
                &body,
            )
        });
        let mut counted = None;
        if let (Some(memo), Some(digest)) = (&self.memo, digest)
            && let Some(known) = memo.get(digest)
        {
            trace.action = Some(Arc::clone(&known.call.action));
            trace.key = Some(known.call.key);
            trace.deviations = known.findings.with_headers(&parts.headers);
            self.reject_on_error(trace)?;
            let n = mode::take(&known.call.counter);
            if let Some(response) = self.serve(&parts.headers, trace, known.call.recordings()?, n) {
                Stats::bump(&self.stats.remembered);
                trace.memo_hit = Some(known);
                return Ok(response);
            }
            counted = Some(n);
        }
        if crate::key::json_depth_exceeds(&body, self.limits.max_json_depth) {
            trace.outcome = "rejected";
            Stats::bump(&self.stats.rejected);
            tracing::warn!(
                limit = self.limits.max_json_depth,
                path = parts.uri.path(),
                "request body nests too deep; rejected"
            );
            return Err(GraphError::new(
                StatusCode::BAD_REQUEST,
                "graphVcrBodyTooDeep",
                format!(
                    "the JSON body nests deeper than graph-vcr's limit of {} levels (--max-json-depth); \
                 nothing was forwarded or recorded",
                    self.limits.max_json_depth
                ),
            ));
        }

        let memo::Analyzed {
            classified,
            query,
            stored_body,
            findings,
            canonical,
            key,
        } = memo::analyze(
            &parts.method,
            parts.uri.path(),
            parts.uri.query(),
            &body,
            &self.key,
        );
        trace.action = Some(Arc::from(classified.action_label()));
        trace.deviations = findings.with_headers(&parts.headers);
        self.reject_on_error(trace)?;
        trace.key = Some(key);

        if let Some(index) = &self.index {
            let action = trace.action.clone().unwrap_or_else(|| Arc::from(""));
            let label: &str = &action;
            let found = index
                .call(&trace.cassette, &key, label)
                .map_err(|e| self.store_failure(&e))?;
            let (n, recorded) = match found {
                Some(call) => {
                    let n = counted.unwrap_or_else(|| mode::take(&call.counter));
                    if let Some(response) = self.serve(&parts.headers, trace, call.recordings()?, n)
                    {
                        if let (Some(memo), Some(digest)) = (&self.memo, digest) {
                            memo.insert(digest, findings, call, false);
                        }
                        return Ok(response);
                    }
                    (n, call.recorded())
                }
                None => (
                    counted.unwrap_or_else(|| self.occurrences.next(&trace.cassette, &key)),
                    0,
                ),
            };
            self.count_miss(trace, parts, &key);
            return index
                .with_cassette(&trace.cassette, |cassette| {
                    Miss {
                        cassette,
                        parts,
                        classified: &classified,
                        key: &key,
                        canonical: &canonical,
                        occurrence: n,
                        recorded,
                    }
                    .error()
                })
                .map_err(|e| self.store_failure(&e))
                .and_then(Err);
        }
        let n = counted.unwrap_or_else(|| self.occurrences.next(&trace.cassette, &key));
        let recordable = classified.is_assign || self.record_all;
        let cassette = match self.mode {
            Mode::Audit => None,
            _ => Some(
                self.cassette(&trace.cassette)
                    .map_err(|e| self.store_failure(&e))?,
            ),
        };
        let decision = match &cassette {
            None => Decision::Forward { record: false },
            Some(c) => mode::decide(self.mode, recordable, c, &key, n, self.on_exhausted)
                .map_err(|e| self.store_failure(&e))?,
        };
        match decision {
            Decision::Replay(interaction) => {
                let prepared = Prepared::of(&interaction)?;
                trace.outcome = "replayed";
                trace.position = Some(prepared.position);
                Stats::bump(&self.stats.replayed);
                Ok(prepared.respond(&parts.headers))
            }
            Decision::Miss { recorded } => {
                self.count_miss(trace, parts, &key);
                let Some(cassette) = &cassette else {
                    return Err(GraphError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "graphVcrInternal",
                        "a miss without a cassette",
                    ));
                };
                let miss = Miss {
                    cassette,
                    parts,
                    classified: &classified,
                    key: &key,
                    canonical: &canonical,
                    occurrence: n,
                    recorded,
                };
                Err(miss.error())
            }
            Decision::Forward { record } => {
                let response = self.forward(parts, body.clone(), trace).await?;
                if classified.assign_shaped {
                    trace.deviations.extend(check::check_response(
                        classified.action,
                        response.status,
                        &response.headers,
                        &response.body,
                    ));
                }
                match (&cassette, record) {
                    (Some(cassette), true) => {
                        let interaction = build_interaction(
                            parts,
                            &classified,
                            &key,
                            n,
                            &query,
                            &stored_body,
                            &canonical,
                            &response,
                            &self.upstream_url(parts),
                        );
                        self.record(cassette, &key, &interaction, &parts.headers, &response)
                            .await?;
                        trace.outcome = "recorded";
                        trace.position = Some(n);
                        Stats::bump(&self.stats.recorded);
                        tracing::info!(cassette = %trace.cassette, action = %interaction.action,
                            status = interaction.response.status, key = %key, position = n, "recorded");
                        Ok(respond::forwarded(response, "recorded"))
                    }
                    _ => {
                        trace.outcome = "forwarded";
                        Stats::bump(&self.stats.forwarded);
                        Ok(respond::forwarded(response, "forwarded"))
                    }
                }
            }
        }
    }

    /// A replay miss: traced, counted and logged, whichever path found it.
    fn count_miss(&self, trace: &mut Trace, parts: &Parts, key: &Key) {
        trace.outcome = "miss";
        Stats::bump(&self.stats.misses);
        tracing::warn!(cassette = %trace.cassette, method = %parts.method, path = parts.uri.path(),
            key = %key, "replay miss");
    }

    /// `--on-deviation reject`: stops a call with an `error` deviation here.
    fn reject_on_error(&self, trace: &mut Trace) -> Result<(), GraphError> {
        if self.on_deviation == OnDeviation::Reject && check::has_error(&trace.deviations) {
            trace.outcome = "rejected";
            Stats::bump(&self.stats.rejected);
            return Err(rejection(&trace.deviations));
        }
        Ok(())
    }

    /// Logs, counts and journals what happened.
    fn finish(&self, parts: &Parts, trace: &Trace, status: StatusCode) {
        for d in &trace.deviations {
            match d.severity {
                Severity::Error => Stats::bump(&self.stats.deviation_errors),
                Severity::Warning => Stats::bump(&self.stats.deviation_warnings),
            }
            tracing::warn!(code = %d.code, severity = d.severity.as_str(), at = %d.at,
                cassette = %trace.cassette, path = parts.uri.path(), "contract deviation: {}", d.message);
        }
        let event = Event {
            cassette: trace.cassette.as_str(),
            action: trace.action.as_deref().unwrap_or(""),
            method: parts.method.as_str(),
            path: parts.uri.path(),
            key: trace.key,
            outcome: trace.outcome,
            position: trace.position,
            message: trace.message.as_deref(),
            deviations: &trace.deviations,
        };
        if let Some(journal) = &self.journal {
            journal.write(&Entry {
                time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                cassette: event.cassette.to_string(),
                action: event.action.to_string(),
                method: event.method.to_string(),
                path: event.path.to_string(),
                key: event.key.map(|k| k.to_hex()),
                mode: self.mode.as_str().to_string(),
                outcome: event.outcome.to_string(),
                status: status.as_u16(),
                position: event.position,
                message: trace.message.clone(),
                deviations: trace.deviations.clone(),
            });
        }
        // A plain repeat of a remembered call is counted on its memo entry, off the run
        // log's lock; the report folds those counts in.
        match (&trace.memo_hit, trace.position) {
            (Some(hit), Some(position))
                if position < 64
                    && trace.outcome == "replayed"
                    && trace.message.is_none()
                    && trace.deviations.len() == hit.findings.base_len() =>
            {
                hit.call.tally(position);
            }
            _ => self.run.add(&event),
        }
    }

    /// What this run did, including recordings of the cassettes it used that were never played.
    pub fn report(&self) -> Result<Report, StoreError> {
        if let Some(index) = &self.index {
            index.drain_tallies(|cassette, call, count, played| {
                self.run
                    .add_replays(cassette.as_str(), &call.action, call.key, count, played);
            });
        }
        let mut names: Vec<String> = self.run.cassettes();
        names.push(self.default_cassette.to_string());
        names.sort();
        names.dedup();
        let cassettes = |store: &Store| {
            names
                .iter()
                .filter_map(|n| CassetteName::new(n).ok())
                .map(|n| store.cassette(&n))
                .collect::<Result<Vec<_>, _>>()
        };
        match (&self.store, &self.index) {
            (Some(_), _) => {
                let open = names
                    .iter()
                    .filter_map(|n| CassetteName::new(n).ok())
                    .map(|n| self.cassette(&n))
                    .collect::<Result<Vec<_>, _>>()?;
                self.run.report(self.mode.as_str(), &open)
            }
            // Under the index's lock, so the scan cannot reopen sled under these handles.
            (None, Some(index)) => {
                index.with_store(|store| self.run.report(self.mode.as_str(), &cassettes(store)?))?
            }
            (None, None) => self.run.report(self.mode.as_str(), &[]),
        }
    }

    async fn read_body<B>(&self, body: B) -> Result<Bytes, GraphError>
    where
        B: Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let limit = self.limits.max_body_size;
        match Limited::new(body, limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                Stats::bump(&self.stats.rejected);
                tracing::warn!(limit, "request body too large; rejected");
                Err(GraphError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "graphVcrRequestTooLarge",
                    format!(
                        "request body is over graph-vcr's limit of {limit} bytes (--max-body-size); \
                         nothing was forwarded or recorded"
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

    fn cassette_name(&self, headers: &HeaderMap) -> Result<CassetteName, GraphError> {
        match headers.get(CASSETTE_HEADER) {
            None => Ok(self.default_cassette.clone()),
            Some(v) => CassetteName::new(v.to_str().unwrap_or("\u{fffd}")).map_err(|e| {
                Stats::bump(&self.stats.rejected);
                GraphError::new(
                    StatusCode::BAD_REQUEST,
                    "graphVcrBadCassette",
                    format!("{CASSETTE_HEADER}: {e}"),
                )
            }),
        }
    }

    fn cassette(&self, name: &CassetteName) -> Result<Cassette, StoreError> {
        let mut open = self.cassettes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = open.get(name) {
            return Ok(c.clone());
        }
        let Some(store) = &self.store else {
            return Err(StoreError::NoStore);
        };
        let cassette = store.cassette(name)?;
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
}

/// The 400 for a request rejected by `--on-deviation reject`.
fn rejection(deviations: &[Deviation]) -> GraphError {
    let errors: Vec<&Deviation> = deviations
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    let lines: Vec<String> = errors
        .iter()
        .map(|d| format!("{} at {}: {}", d.code, d.at, d.message))
        .collect();
    GraphError::new(StatusCode::BAD_REQUEST, "graphVcrContractViolation", format!(
        "graph-vcr rejected this call before it reached the tenant (--on-deviation reject): {} contract error(s):\n  {}",
        errors.len(),
        lines.join("\n  ")
    ))
    .with_detail("deviations", serde_json::to_value(deviations).unwrap_or_default())
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("mode", &self.mode).finish()
    }
}
