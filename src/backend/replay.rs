//! Replay: answers from the cassettes held in memory (`index`), never from the network.
//!
//! Occurrence n of a (cassette, key) gets the recording at position n; past the last it gets
//! the last again, or a miss with `--on-exhausted miss` (`mode::replay_choice`). A request the
//! memo knows skips `analyze` (see `memo`); a miss is explained off the runtime, since that
//! reads the store for the nearest recording.

use super::blocking;
use crate::analyze::Analyzed;
use crate::cassette::{CassetteName, StoreError};
use crate::exchange::{Answer, Exchange, Refusal};
use crate::graph_error::{GraphError, MISS_STATUS};
use crate::index::{Call, CallMemo, Entry, InMemory, Index};
use crate::key::KeyOptions;
use crate::memo::Digest;
use crate::mode::{self, Occurrences, OnExhausted};
use crate::outcome::Outcome;
use crate::respond::Miss;
use crate::sanitize::Sanitizer;
use std::collections::HashMap;
use std::sync::Arc;

/// Distinct missing requests whose occurrences are counted (see `Occurrences::next_bounded`).
const MAX_MISSES_COUNTED: usize = 65_536;

pub struct Replay {
    index: Arc<Index>,
    /// The cassettes there are, and the key options each was recorded with (replay keys a
    /// request as its cassette was keyed).
    cassettes: Arc<HashMap<CassetteName, KeyOptions>>,
    /// The default cassette and its key options, when it exists: most requests name no
    /// cassette and carry a clone of it, found without hashing the name.
    usual: Option<(CassetteName, KeyOptions)>,
    /// The cassettes that sanitize incoming requests (pseudonymised ones, or with rules).
    sanitizers: HashMap<CassetteName, Arc<Sanitizer>>,
    names: Vec<CassetteName>,
    /// `None` with `--no-memo`: every request is analyzed afresh.
    memo: Option<Arc<CallMemo>>,
    /// Occurrences of requests the index has no call for (a call counts its own).
    occurrences: Occurrences,
    on_exhausted: OnExhausted,
}

/// A request the memo knew: its analysis and the call it replays.
pub type Remembered<'a> = crate::memo::Recalled<'a, Entry>;

impl Replay {
    pub fn new(
        index: Index,
        cassettes: Arc<HashMap<CassetteName, KeyOptions>>,
        usual: &CassetteName,
        sanitizers: HashMap<CassetteName, Arc<Sanitizer>>,
        memo: Option<Arc<CallMemo>>,
        on_exhausted: OnExhausted,
    ) -> Self {
        let mut names: Vec<CassetteName> = cassettes.keys().cloned().collect();
        names.sort();
        let usual = cassettes
            .get(usual)
            .map(|options| (usual.clone(), options.clone()));
        Self {
            index: Arc::new(index),
            cassettes,
            usual,
            sanitizers,
            names,
            memo,
            occurrences: Occurrences::default(),
            on_exhausted,
        }
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The key options `cassette` was recorded with (`None`: no such cassette).
    pub fn key_options(&self, cassette: &CassetteName) -> Option<&KeyOptions> {
        if let Some((name, options)) = &self.usual
            && name.is_same(cassette)
        {
            return Some(options);
        }
        self.cassettes.get(cassette)
    }

    /// Whether any cassette sanitizes incoming requests.
    pub fn sanitizes(&self) -> bool {
        !self.sanitizers.is_empty()
    }

    /// What `cassette` sanitizes incoming requests with (none: nothing).
    pub fn sanitizer(&self, cassette: &CassetteName) -> Option<&Arc<Sanitizer>> {
        // The usual run sanitizes nothing: no hashing of the cassette name per request then.
        if self.sanitizers.is_empty() {
            return None;
        }
        self.sanitizers.get(cassette)
    }

    /// A request for a cassette there is none of: named, with the ones there are.
    pub fn unknown(&self, cassette: &CassetteName) -> Refusal {
        let there = crate::cassette::listing(cassette.as_str(), &self.names);
        tracing::warn!(%cassette, "a request for a cassette that does not exist");
        Refusal::new(
            Outcome::UnknownCassette,
            GraphError::new(
                MISS_STATUS,
                "graphVcrUnknownCassette",
                format!(
                    "there is no cassette \"{cassette}\" in the cassette directory; cassettes there (closest first): {there}"
                ),
            )
            .with_detail("cassette", cassette.as_str())
            .with_detail("cassettes", there),
        )
    }

    /// The digest the memo knows this request by (none without a memo).
    pub fn digest(&self, ex: &Exchange<'_>, body: &[u8]) -> Option<Digest> {
        let memo = self.memo.as_ref()?;
        let parts = ex.parts;
        let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        Some(memo.digest(ex.cassette.as_str(), &parts.method, path_and_query, body))
    }

    /// What the memo remembers of this request.
    pub fn recall(&self, digest: Option<Digest>) -> Option<Remembered<'_>> {
        let known = self.memo.as_ref()?.get(digest?)?;
        known.call.warm();
        Some(known)
    }

