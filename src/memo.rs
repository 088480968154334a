//! Memo: replay's fast path for a call it has answered before.
//!
//! Classify, check (all but the headers), redact and key are pure functions of a request's
//! method, path and query, body and the run's options, and replay's cassette never changes.
//! So replay remembers, per distinct (cassette, method, path and query, body), what those
//! stages found — the action, the key, the method/path/body deviations — and where the call's
//! state is: its occurrence counter and its prepared recordings. A repeated call — the normal
//! case in a test suite — skips parsing, checking, canonicalizing and hashing the body, and
//! the occurrence and recording maps; only the header checks, which are cheap, run again.
//! Only calls that replayed are remembered, so a remembered key always has recordings.
//!
//! Requests are identified by a 128-bit keyed hash (two SipHash-1-3 instances with random keys,
//! fixed per process), so clients cannot aim collisions at it. The memo is bounded by entry
//! count and stops growing at the limit rather than evicting: large cassettes take the full
//! path for calls past the limit, as they did before it existed.

use crate::cassette::CassetteName;
use crate::check::Findings;
use crate::key::Key;
use crate::mode::Counter;
use crate::respond::Recordings;
use http::Method;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Most distinct calls remembered (about 150 bytes each, plus their deviations).
pub const LIMIT: usize = 65_536;

/// What the pure stages found for one distinct request.
#[derive(Debug)]
pub struct Analysis {
    pub cassette: CassetteName,
    pub action: Arc<str>,
    pub key: Key,
    /// Shared: calls of one shape have the same findings (usually none, or one warning).
    pub findings: Arc<Findings>,
    /// The (cassette, key)'s occurrence counter, the same one `mode::Occurrences` hands out.
    pub counter: Counter,
    pub recordings: Recordings,
    /// Replays of this request not yet in the run log (see [`Memo::drain_tallies`]), and the
    /// positions they played, a bit each (positions under 64 only).
    pub replays: AtomicU64,
    pub played: AtomicU64,
}

impl Analysis {
    /// Counts a plain replay (no header deviations, position under 64) here instead of in
    /// the run log, whose lock every request would otherwise take.
    pub fn tally(&self, position: u32) {
        self.replays.fetch_add(1, Ordering::Relaxed);
        self.played.fetch_or(1 << position, Ordering::Relaxed);
    }
}

/// What the slow path learned about a call that replayed, for [`Memo::insert`].
pub struct Learned<'a> {
    pub cassette: &'a CassetteName,
    pub action: &'a str,
    pub key: Key,
    pub findings: Findings,
    pub counter: Counter,
    pub recordings: Recordings,
}

/// The remembered analyses of a replay run.
#[derive(Debug)]
pub struct Memo {
    hashers: (std::hash::RandomState, std::hash::RandomState),
    map: Mutex<Remembered>,
}

#[derive(Debug, Default)]
struct Remembered {
    /// Keyed by the digest, which is already a keyed hash: no second hashing.
    analyses: HashMap<u128, Arc<Analysis>, BuildHasherDefault<Prehashed>>,
    actions: HashSet<Arc<str>>,
    findings: HashSet<Arc<Findings>>,
}

impl Default for Memo {
    fn default() -> Self {
        Self {
            hashers: (std::hash::RandomState::new(), std::hash::RandomState::new()),
            map: Mutex::new(Remembered::default()),
        }
    }
}

/// A hasher for keys that are already uniformly distributed keyed hashes.
#[derive(Debug, Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u128 digests are hashed with this; fold anything else in anyway.
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 ^= n as u64;
    }
}

/// The identity of a request's pure inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest(u128);

impl Memo {
    pub fn digest(
        &self,
        cassette: &str,
        method: &Method,
        path_and_query: &str,
        body: &[u8],
    ) -> Digest {
        let half = |state: &std::hash::RandomState| {
            let mut h = state.build_hasher();
            cassette.hash(&mut h);
            method.as_str().hash(&mut h);
            path_and_query.hash(&mut h);
            body.hash(&mut h);
            h.finish()
        };
        Digest(u128::from(half(&self.hashers.0)) << 64 | u128::from(half(&self.hashers.1)))
    }

    pub fn get(&self, digest: Digest) -> Option<Arc<Analysis>> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.analyses.get(&digest.0).cloned()
    }

    /// Remembers what the stages found for a call, unless the memo is full.
    pub fn insert(&self, digest: Digest, learned: Learned<'_>) {
        let mut guard = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let m = &mut *guard;
        if m.analyses.len() >= LIMIT || m.analyses.contains_key(&digest.0) {
            return;
        }
        let action = match m.actions.get(learned.action) {
            Some(a) => Arc::clone(a),
            None => {
                let a: Arc<str> = Arc::from(learned.action);
                m.actions.insert(Arc::clone(&a));
                a
            }
        };
        let findings = match m.findings.get(&learned.findings) {
            Some(f) => Arc::clone(f),
            None => {
                let f = Arc::new(learned.findings);
                m.findings.insert(Arc::clone(&f));
                f
            }
        };
        m.analyses.insert(
            digest.0,
            Arc::new(Analysis {
                cassette: learned.cassette.clone(),
                action,
                key: learned.key,
                findings,
                counter: learned.counter,
                recordings: learned.recordings,
                replays: AtomicU64::new(0),
                played: AtomicU64::new(0),
            }),
        );
    }

    /// Hands every tallied replay to `fold` (the analysis, the count, the played positions)
    /// and resets the tallies, so a second drain adds nothing twice.
    pub fn drain_tallies(&self, mut fold: impl FnMut(&Analysis, u64, u64)) {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        for a in map.analyses.values() {
            let count = a.replays.swap(0, Ordering::Relaxed);
            let played = a.played.swap(0, Ordering::Relaxed);
            if count > 0 {
                fold(a, count, played);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_input_changes_the_digest() {
        let memo = Memo::default();
        let d = memo.digest("c", &Method::POST, "/v1.0/a/assign", b"{}");
        assert_eq!(d, memo.digest("c", &Method::POST, "/v1.0/a/assign", b"{}"));
        assert_ne!(d, memo.digest("d", &Method::POST, "/v1.0/a/assign", b"{}"));
        assert_ne!(d, memo.digest("c", &Method::PUT, "/v1.0/a/assign", b"{}"));
        assert_ne!(d, memo.digest("c", &Method::POST, "/v1.0/b/assign", b"{}"));
        assert_ne!(d, memo.digest("c", &Method::POST, "/v1.0/a/assign", b"{ }"));
        // Length-prefixed hashing: moving bytes between path and body is a different request.
        assert_ne!(
            memo.digest("c", &Method::POST, "/v1.0/a", b"x{}"),
            memo.digest("c", &Method::POST, "/v1.0/ax", b"{}")
        );
    }
}
