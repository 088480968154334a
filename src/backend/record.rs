//! Record and auto: forward to the upstream and keep the answer, durably, before the client
//! gets it. Auto first replays what the cassette already has at this occurrence.
//!
//! The nth identical request (same cassette, same key) in a run is occurrence n; record stores
//! its answer as the nth recording (replacing an older one, so re-recording a suite refreshes
//! its cassette), auto records a new call at the next free position.

use super::{blocking, forward, store_failure, upstream_url};
use crate::analyze::Analyzed;
use crate::cassette::{Cassette, CassetteName, Store, StoreError};
use crate::classify::Classified;
use crate::exchange::{Answer, Exchange, Refusal};
use crate::graph_error::GraphError;
use crate::interaction::{
    self, Body as StoredBody, Interaction, RecordedRequest, RecordedResponse,
};
use crate::key::{CanonicalBody, Key, KeyOptions};
use crate::links;
use crate::mode::Occurrences;
use crate::outcome::Outcome;
use crate::redact;
use crate::respond::{self, Prepared};
use crate::sanitize::{Sanitizer, Setup};
use crate::upstream::{Upstream, UpstreamResponse};
use bytes::Bytes;
use http::StatusCode;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Which forwarded calls record and auto store.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scope {
    /// `--assign-only`: Intune assign actions only.
    pub assign_only: bool,
    /// `--record-throttling`: throttled answers too.
    pub throttling: bool,
}

impl Scope {
    /// Why an answer with `status` to this call is not stored, or `None` when it is.
    pub fn not_stored(&self, classified: &Classified, status: StatusCode) -> Option<String> {
        if self.assign_only && !classified.is_assign {
            return Some("not an assign action (--assign-only)".into());
        }
        if classified.version.is_none() {
            return Some("not a Graph API path (under /v1.0 or /beta)".into());
        }
        let throttled = matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        );
        if throttled && !self.throttling {
            return Some(format!(
                "a throttled answer ({status}), passed to the client to retry; the retry's answer is recorded (--record-throttling keeps both)"
            ));
        }
        None
    }
}

pub struct Record {
    store: Store,
    upstream: Upstream,
    /// Auto mode: replay what is recorded.
    auto: bool,
    /// Which calls are stored.
    scope: Scope,
    key: KeyOptions,
    cassettes: Mutex<HashMap<CassetteName, Cassette>>,
    /// The project's rules and `--pseudonymize`, and each cassette's sanitizer once known.
    sanitize: Setup,
    sanitizers: Mutex<HashMap<CassetteName, Option<Arc<Sanitizer>>>>,
    occurrences: Occurrences,
}

impl Record {
    /// Opens the default cassette now, so a broken one fails at start-up, not on first use.
    pub fn new(
        store: Store,
        upstream: Upstream,
        auto: bool,
        scope: Scope,
        key: KeyOptions,
        sanitize: Setup,
        default: &CassetteName,
    ) -> Result<Self, StoreError> {
        let record = Self {
            store,
            upstream,
            auto,
            scope,
            key,
            cassettes: Mutex::new(HashMap::new()),
            sanitize,
            sanitizers: Mutex::new(HashMap::new()),
            occurrences: Occurrences::default(),
        };
        record.cassette(default)?;
        Ok(record)
    }

    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Forwards a call and keeps its answer (auto: replays it if recorded at this occurrence).
    pub async fn answer(
        &self,
        body: Bytes,
        analyzed: Analyzed<'_>,
        ex: &mut Exchange<'_>,
    ) -> Result<Answer, Refusal> {
        let taken = match self.replay_recorded(&analyzed.key, ex).await? {
            Ok(replayed) => return Ok(replayed),
            Err(taken) => taken,
        };
        let response = forward(&self.upstream, body, &analyzed.classified, ex).await?;
        self.keep(&analyzed, taken, response, ex).await
    }

    /// Auto: the recording at this call's occurrence, served; otherwise the occurrence taken
    /// (record takes it only when it keeps the answer, so a throttled try does not use one).
    pub async fn replay_recorded(
        &self,
        key: &Key,
        ex: &mut Exchange<'_>,
    ) -> Result<Result<Answer, Option<u32>>, Refusal> {
        if !self.auto {
            return Ok(Err(None));
        }
        let key = *key;
        let n = self.occurrences.next(&ex.cassette, &key);
        let cassette = self.cassette(&ex.cassette).map_err(|e| store_failure(&e))?;
        match blocking(move || cassette.get_recorded(&key, n)).await? {
            Some(found) => {
                let prepared = Prepared::of(&found)
                    .map_err(|error| Refusal::new(Outcome::CorruptRecord, error))?;
                let response = prepared.respond(ex.asked.client_request_id, &|| ex.client_origin());
                Ok(Ok(Answer::new(
                    response,
                    Outcome::Replayed,
                    Some(prepared.position),
                )))
            }
            None => Ok(Err(Some(n))),
        }
    }

