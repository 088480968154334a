//! Replaying: the pipeline's branch that answers from the cassette — each key's recordings
//! decoded once and kept (bounded), and the choice of which one occurrence n gets.

use super::{Proxy, Trace};
use crate::cassette::CassetteName;
use crate::graph_error::GraphError;
use crate::key::Key;
use crate::mode;
use crate::respond::{Prepared, Recordings};
use crate::stats::Stats;
use bytes::Bytes;
use http::{HeaderMap, Response};
use http_body_util::Full;
use std::sync::Arc;

/// Most keys whose prepared responses replay keeps per cassette (about 1 KB each).
const PREPARED_CACHE_LIMIT: usize = 4096;

impl Proxy {
    /// Replay: the recording for occurrence `n` among `recordings`, if there is one to serve.
    pub(super) fn serve(
        &self,
        request_headers: &HeaderMap,
        trace: &mut Trace,
        recordings: &Recordings,
        n: u32,
    ) -> Option<Response<Full<Bytes>>> {
        let at_n = recordings.iter().find(|p| p.position == n).cloned();
        let prepared = mode::replay_choice(
            n,
            self.on_exhausted,
            at_n,
            recordings.last().cloned(),
            |p| p.position,
        )
        .ok()?;
        trace.outcome = "replayed";
        trace.position = Some(prepared.position);
        Stats::bump(&self.stats.replayed);
        Some(prepared.respond(request_headers))
    }

    /// Replay's prepared responses for `key`, by position, loaded from the cassette on first
    /// use: a repeated hit touches neither sled nor the decoder. `None` once the cassette's
    /// cache is full: those keys take the point-lookup path, so memory stays bounded and a
    /// cassette larger than the cache does not thrash it.
    pub(super) fn recordings(
        &self,
        cassette: &CassetteName,
        key: &Key,
    ) -> Result<Option<Recordings>, GraphError> {
        {
            let map = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(per_cassette) = map.get(cassette) {
                if let Some(found) = per_cassette.get(key) {
                    return Ok(Some(Arc::clone(found)));
                }
                if per_cassette.len() >= PREPARED_CACHE_LIMIT {
                    return Ok(None);
                }
            }
        }
        let store = self
            .cassette(cassette)
            .map_err(|e| self.store_failure(&e))?;
        let loaded = store
            .all_recorded(key)
            .map_err(|e| self.store_failure(&e))?;
        let prepared: Recordings = loaded
            .iter()
            .map(|r| Prepared::of(r).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?
            .into();
        let mut map = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
        let per_cassette = match map.get_mut(cassette) {
            Some(m) => m,
            None => map.entry(cassette.clone()).or_default(),
        };
        if per_cassette.len() < PREPARED_CACHE_LIMIT {
            per_cassette.insert(*key, Arc::clone(&prepared));
        }
        Ok(Some(prepared))
    }
}