    /// Replays a request the memo knew. `analyze` explains a miss (all recordings played).
    pub async fn answer_remembered<'b>(
        &self,
        call: &Call,
        analyze: impl FnOnce(&mut Exchange<'_>) -> Result<Analyzed<'b>, Refusal>,
        ex: &mut Exchange<'_>,
    ) -> Result<Answer, Refusal> {
        let n = mode::take(&call.counter);
        if let Some(answer) = self.serve(call, n, ex)? {
            return Ok(answer);
        }
        let analyzed = analyze(ex)?;
        self.miss(analyzed, n, call.recorded(), ex).await
    }

    /// The recorded call an analyzed request is matched to, if there is one.
    pub async fn find(
        &self,
        analyzed: &Analyzed<'_>,
        ex: &Exchange<'_>,
    ) -> Result<Option<Arc<Call>>, Refusal> {
        let key = analyzed.key;
        Ok(match self.index.get(&ex.cassette, &key) {
            InMemory::Found(call) => Some(call),
            InMemory::NotRecorded => None,
            InMemory::AskTheStore => {
                let index = Arc::clone(&self.index);
                let cassette = ex.cassette.clone();
                let action = ex.action.clone().unwrap_or_else(|| Arc::from(""));
                blocking(move || index.lookup(&cassette, &key, &action)).await?
            }
        })
    }

    /// Replays an analyzed request matched to `ex.call` ([`Replay::find`]) or misses, and
    /// remembers it if it replayed.
    pub async fn answer(
        &self,
        analyzed: Analyzed<'_>,
        digest: Option<Digest>,
        ex: &mut Exchange<'_>,
    ) -> Result<Answer, Refusal> {
        let key = analyzed.key;
        let Some(call) = ex.call.clone() else {
            let n = self
                .occurrences
                .next_bounded(&ex.cassette, &key, MAX_MISSES_COUNTED);
            return self.miss(analyzed, n, 0, ex).await;
        };
        let n = mode::take(&call.counter);
        match self.serve(&call, n, ex)? {
            Some(answer) => {
                if let (Some(memo), Some(digest)) = (&self.memo, digest) {
                    memo.insert(digest, analyzed.findings, Entry::new(call), false);
                }
                Ok(answer)
            }
            None => {
                let recorded = call.recorded();
                self.miss(analyzed, n, recorded, ex).await
            }
        }
    }

    /// The recording for occurrence `n`, if there is one to serve.
    fn serve(&self, call: &Call, n: u32, ex: &Exchange<'_>) -> Result<Option<Answer>, Refusal> {
        let recordings = call.recordings().map_err(|error| {
            tracing::error!(cassette = %ex.cassette, error = %error.message, "a recording cannot be served");
            Refusal::new(Outcome::CorruptRecord, error)
        })?;
        let at_n = recordings.iter().find(|p| p.position == n);
        let chosen = mode::replay_choice(n, self.on_exhausted, at_n, recordings.last(), |p| {
            p.position
        });
        Ok(chosen.ok().map(|prepared| {
            Answer::new(
                prepared.respond(ex.asked.client_request_id, &|| ex.client_origin()),
                Outcome::Replayed,
                Some(prepared.position),
            )
        }))
    }

    /// A miss: logged, and explained with the nearest recording (read off the runtime).
    async fn miss(
        &self,
        analyzed: Analyzed<'_>,
        occurrence: u32,
        recorded: u32,
        ex: &mut Exchange<'_>,
    ) -> Result<Answer, Refusal> {
        let parts = ex.parts;
        tracing::warn!(cassette = %ex.cassette, method = %parts.method, path = %ex.path,
            key = %analyzed.key, "replay miss");
        let miss = Miss {
            method: parts.method.clone(),
            path: ex.path.to_string(),
            query: analyzed.query,
            classified: analyzed.classified,
            key: analyzed.key,
            canonical: analyzed.canonical,
            occurrence,
            recorded,
        };
        let index = Arc::clone(&self.index);
        let name: CassetteName = ex.cassette.clone();
        let error = blocking(move || -> Result<_, StoreError> {
            let candidates = if recorded == 0 {
                index.nearest(&name, &miss.summary())?
            } else {
                Vec::new()
            };
            index.with_cassette(&name, |cassette| miss.error(cassette, &candidates))
        })
        .await?;
        let error = match &ex.sanitizer {
            Some(s) if s.lacks_key() => error.with_message_suffix(&format!(
                " The cassette is pseudonymised and its key is not here ({} or {} in the cassette \
                 directory), so identifiers sent as they are in the tenant cannot be matched; \
                 ids read from replayed answers can.",
                crate::sanitize::KEY_ENV,
                crate::sanitize::KEY_FILE
            )),
            _ => error,
        };
        Err(Refusal::new(Outcome::Miss, error))
    }
}