    /// The upstream's answer to a forwarded call: stored as the call's recording when it is
    /// in the recorded scope and not a throttled try, then passed on (links rewritten to the
    /// address the client used). `taken`: the occurrence auto took for it.
    pub async fn keep(
        &self,
        analyzed: &Analyzed<'_>,
        taken: Option<u32>,
        mut response: UpstreamResponse,
        ex: &mut Exchange<'_>,
    ) -> Result<Answer, Refusal> {
        let key = analyzed.key;
        let not_stored = match self.scope.not_stored(&analyzed.classified, response.status) {
            Some(why) => Some(why),
            // Graph answers an item 424 because another item failed: a fact about that batch,
            // not this call's answer.
            None if ex.batch.is_some() && response.status == StatusCode::FAILED_DEPENDENCY => {
                Some("its dependency in the batch failed (424)".to_string())
            }
            None => None,
        };
        if let Some(why) = not_stored {
            if let Some(n) = taken {
                self.occurrences.give_back(&ex.cassette, &key, n);
            }
            super::links_to_client(&self.upstream, &mut response, ex);
            return Ok(Answer::forwarded(response).with_note(format!("not recorded: {why}")));
        }
        let n = taken.unwrap_or_else(|| self.occurrences.next(&ex.cassette, &key));
        let cassette = self.cassette(&ex.cassette).map_err(|e| store_failure(&e))?;
        let interaction = self.interaction(analyzed, n, &response, ex);
        let (action, status) = (interaction.action.clone(), interaction.response.status);
        self.record(&cassette, &key, interaction, &response, ex)
            .await?;
        tracing::info!(cassette = %ex.cassette, action = %action,
            status = status, key = %key, position = n, "recorded");
        super::links_to_client(&self.upstream, &mut response, ex);
        Ok(Answer::new(
            respond::forwarded(response, "recorded"),
            Outcome::Recorded,
            Some(n),
        ))
    }

    /// The record of a forwarded call: its request from what the gate let through, its
    /// response as the upstream sent it (gated in [`Record::record`]).
    fn interaction(
        &self,
        analyzed: &Analyzed<'_>,
        position: u32,
        response: &UpstreamResponse,
        ex: &Exchange<'_>,
    ) -> Interaction {
        let parts = ex.parts;
        let classified = &analyzed.classified;
        Interaction {
            format: interaction::FORMAT,
            key: analyzed.key.to_hex(),
            position,
            action: classified.action_label(),
            recorded_at: recorded_now(),
            upstream: upstream_url(&self.upstream, ex),
            request: RecordedRequest {
                method: parts.method.to_string(),
                version: classified.version.map(|v| v.to_string()),
                path: ex.path.to_string(),
                query: analyzed.query.clone(),
                headers: self.stored_headers(ex),
                body: StoredBody::from_bytes(&analyzed.stored_body),
                canonical_body: match &analyzed.canonical {
                    CanonicalBody::Json(s) => Some(s.clone()),
                    CanonicalBody::Bytes(_) => None,
                },
            },
            // Not gated yet: `record` gates the response, the one part `analyze` has not.
            response: RecordedResponse {
                status: response.status.as_u16(),
                headers: respond::header_pairs(&response.headers),
                body: StoredBody::from_bytes(&response.body),
            },
        }
    }

