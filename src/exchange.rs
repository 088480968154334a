//! Exchange: one request's record as it moves through the pipeline, the one value every way
//! of answering (memo hit, index hit, miss, forward, record, reject) fills in and hands to the
//! journal, the stats and the run log.
//!
//! Stages write into it in order: `proxy` places it in a cassette, `analyze` adds the action,
//! key and deviations, the backend adds the response's deviations, and the outcome is set
//! once, from what the backend returned ([`Answer`]) or the [`Refusal`] that stopped it.
//! Everything in it that came from the request has passed the redaction gate, and
//! [`Exchange::secrets`] holds the exact values the gate found (and the credential headers'),
//! for the final scrub of whatever is written.

use crate::cassette::CassetteName;
use crate::check::{Deviation, Deviations};
use crate::graph_error::GraphError;
use crate::key::Key;
use crate::outcome::Outcome;
use crate::redact::Secrets;
use bytes::Bytes;
use http::Response;
use http::request::Parts;
use http_body_util::Full;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

/// One request, as far as graph-vcr has got with it.
#[derive(Debug)]
pub struct Exchange<'a> {
    pub parts: &'a Parts,
    /// The request headers every stage reads, found once.
    pub asked: crate::headers::Asked<'a>,
    /// What the journal and reports call the request's path: its path, or for a refused
    /// `CONNECT` its target.
    pub path: Cow<'a, str>,
    pub cassette: CassetteName,
    /// Unset until analyzed (no allocation for requests turned away earlier).
    pub action: Option<Arc<str>>,
    pub key: Option<Key>,
    pub deviations: Deviations,
    /// The request body's size, once read.
    pub body_len: usize,
    /// How many deviations past the per-call cap were dropped (see `check::MAX_DEVIATIONS`).
    pub deviations_omitted: usize,
    pub outcome: Outcome,
    /// The recording served or written.
    pub position: Option<u32>,
    /// What graph-vcr answered when it answered itself (a miss's diff, a rejection), gated.
    pub message: Option<String>,
    /// The exact secret values of this exchange; the request's credential headers are added
    /// when first asked for ([`Exchange::secrets`]), so a request that writes nothing pays
    /// nothing for them.
    secrets: Secrets,
    headers_in_secrets: bool,
    pub started: Instant,
    /// Set on an item of a `$batch`: which batch and item it is.
    pub batch: Option<BatchRef>,
    /// The cassette's sanitizing (rules, pseudonymisation), when it has any: what was
    /// analyzed and stored passed it, and so does every text written about the exchange.
    pub sanitizer: Option<Arc<crate::sanitize::Sanitizer>>,
    /// Its analysis came from the memo: the same request was analyzed (and its deviations
    /// logged) before in this run.
    pub remembered: bool,
    /// The recorded call it was matched to (replay), which keeps the run log's count of it.
    pub call: Option<Arc<crate::index::Call>>,
}

/// Which `$batch` (numbered in the run) and which of its items an exchange is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchRef {
    /// The batch's number in this run, from 1.
    pub batch: u64,
    /// The item's `id`; absent on the batch itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
}

impl<'a> Exchange<'a> {
    pub fn new(parts: &'a Parts, cassette: CassetteName) -> Self {
        Self {
            parts,
            asked: crate::headers::Asked::of(&parts.headers),
            path: Cow::Borrowed(parts.uri.path()),
            cassette,
            action: None,
            key: None,
            deviations: Deviations::default(),
            body_len: 0,
            deviations_omitted: 0,
            // Overwritten by `settle`; a request that never gets there did not get an answer.
            outcome: Outcome::BadRequest,
            position: None,
            message: None,
            secrets: Secrets::default(),
            headers_in_secrets: false,
            started: Instant::now(),
            batch: None,
            sanitizer: None,
            remembered: false,
            call: None,
        }
    }

    /// The origin the client used, which links in its answer must point at (`links`).
    pub fn client_origin(&self) -> String {
        crate::links::client_origin(self.parts)
    }

    /// What the analysis found (afresh, or remembered by the memo): the one way both note it.
    pub fn analyzed(&mut self, action: Arc<str>, key: Key, findings: &crate::check::Findings) {
        self.action = Some(action);
        self.key = Some(key);
        // Deviations found before the analysis (a batch's own rules) stay first.
        let found = findings.with_headers(&self.asked);
        if self.deviations.is_empty() {
            self.deviations = found;
        } else {
            self.deviations.to_mut().extend(found.iter().cloned());
        }
        self.deviations_omitted = findings.omitted();
    }

