//! Proxy: one request's path through graph-vcr.
//!
//! `listener` hands each request to [`Proxy::handle`], which runs the stages in order:
//! read the body (bounded) → place it in a cassette → `analyze` (redact, classify, check,
//! key; replay's `memo` may answer for it) → `--on-deviation reject` → the mode's `backend`
//! (replay, record and auto, audit) → settle the `exchange` with the answer or the refusal →
//! flag its deviations → `journal`, `stats` and the run log, from that one exchange.
//! Every answer graph-vcr makes itself is a Graph-format error (`graph_error`).
//!
//! Its options and start-up errors are in `config`; forward mode's pass-through of hosts it
//! does not intercept is in `pass_on`.

use crate::analyze::{self, Analyzed, TooDeep};
use crate::backend::{self, Audit, Backend, Record, Replay};
use crate::batch::{self as graph_batch};
use crate::cassette::{Access, CassetteName, JOURNAL_FILE, Store, StoreError};
use crate::check::{self, Deviation, OnDeviation, Severity};
use crate::exchange::{Answer, Exchange, Refusal};
use crate::graph_error::GraphError;
use crate::headers::CASSETTE_HEADER;
use crate::index::{self, CallMemo, Index};
use crate::journal::{Entry, Journal};
use crate::key::KeyOptions;
use crate::mode::Mode;
use crate::outcome::Outcome;
use crate::report::{Event, Kept, Report, RunLog};
use crate::stats::Stats;
use crate::upstream::Upstream;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{Full, Limited};
use hyper::body::Body;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

mod batches;
mod body;
mod config;
mod pass_on;

pub use config::{
    CassetteOptions, ProxyConfig, ProxyError, PseudonymizeOption, RequestLimits, SanitizeConfig,
};

/// The shared state of a running proxy.
pub struct Proxy {
    mode: Mode,
    backend: Backend,
    default_cassette: CassetteName,
    key: KeyOptions,
    on_deviation: OnDeviation,
    journal: Option<Journal>,
    limits: RequestLimits,
    run: RunLog,
    started: SystemTime,
    /// `$batch` requests so far, to number them in the journal.
    batches: std::sync::atomic::AtomicU64,
    /// `--throttle`: Intune's limits, rehearsed, and the watch on retries.
    throttle: Option<crate::throttle::Throttle>,
    /// `--faults`: injected failures.
    faults: Option<crate::faults::Faults>,
    pub stats: Stats,
}

/// Replay's cassettes as the report reads them: through the index, in chunks, so listing a
/// large cassette's unplayed recordings does not leave sled holding every page of it.
struct Replayed<'a> {
    index: &'a Index,
    names: Vec<CassetteName>,
}

impl crate::report::Recordings for Replayed<'_> {
    fn cassettes(&self) -> Vec<CassetteName> {
        self.names.clone()
    }

    fn each(
        &self,
        cassette: &CassetteName,
        f: &mut dyn FnMut(Result<crate::interaction::Interaction, StoreError>),
    ) -> Result<(), StoreError> {
        self.index.walk(cassette, f)
    }
}

