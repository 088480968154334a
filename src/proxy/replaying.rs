//! Replaying: the pipeline's branch that answers from the cassette's prepared recordings
//! (see `index`): the choice of which one occurrence n gets.

use super::{Proxy, Trace};
use crate::mode;
use crate::respond::Prepared;
use crate::stats::Stats;
use bytes::Bytes;
use http::{HeaderMap, Response};
use http_body_util::Full;

impl Proxy {
    /// Replay: the recording for occurrence `n` among `recordings`, if there is one to serve.
    pub(super) fn serve(
        &self,
        request_headers: &HeaderMap,
        trace: &mut Trace,
        recordings: &[Prepared],
        n: u32,
    ) -> Option<Response<Full<Bytes>>> {
        let at_n = recordings.iter().find(|p| p.position == n);
        let prepared = mode::replay_choice(n, self.on_exhausted, at_n, recordings.last(), |p| {
            p.position
        })
        .ok()?;
        trace.outcome = "replayed";
        trace.position = Some(prepared.position);
        Stats::bump(&self.stats.replayed);
        Some(prepared.respond(request_headers))
    }
}