    /// Writes an interaction through the redaction gate (its response; the request was gated
    /// when analyzed) and waits until it is durable: a
    /// client never holds a response whose recording could still be lost. The interaction
    /// is dropped once serialized: a large body is not held three times while sled copies it.
    async fn record(
        &self,
        cassette: &Cassette,
        key: &Key,
        mut interaction: Interaction,
        response: &UpstreamResponse,
        ex: &mut Exchange<'_>,
    ) -> Result<(), Refusal> {
        // The request half was gated by `analyze` (query, body, canonical form) and by
        // `stored_headers`; only the response still needs the gate.
        let mut secrets = ex.secrets().clone();
        redact::response(&mut interaction.response, &mut secrets);
        // After the gate, which has decoded a compressed body.
        links::to_stored(&mut interaction.response, &interaction.upstream);
        if let Some(s) = &ex.sanitizer {
            s.response(&mut interaction.response);
        }
        let serialized = redact::to_bytes(&interaction, &secrets);
        let position = interaction.position;
        drop(interaction);
        let result = match serialized {
            Ok(bytes) => self.store.record(cassette, key, position, bytes).await,
            Err(e) => Err(StoreError::Encode {
                cassette: cassette.name().to_string(),
                source: e,
            }),
        };
        result.map_err(|e| {
            tracing::error!(cassette = %cassette.name(), error = %e, "recording failed");
            Refusal::new(
                Outcome::StoreError,
                GraphError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "graphVcrRecordFailed",
                    format!(
                        "the call reached the upstream, which answered {}, but recording it failed: {e}",
                        response.status
                    ),
                ),
            )
        })
    }

    /// The open cassette `name`; a new one is stamped with this run's key options.
    fn cassette(&self, name: &CassetteName) -> Result<Cassette, StoreError> {
        let mut open = self.cassettes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = open.get(name) {
            return Ok(c.clone());
        }
        let cassette = self.store.cassette(name)?;
        let want = self.key.to_json();
        match cassette.meta() {
            None => cassette.set_meta(&json!({"key_options": want}))?,
            Some(meta) if meta.get("key_options") != Some(&want) => {
                tracing::warn!(cassette = %name, recorded_with = %meta["key_options"], now = %want,
                    "cassette was recorded with other key options (--ordered-arrays, --ignore-field); \
                     requests will miss unless they match");
            }
            Some(_) => {}
        }
        open.insert(name.clone(), cassette.clone());
        Ok(cassette)
    }

    /// The request headers a recording keeps, sanitized as the request was.
    fn stored_headers(&self, ex: &Exchange<'_>) -> Vec<(String, String)> {
        let mut headers = respond::stored_headers(&ex.parts.headers);
        if let Some(s) = &ex.sanitizer {
            s.headers(&mut headers);
        }
        headers
    }

    /// What `name` sanitizes with (none: nothing), decided when the run first uses it: a new
    /// cassette of a `--pseudonymize` run remembers that it is pseudonymised; one that was
    /// already is stays so, flag or not.
    pub fn sanitizer(&self, name: &CassetteName) -> Result<Option<Arc<Sanitizer>>, Refusal> {
        if let Some(known) = self
            .sanitizers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Ok(known.clone());
        }
        let cassette = self.cassette(name).map_err(|e| store_failure(&e))?;
        let meta = cassette.meta();
        let recorded = crate::sanitize::recorded(meta.as_ref());
        let refused = |e: &dyn std::fmt::Display| {
            tracing::error!(cassette = %name, error = %e, "cannot record into this cassette");
            Refusal::new(
                Outcome::StoreError,
                GraphError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "graphVcrPseudonymKey",
                    e.to_string(),
                ),
            )
        };
        let (sanitizer, remember) = self
            .sanitize
            .for_cassette(name.as_str(), recorded.as_ref(), !cassette.is_empty(), true)
            .map_err(|e| refused(&e))?;
        if let Some(p) = remember {
            let mut meta = meta.unwrap_or_else(|| json!({"key_options": self.key.to_json()}));
            meta[crate::sanitize::META_FIELD] = serde_json::to_value(p).unwrap_or_default();
            cassette.set_meta(&meta).map_err(|e| refused(&e))?;
        }
        let found = (!sanitizer.is_noop()).then(|| Arc::new(sanitizer));
        self.sanitizers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone(), found.clone());
        Ok(found)
    }

    /// The cassettes this run opened, for the report's unplayed list.
    pub fn open_cassette(&self, name: &CassetteName) -> Result<Cassette, StoreError> {
        self.cassette(name)
    }
}

/// When a recording is made, to the microsecond: export lists recordings in this order, and
/// calls a fast client sends one after another are often recorded within one millisecond.
fn recorded_now() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

#[cfg(test)]
mod recorded_at_tests {
    #[test]
    fn recording_time_is_kept_to_the_microsecond() {
        let t = super::recorded_now();
        let fraction = t.split('.').nth(1).unwrap_or_default();
        assert_eq!(fraction.len(), "123456Z".len(), "{t}");
        assert!(humantime::parse_rfc3339_weak(&t).is_ok(), "{t}");
    }
}