impl Proxy {
    pub fn new(config: ProxyConfig) -> Result<Self, ProxyError> {
        let dir = &config.cassettes.cassettes;
        let upstream = || match &config.upstream {
            Some(opts) => Ok(Upstream::new(opts)?),
            None => Err(ProxyError::NoUpstream(config.mode.as_str())),
        };
        let rehearsing = config.throttle.throttle.is_some() || config.throttle.faults.is_some();
        if config.mode == Mode::Record && rehearsing {
            return Err(ProxyError::ThrottleInRecord);
        }
        if config.mode == Mode::Audit && config.sanitize.pseudonymize {
            return Err(ProxyError::PseudonymizeInAudit);
        }
        let rules = Arc::clone(&config.sanitize.rules);
        let backend = match config.mode {
            // Replay gets no upstream at all: it cannot open a connection even by mistake.
            Mode::Replay => {
                let store = crate::export::open(dir, Access::ReadOnly)?;
                // Each cassette's meta read once: its key options and its sanitizing.
                let metas = store
                    .cassette_names()
                    .into_iter()
                    .map(|name| Ok((store.cassette(&name)?.meta(), name)))
                    .collect::<Result<Vec<_>, StoreError>>()?;
                let keys = Arc::new(recorded_key_options(&metas, &config.key)?);
                warn_if_missing(&config.cassettes.cassette, &keys);
                let memo = config.memo.then(|| Arc::new(CallMemo::default()));
                let prefill = index::Prefill {
                    memo: memo.clone(),
                    keys: Arc::clone(&keys),
                    max_json_depth: config.limits.max_json_depth,
                };
                let setup = crate::sanitize::Setup::for_reading(rules, dir)?;
                let sanitizers = replay_sanitizers(&metas, &setup)?;
                let index = Index::start(store, prefill)?;
                Backend::Replay(Replay::new(
                    index,
                    keys,
                    &config.cassettes.cassette,
                    sanitizers,
                    memo,
                    config.on_exhausted,
                ))
            }
            Mode::Record | Mode::Auto => Backend::Record(Box::new(Record::new(
                Store::open(dir, Access::ReadWrite)?,
                upstream()?,
                config.mode == Mode::Auto,
                backend::Scope {
                    assign_only: config.cassettes.assign_only,
                    throttling: config.cassettes.record_throttling,
                },
                config.key.clone(),
                crate::sanitize::Setup::for_recording(rules, config.sanitize.pseudonymize, dir)?,
                &config.cassettes.cassette,
            )?)),
            Mode::Audit => Backend::Audit(Box::new(Audit::new(upstream()?))),
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
        Ok(Self {
            mode: config.mode,
            backend,
            default_cassette: config.cassettes.cassette,
            key: config.key,
            on_deviation: config.check.on_deviation,
            journal,
            limits: config.limits,
            run: RunLog::default(),
            started: SystemTime::now(),
            batches: std::sync::atomic::AtomicU64::new(0),
            throttle: crate::throttle::Throttle::new(&config.throttle),
            faults: config.throttle.faults.clone().and_then(|spec| {
                crate::faults::Faults::new(spec, config.throttle.seed, config.throttle.time_scale)
            }),
            stats: Stats::default(),
        })
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Runs `f` on the cassette store (none in audit mode). In replay the store is opened
    /// again if the index has closed it. Blocks.
    pub fn with_store<T>(&self, f: impl FnOnce(&Store) -> T) -> Option<Result<T, StoreError>> {
        self.backend.with_store(f)
    }

    /// Replay: whether every recording is in memory (see `index`); other modes: true.
    pub fn is_indexed(&self) -> bool {
        match &self.backend {
            Backend::Replay(r) => r.index().is_complete(),
            _ => true,
        }
    }

    /// Replay: whether the index's scan is still running (it logs why if it stops early).
    pub fn is_indexing(&self) -> bool {
        match &self.backend {
            Backend::Replay(r) => r.index().is_scanning(),
            _ => false,
        }
    }

    /// Whether `--upstream` was given: forward mode then sends intercepted hosts there.
    pub fn upstream_is_explicit(&self) -> bool {
        self.backend.upstream().is_some_and(Upstream::is_explicit)
    }

    pub fn journal_path(&self) -> Option<&std::path::Path> {
        self.journal.as_ref().map(Journal::path)
    }

    /// Makes every recording durable and writes out the journal. Call once, at shutdown.
    pub async fn close(&self) -> Result<(), String> {
        if let Backend::Record(r) = &self.backend {
            r.store().stop_recording();
            r.store().flush_blocking().map_err(|e| e.to_string())?;
            r.store().write_manifest().map_err(|e| e.to_string())?;
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
        let (parts, body) = request.into_parts();
        let mut ex = Exchange::new(&parts, self.default_cassette.clone());
        let result = self.answer(body, &mut ex).await;
        let mut response = ex.settle(result);
        // A batch has set its own, naming its items' deviations too.
        if !ex.deviations.is_empty()
            && let http::header::Entry::Vacant(slot) =
                response.headers_mut().entry(crate::headers::DEVIATIONS)
            && let Some(v) = ex.deviations.header()
        {
            slot.insert(v);
        }
        let large = ex.body_len >= LARGE_BODY;
        self.finish(ex, response.status());
        if large {
            crate::memory::give_back();
        }
        response
    }

    /// The pipeline up to the backend's answer.
    async fn answer<B>(&self, body: B, ex: &mut Exchange<'_>) -> Result<Answer, Refusal>
    where
        B: Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let body = self.read_body(body).await?;
        ex.body_len = body.len();
        if let Some(named) = self.named_cassette(ex.asked.cassette)? {
            ex.cassette = named;
        }
        if let Backend::Replay(replay) = &self.backend
            && replay.key_options(&ex.cassette).is_none()
        {
            return Err(replay.unknown(&ex.cassette));
        }
        if let Some(version) = graph_batch::is_batch(&ex.parts.method, ex.parts.uri.path()) {
            match graph_batch::parse(version, &body) {
                graph_batch::Parsed::Batch(b) => return self.batch(b, ex).await,
                // Refused whole by Graph: one opaque call, with why.
                graph_batch::Parsed::Opaque(deviations) => ex.deviations = deviations.into(),
            }
        }
        self.answer_body(body, ex).await
    }

    /// The pipeline from a read body placed in a cassette: a direct call, or one `$batch` item.
    async fn answer_body(&self, body: Bytes, ex: &mut Exchange<'_>) -> Result<Answer, Refusal> {
        // `--throttle` comes after the analysis, so a throttled request is counted under its
        // call (its key), and a retry is known as one.
        match &self.backend {
            Backend::Replay(replay) => {
                let digest = replay.digest(ex, &body);
                match replay.recall(digest) {
                    Some(known) => {
                        self.note_remembered(&known, ex)?;
                        self.throttle(ex).await?;
                        let analyze = |ex: &mut Exchange<'_>| self.analyze(&body, ex);
                        replay
                            .answer_remembered(&known.call.call, analyze, ex)
                            .await
                    }
                    None => {
                        let analyzed = self.analyze(&body, ex)?;
                        // Found before `--throttle`, so a throttled request counts under the
                        // call it would have replayed, as a remembered one does.
                        ex.call = replay.find(&analyzed, ex).await?;
                        self.throttle(ex).await?;
                        replay.answer(analyzed, digest, ex).await
                    }
                }
            }
            Backend::Record(record) => {
                let analyzed = self.analyze(&body, ex)?;
                self.throttle(ex).await?;
                record.answer(body.clone(), analyzed, ex).await
            }
            Backend::Audit(audit) => {
                let analyzed = self.analyze(&body, ex)?;
                self.throttle(ex).await?;
                audit.answer(body.clone(), analyzed, ex).await
            }
        }
    }

    /// `--throttle`: a request over the limits is answered 429 here, neither replayed nor
    /// forwarded.
    async fn throttle(&self, ex: &mut Exchange<'_>) -> Result<(), Refusal> {
        let Some(t) = &self.throttle else {
            return Ok(());
        };
        let call = ex.key.map(|k| (ex.cassette.clone(), k));
        let admitted = t.admit(ex.parts, call.clone());
        if let Some(early) = admitted.early {
            ex.add_deviations(vec![crate::throttle::retry_too_early(early)], 0);
        }
        admitted.result.map_err(|over| {
            tracing::info!(cassette = %ex.cassette, path = %ex.path, limit = %over.limit,
                "throttled (--throttle)");
            Refusal::throttled(over)
        })?;
        let (Some(faults), Some(call)) = (&self.faults, call) else {
            return Ok(());
        };
        match faults.draw(call.clone()) {
            None => Ok(()),
            Some(crate::faults::Injected::Delay(d)) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            Some(crate::faults::Injected::Reset) => {
                tracing::info!(cassette = %ex.cassette, path = %ex.path,
                    "connection reset injected (--faults)");
                let mut refusal = Refusal::new(
                    Outcome::Fault,
                    GraphError::new(
                        StatusCode::BAD_GATEWAY,
                        "graphVcrConnectionReset",
                        "the connection was reset without an answer (injected by graph-vcr --faults)",
                    ),
                );
                refusal.reset = true;
                Err(refusal)
            }
            Some(crate::faults::Injected::Answer(error, retry_after)) => {
                if let Some(after) = retry_after {
                    t.watch_retry(call, after);
                }
                tracing::info!(cassette = %ex.cassette, path = %ex.path,
                    status = error.status.as_u16(), "fault injected (--faults)");
                let mut refusal = Refusal::new(Outcome::Fault, error);
                refusal.retry_after = retry_after;
                Err(refusal)
            }
        }
    }

    /// The analyze stage: what the request is (see `analyze`), noted on the exchange, and
    /// `--on-deviation reject` applied.
    fn analyze<'b>(&self, body: &'b Bytes, ex: &mut Exchange<'_>) -> Result<Analyzed<'b>, Refusal> {
        let parts = ex.parts;
        // Replay keys a request as its cassette was keyed (the options it was recorded with).
        let key = match &self.backend {
            Backend::Replay(r) => r.key_options(&ex.cassette).unwrap_or(&self.key),
            _ => &self.key,
        };
        let depth = self.limits.max_json_depth;
        // Keyed, checked and stored as sanitized; forwarded as sent. A sanitizer that changes
        // nothing leaves every part borrowed.
        let (path, query, clean) = match self.sanitizer(ex)? {
            None => (
                Cow::Borrowed(parts.uri.path()),
                parts.uri.query().map(Cow::Borrowed),
                Cow::Borrowed(&body[..]),
            ),
            Some(s) => (
                s.text(parts.uri.path()),
                parts.uri.query().map(|q| s.query(q)),
                s.body(body),
            ),
        };
        let (method, query_str) = (&parts.method, query.as_deref());
        let analyzed = match clean {
            Cow::Borrowed(b) => {
                analyze::analyze(method, &path, query_str, b, key, depth, ex.secrets_mut())
            }
            Cow::Owned(b) => {
                analyze::analyze(method, &path, query_str, &b, key, depth, ex.secrets_mut())
                    .map(Analyzed::into_owned)
            }
        }
        .map_err(|TooDeep(limit)| too_deep(limit, parts.uri.path()))?;
        if body.len() >= LARGE_BODY {
            // The parsed tree is gone: its pages go back now, not after the backend has
            // allocated its own beside them (a miss's explanation, a recording's copies).
            crate::memory::give_back();
        }
        if let Cow::Owned(p) = path {
            ex.path = Cow::Owned(p);
        }
        ex.analyzed(
            Arc::from(analyzed.action_label()),
            analyzed.key,
            &analyzed.findings,
        );
        self.reject_on_error(ex)?;
        Ok(analyzed)
    }

    /// The sanitizer of the exchange's cassette (none when it changes nothing), noted on the
    /// exchange so that everything written about it passes it too.
    fn sanitizer(
        &self,
        ex: &mut Exchange<'_>,
    ) -> Result<Option<Arc<crate::sanitize::Sanitizer>>, Refusal> {
        let found = match &self.backend {
            Backend::Replay(r) => r.sanitizer(&ex.cassette).cloned(),
            Backend::Record(r) => r.sanitizer(&ex.cassette)?,
            Backend::Audit(_) => None,
        };
        ex.sanitizer.clone_from(&found);
        Ok(found)
    }

    /// What the memo knew, noted on the exchange exactly as `analyze` would note it.
    fn note_remembered(
        &self,
        known: &backend::Remembered,
        ex: &mut Exchange<'_>,
    ) -> Result<(), Refusal> {
        self.stats.remembered.bump();
        ex.remembered = true;
        let call = &known.call.call;
        ex.call = Some(Arc::clone(call));
        ex.analyzed(Arc::clone(&call.action), call.key, &known.findings);
        self.reject_on_error(ex)
    }

    /// `--on-deviation reject`: stops a call with an `error` deviation here.
    fn reject_on_error(&self, ex: &Exchange<'_>) -> Result<(), Refusal> {
        if self.on_deviation == OnDeviation::Reject && check::has_error(&ex.deviations) {
            return Err(Refusal::new(Outcome::Rejected, rejection(&ex.deviations)));
        }
        Ok(())
    }

    /// Counts, logs, journals and folds into the run log what happened. Deviation texts passed
    /// the gate where `check` made them, the message when the exchange was settled; the
    /// journal line passes it again whole, with the exchange's own secret values.
    fn finish(&self, mut ex: Exchange<'_>, status: StatusCode) {
        let elapsed = ex.started.elapsed();
        let parts = ex.parts;
        // An exchange answered without analysis (a memo hit, a batch item whose dependency
        // failed) has not met its cassette's sanitizer yet.
        let may_sanitize = match &self.backend {
            Backend::Replay(r) => r.sanitizes(),
            Backend::Record(_) => true,
            Backend::Audit(_) => false,
        };
        // Not for a request turned away before it was placed (it may name no real cassette).
        let placed = ex.action.is_some() || ex.batch.is_some();
        if ex.sanitizer.is_none() && may_sanitize && placed {
            let _ = self.sanitizer(&mut ex);
        }
        if let Some(s) = ex.sanitizer.clone() {
            sanitize_texts(&s, &mut ex);
        }
        // The log names a distinct request's deviations once (when it was analyzed); the
        // journal and the reports have every occurrence. A line per repeated request would
        // make the log, not the proxy, the cost of a fast client.
        if !ex.remembered {
            for d in ex.deviations.iter() {
                tracing::warn!(code = %d.code, severity = d.severity.as_str(), at = %d.at,
                    cassette = %ex.cassette, path = %ex.path, "contract deviation: {}", d.message);
            }
        }
        if ex.deviations_omitted > 0 && !ex.remembered {
            tracing::warn!(cassette = %ex.cassette, path = %ex.path,
                omitted = ex.deviations_omitted, "more contract deviations than are listed");
        }
        if let Some(journal) = &self.journal {
            let entry = Entry {
                time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                cassette: ex.cassette.to_string(),
                action: ex.action.as_deref().unwrap_or("").to_string(),
                method: parts.method.to_string(),
                path: ex.path.to_string(),
                key: ex.key.map(|k| k.to_hex()),
                mode: self.mode.as_str().to_string(),
                outcome: ex.outcome.as_str().to_string(),
                status: status.as_u16(),
                position: ex.position,
                message: ex.message.clone(),
                deviations: ex.deviations.to_vec(),
                deviations_omitted: ex.deviations_omitted,
                elapsed_ms: elapsed.as_secs_f64() * 1000.0,
                batch: ex.batch.clone(),
            };
            journal.write(&entry, ex.secrets());
        }
        let event = Event {
            cassette: ex.cassette.as_str(),
            action: ex.action.as_deref().unwrap_or(""),
            method: parts.method.as_str(),
            path: &ex.path,
            key: ex.key,
            outcome: Ok(ex.outcome),
            position: ex.position,
            message: ex.message.as_deref(),
            deviations: &ex.deviations,
            deviations_omitted: ex.deviations_omitted,
            elapsed_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            kept: ex.call.as_ref().map(|c| &c.log),
        };
        self.run.add(&event);
    }

    /// Forward mode: a `CONNECT` or plain-HTTP request for a host graph-vcr may not reach,
    /// answered with `error` and counted, journaled and reported like any exchange
    /// (outcome `refused`), so that the verdict, live or from the journal, can fail on it.
    pub fn refused(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        target: &str,
        error: GraphError,
    ) -> Response<Full<Bytes>> {
        self.stats.refused.bump();
        let request = http::Request::builder()
            .method(method.clone())
            .uri(uri.clone())
            .body(());
        let Ok(request) = request else {
            return error.into_response(None);
        };
        let (parts, ()) = request.into_parts();
        let mut ex = Exchange::new(&parts, self.default_cassette.clone());
        ex.path = Cow::Owned(target.to_string());
        let response = ex.settle(Err(Refusal::new(Outcome::Refused, error)));
        self.finish(ex, response.status());
        response
    }

    /// What this run did, including recordings of the cassettes it used that were never played.
    pub fn report(&self) -> Result<Report, StoreError> {
        let calls = match &self.backend {
            Backend::Replay(r) => r.index().calls(),
            _ => Vec::new(),
        };
        let kept: Vec<Kept<'_>> = calls
            .iter()
            .map(|(cassette, call)| Kept {
                cassette: cassette.as_str(),
                key: call.key,
                log: &call.log,
            })
            .collect();
        let mut names: Vec<String> = self.run.cassettes(&kept);
        names.push(self.default_cassette.to_string());
        names.sort();
        names.dedup();
        let names: Vec<CassetteName> = names
            .iter()
            .filter_map(|n| CassetteName::new(n).ok())
            .collect();
        let mode = self.mode.as_str();
        let started = humantime::format_rfc3339_millis(self.started).to_string();
        let started = started.as_str();
        match &self.backend {
            Backend::Record(r) => {
                let open = names
                    .iter()
                    .map(|n| r.open_cassette(n))
                    .collect::<Result<Vec<_>, _>>()?;
                self.run
                    .report(mode, started, &open, r.store().expected(), &[])
            }
            Backend::Replay(r) => {
                let (expected, missing) = r
                    .index()
                    .with_store(|store| (store.expected().clone(), store.missing()))?;
                let replayed = Replayed {
                    index: r.index(),
                    names: names
                        .into_iter()
                        .filter(|n| r.key_options(n).is_some())
                        .collect(),
                };
                let mut report = self
                    .run
                    .report(mode, started, &replayed, &expected, &kept)?;
                report.add_damaged(missing);
                Ok(report)
            }
            Backend::Audit(_) => {
                self.run
                    .report(mode, started, &Vec::new(), &Default::default(), &[])
            }
        }
    }

    async fn read_body<B>(&self, body: B) -> Result<Bytes, Refusal>
    where
        B: Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let limit = self.limits.max_body_size;
        let timeout = self.limits.body_timeout;
        // Most bodies came in with their head: a first poll takes them without arming a
        // timer, which would otherwise be registered and cleared on every request.
        let mut collect = std::pin::pin!(body::whole(Limited::new(body, limit)));
        let first = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(std::future::Future::poll(collect.as_mut(), cx))
        })
        .await;
        let collected = match first {
            std::task::Poll::Ready(done) => Ok(done),
            std::task::Poll::Pending => tokio::time::timeout(timeout, collect).await,
        };
        let Ok(collected) = collected else {
            tracing::warn!(?timeout, "request body too slow; answered 408 and closing");
            return Err(Refusal::new(
                Outcome::BodyTimeout,
                GraphError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "graphVcrBodyTimeout",
                    format!(
                        "the request body did not arrive within graph-vcr's limit of {} (--body-timeout); \
                         nothing was forwarded or recorded",
                        humantime::format_duration(timeout)
                    ),
                ),
            ));
        };
        match collected {
            Ok(body) => Ok(body),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                tracing::warn!(limit, "request body too large; rejected");
                Err(Refusal::new(
                    Outcome::TooLarge,
                    GraphError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "graphVcrRequestTooLarge",
                        format!(
                            "request body is over graph-vcr's limit of {limit} bytes (--max-body-size); \
                             nothing was forwarded or recorded"
                        ),
                    ),
                ))
            }
            Err(e) => Err(Refusal::new(
                Outcome::BadRequest,
                GraphError::new(
                    StatusCode::BAD_REQUEST,
                    "graphVcrBadRequestBody",
                    format!("request body could not be read: {e}"),
                ),
            )),
        }
    }

    /// The cassette a request names with `x-graph-vcr-cassette`, if it names one (the
    /// exchange starts with the default).
    fn named_cassette(
        &self,
        header: Option<&HeaderValue>,
    ) -> Result<Option<CassetteName>, Refusal> {
        match header {
            None => Ok(None),
            Some(v) => CassetteName::new(v.to_str().unwrap_or("\u{fffd}"))
                .map(Some)
                .map_err(|e| {
                    Refusal::new(
                        Outcome::BadCassette,
                        GraphError::new(
                            StatusCode::BAD_REQUEST,
                            "graphVcrBadCassette",
                            format!("{CASSETTE_HEADER}: {e}"),
                        ),
                    )
                }),
        }
    }
}