    /// Adds deviations found later (the response's), keeping the exchange's total at the
    /// per-call cap (`check::MAX_DEVIATIONS`) and counting the rest.
    pub fn add_deviations(&mut self, found: Vec<Deviation>, omitted: usize) {
        let room = crate::check::MAX_DEVIATIONS.saturating_sub(self.deviations.len());
        let over = found.len().saturating_sub(room);
        self.deviations
            .to_mut()
            .extend(found.into_iter().take(room));
        self.deviations_omitted += over + omitted;
    }

    /// Every secret value of this exchange: its credential headers and what the gate found.
    pub fn secrets(&mut self) -> &Secrets {
        if !self.headers_in_secrets {
            self.secrets.add_headers(&self.parts.headers);
            self.headers_in_secrets = true;
        }
        &self.secrets
    }

    /// Where the gate adds the values it finds in the request.
    pub fn secrets_mut(&mut self) -> &mut Secrets {
        &mut self.secrets
    }

    /// Takes the backend's answer or the refusal that stopped the request: the one place the
    /// outcome is set.
    pub fn settle(&mut self, result: Result<Answer, Refusal>) -> Response<Full<Bytes>> {
        match result {
            Ok(answer) => {
                self.outcome = answer.outcome;
                self.position = answer.position;
                if let Some(note) = answer.note {
                    self.message = Some(self.secrets().scrub_text(&note));
                }
                answer.response
            }
            Err(refusal) => {
                self.outcome = refusal.outcome;
                self.message = Some(self.secrets().scrub_text(&refusal.error.message));
                refusal.into_response(self.asked.client_request_id)
            }
        }
    }
}

/// What a backend answered with.
#[derive(Debug)]
pub struct Answer {
    pub response: Response<Full<Bytes>>,
    pub outcome: Outcome,
    pub position: Option<u32>,
    /// Why an answer was not the usual one (a forwarded call not recorded), for the journal.
    pub note: Option<String>,
}

impl Answer {
    pub fn new(response: Response<Full<Bytes>>, outcome: Outcome, position: Option<u32>) -> Self {
        Self {
            response,
            outcome,
            position,
            note: None,
        }
    }

    pub fn with_note(mut self, note: String) -> Self {
        self.note = Some(note);
        self
    }

    /// The upstream's answer passed on, nothing stored.
    pub fn forwarded(upstream: crate::upstream::UpstreamResponse) -> Self {
        Self::new(
            crate::respond::forwarded(upstream, "forwarded"),
            Outcome::Forwarded,
            None,
        )
    }
}

/// Why a request was answered by graph-vcr itself: the outcome it is counted under, and the
/// Graph-format error the client gets.
#[derive(Debug)]
pub struct Refusal {
    pub outcome: Outcome,
    pub error: GraphError,
    /// When the client may try again (`Retry-After`), for a throttled request.
    pub retry_after: Option<std::time::Duration>,
    /// Close the connection instead of answering (`--faults reset`).
    pub reset: bool,
}

impl Refusal {
    pub fn new(outcome: Outcome, error: GraphError) -> Self {
        Self {
            outcome,
            error,
            retry_after: None,
            reset: false,
        }
    }

    /// Graph's `429 TooManyRequests`, as `--throttle` answers a request over a limit.
    pub fn throttled(t: crate::throttle::Throttled) -> Self {
        let error = GraphError::new(
            http::StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            format!(
                "Too many requests: over Intune's limit of {} (graph-vcr --throttle); retry after {}",
                t.limit,
                crate::throttle::retry_after_value(t.retry_after)
            ),
        )
        .with_detail("code", "429")
        .with_detail("status", "429");
        Self {
            outcome: Outcome::Throttled,
            error,
            retry_after: Some(t.retry_after),
            reset: false,
        }
    }

    /// The Graph-format answer. A body that timed out also closes its connection: the rest
    /// of it may never come, and the connection must not wait for it.
    pub fn into_response(
        self,
        client_request_id: Option<&http::HeaderValue>,
    ) -> Response<Full<Bytes>> {
        let mut response = self.error.into_response(client_request_id);
        if let Some(after) = self.retry_after
            && let Ok(v) = http::HeaderValue::from_str(&crate::throttle::retry_after_value(after))
        {
            response.headers_mut().insert(http::header::RETRY_AFTER, v);
        }
        if self.reset {
            response
                .extensions_mut()
                .insert(crate::connection::ResetConnection);
        }
        if self.outcome == Outcome::BodyTimeout {
            response.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}
