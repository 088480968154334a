//! Mode: record, replay, auto or audit, and the occurrence rules they share.
//!
//! The nth identical request (same cassette, same key) in a run is occurrence n. Record
//! forwards it and stores the response as the nth recording (replacing an older one, so
//! re-recording a suite refreshes its cassette). Replay serves the nth recording; past the last
//! it repeats the last, or misses with `--on-exhausted miss`. Auto replays what is recorded and
//! forwards and records the rest, so a new call is recorded at the next free position.

use crate::cassette::CassetteName;
use crate::key::Key;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// How the proxy answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Forward to the upstream and record assign calls.
    Record,
    /// Answer from the cassette only; never open a network connection.
    Replay,
    /// Replay what is recorded; forward and record the rest.
    Auto,
    /// Forward everything, record nothing; check and journal every call.
    Audit,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Record => "record",
            Self::Replay => "replay",
            Self::Auto => "auto",
            Self::Audit => "audit",
        }
    }
}

/// What replay does when a request has been played as often as it was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OnExhausted {
    /// Serve the last recording again.
    #[default]
    Repeat,
    /// Answer with a miss.
    Miss,
}

/// Counts identical requests per cassette in this run.
#[derive(Debug, Default)]
pub struct Occurrences(
    Mutex<HashMap<CassetteName, HashMap<Key, Counter, crate::key::PrehashedState>>>,
);

/// The occurrence counter of one (cassette, key). Shared, so replay's memo can count a
/// repeated call without taking the map's lock.
pub type Counter = Arc<AtomicU32>;

impl Occurrences {
    /// The 0-based occurrence of this request, counting it.
    pub fn next(&self, cassette: &CassetteName, key: &Key) -> u32 {
        take(&self.counter(cassette, key))
    }

    /// Gives back occurrence `n` of (cassette, key) when it is still the last one taken: a
    /// throttled try that auto took an occurrence for does not use it up. (When an identical
    /// request has taken the next one meanwhile, `n` stays taken, and that position is left
    /// without a recording.)
    pub fn give_back(&self, cassette: &CassetteName, key: &Key, n: u32) {
        let counter = self.counter(cassette, key);
        let _ =
            counter.compare_exchange(n.saturating_add(1), n, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// [`Occurrences::next`] for requests that may be endless and distinct (replay's misses):
    /// past `limit` distinct keys in all, a new key is not remembered and counts as its first
    /// occurrence, so memory stays bounded whatever clients send.
    pub fn next_bounded(&self, cassette: &CassetteName, key: &Key, limit: usize) -> u32 {
        {
            let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            let known = map.get(cassette).is_some_and(|m| m.contains_key(key));
            let total: usize = map.values().map(HashMap::len).sum();
            if !known && total >= limit {
                return 0;
            }
        }
        self.next(cassette, key)
    }

    /// The counter of (cassette, key), created at 0.
    pub fn counter(&self, cassette: &CassetteName, key: &Key) -> Counter {
        // A poisoned lock only means another request panicked mid-insert; the map is still a
        // valid map of counters.
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // The name is cloned once per cassette, not once per distinct request.
        let per_cassette = match map.get_mut(cassette) {
            Some(m) => m,
            None => map.entry(cassette.clone()).or_default(),
        };
        Arc::clone(per_cassette.entry(*key).or_default())
    }
}

/// The counter's value before counting this request (saturating at `u32::MAX`).
pub fn take(counter: &AtomicU32) -> u32 {
    match counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1)) {
        Ok(n) | Err(n) => n,
    }
}

/// Replay's choice for occurrence `n`: the recording at position n; past the last, the last
/// again (`repeat`); otherwise a miss, reported as how many recordings the key has.
pub fn replay_choice<T>(
    n: u32,
    on_exhausted: OnExhausted,
    at_n: Option<T>,
    last: Option<T>,
    position: impl Fn(&T) -> u32,
) -> Result<T, u32> {
    match (at_n, n, on_exhausted, last) {
        (Some(r), _, _, _) => Ok(r),
        (None, 1.., OnExhausted::Repeat, Some(last)) => Ok(last),
        (None, _, _, last) => Err(last.map_or(0, |l| position(&l) + 1)),
    }
}