/// A replay store's cassette, with what its meta says (read once at start).
type CassetteMeta = (Option<serde_json::Value>, CassetteName);

/// The key options of every cassette of a replay store: those it was recorded with. Options
/// given on the command line must agree with them (none given: each cassette's own apply).
fn recorded_key_options(
    metas: &[CassetteMeta],
    given: &KeyOptions,
) -> Result<std::collections::HashMap<CassetteName, KeyOptions>, ProxyError> {
    let mut keys = std::collections::HashMap::new();
    for (meta, name) in metas {
        let recorded: KeyOptions = meta
            .as_ref()
            .and_then(|m| serde_json::from_value(m.get("key_options")?.clone()).ok())
            .unwrap_or_default();
        if *given != KeyOptions::default() && recorded != *given {
            return Err(ProxyError::KeyOptions {
                cassette: name.to_string(),
                recorded: recorded.describe(),
                given: given.describe(),
            });
        }
        keys.insert(name.clone(), recorded);
    }
    Ok(keys)
}

/// Replay started with a `--cassette` there is none of: say so now, with the ones there are.
fn warn_if_missing(
    cassette: &CassetteName,
    keys: &std::collections::HashMap<CassetteName, KeyOptions>,
) {
    if !keys.contains_key(cassette) {
        let mut names: Vec<CassetteName> = keys.keys().cloned().collect();
        names.sort();
        tracing::warn!(
            "there is no cassette \"{cassette}\" (--cassette); requests without an x-graph-vcr-cassette \
             header will be refused. Cassettes there (closest first): {}",
            crate::cassette::listing(cassette.as_str(), &names)
        );
    }
}

/// The texts written about a sanitized exchange (its message, its deviations) sanitized too:
/// a response's deviation can quote a value the upstream sent.
fn sanitize_texts(s: &crate::sanitize::Sanitizer, ex: &mut Exchange<'_>) {
    if let Cow::Owned(clean) = s.text(&ex.path) {
        ex.path = Cow::Owned(clean);
    }
    if let Some(m) = &ex.message
        && let Cow::Owned(clean) = s.text(m)
    {
        ex.message = Some(clean);
    }
    for d in ex.deviations.to_mut() {
        if let Cow::Owned(clean) = s.text(&d.message) {
            d.message = clean.into();
        }
        if let Cow::Owned(clean) = s.text(&d.at) {
            d.at = clean.into();
        }
    }
}

/// Replay: the sanitizer of each cassette that has one (its pseudonymisation, remembered in
/// it, and the project's rules). A pseudonymised cassette without its key still replays
/// requests carrying aliases; the warning says why others miss.
fn replay_sanitizers(
    metas: &[CassetteMeta],
    setup: &crate::sanitize::Setup,
) -> Result<std::collections::HashMap<CassetteName, Arc<crate::sanitize::Sanitizer>>, ProxyError> {
    let mut found = std::collections::HashMap::new();
    for (meta, name) in metas {
        let recorded = crate::sanitize::recorded(meta.as_ref());
        let (sanitizer, _) = setup.for_cassette(name.as_str(), recorded.as_ref(), true, false)?;
        if sanitizer.lacks_key() {
            tracing::warn!(cassette = %name,
                "cassette is pseudonymised but its key is not here ({} or {} in the cassette directory): \
                 requests carrying aliases replay, requests carrying the original values will miss",
                crate::sanitize::KEY_ENV, crate::sanitize::KEY_FILE);
        }
        if !sanitizer.is_noop() {
            found.insert(name.clone(), Arc::new(sanitizer));
        }
    }
    Ok(found)
}

/// A body at least this large leaves enough freed memory behind to be worth returning.
const LARGE_BODY: usize = 1024 * 1024;

fn too_deep(limit: usize, path: &str) -> Refusal {
    tracing::warn!(limit, path, "request body nests too deep; rejected");
    Refusal::new(
        Outcome::TooDeep,
        GraphError::new(
            StatusCode::BAD_REQUEST,
            "graphVcrBodyTooDeep",
            format!(
                "the JSON body nests deeper than graph-vcr's limit of {limit} levels (--max-json-depth); \
                 nothing was forwarded or recorded"
            ),
        ),
    )
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
