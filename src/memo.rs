//! Memo: replay's fast path for a call it has answered before.
//!
//! Redact, classify, check (all but the headers) and key (`analyze`) are pure functions of a request's
//! method, path and query, body and the run's options, and replay's cassette never changes.
//! So replay remembers, per distinct (cassette, method, path and query, body), what those
//! stages found — the method/path/body deviations — and the call it replays (replay's index
//! entry: action, key, occurrence counter, prepared recordings). A repeated call — the normal case in
//! a test suite — skips parsing, checking, canonicalizing and hashing the body, and the index's
//! maps; only the header checks, which are cheap, run again.
//! Only calls that replayed are remembered, so a remembered key always has recordings.
//!
//! The index pre-fills the memo from every stored request, so a client that sends what it
//! recorded skips the pure stages from its first call on (see `index`).
//!
//! Requests are identified by a 128-bit keyed hash (SipHash-1-3 with 128-bit output, from the
//! `siphasher` crate, keys random per process, one pass over the request), so clients cannot
//! aim collisions at it. Entries learned from requests are bounded by count and stop growing
//! at the limit rather than evicting (calls past it take the full path); entries pre-filled
//! from the cassette are bounded by the cassette.

use crate::check::Findings;
use http::Method;
use siphasher::sip128::{Hasher128, SipHasher13};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, OnceLock, RwLock};

/// Most distinct calls remembered from requests (about 100 bytes each, plus their
/// deviations). Calls pre-filled from a cassette's stored requests do not count: they are
/// bounded by the cassette, not by what clients send.
pub const LIMIT: usize = 65_536;

/// What `analyze` found for one distinct request, and the call it replays: replay's index
/// entry, whose action and key are the analysis's (the memo is generic over it so that it
/// depends on no stage that uses it). Small: the memo holds one per stored request.
#[derive(Debug, Clone)]
pub struct Analysis<C> {
    /// Shared: calls of one shape have the same findings (usually none, or one warning).
    pub findings: Arc<Findings>,
    pub call: C,
}

/// The remembered analyses of a replay run.
#[derive(Debug)]
pub struct Memo<C> {
    /// The digest's SipHash keys, random per process.
    keys: (u64, u64),
    /// What the index pre-filled, moved here once its scan ends ([`Memo::freeze`]): read with
    /// no lock and no reference count touched, since under load the lock's and the entries'
    /// shared counters bounced between the worker threads' caches on every request.
    frozen: OnceLock<Frozen<C>>,
    /// Filled by the index until it freezes, then by requests (learned calls).
    map: RwLock<Remembered<C>>,
}

/// A remembered analysis: borrowed from the frozen map, or copied out of the locked one.
#[derive(Debug)]
pub enum Recalled<'a, C> {
    Frozen(&'a Analysis<C>),
    Learned(Analysis<C>),
}

impl<C> std::ops::Deref for Recalled<'_, C> {
    type Target = Analysis<C>;
    fn deref(&self) -> &Analysis<C> {
        match self {
            Recalled::Frozen(a) => a,
            Recalled::Learned(a) => a,
        }
    }
}

#[derive(Debug)]
struct Remembered<C> {
    /// Keyed by the digest, which is already a keyed hash: no second hashing.
    analyses: HashMap<u128, Analysis<C>, crate::key::PrehashedState>,
    /// How many of them were learned from requests (see [`LIMIT`]).
    learned: usize,
    findings: HashSet<Arc<Findings>>,
}

impl<C> Default for Remembered<C> {
    fn default() -> Self {
        Self {
            analyses: HashMap::default(),
            learned: 0,
            findings: HashSet::new(),
        }
    }
}

impl<C> Default for Memo<C> {
    fn default() -> Self {
        Self {
            keys: (random_u64(), random_u64()),
            frozen: OnceLock::new(),
            map: RwLock::new(Remembered::default()),
        }
    }
}

/// The identity of a request's pure inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest(u128);

impl<C: Clone> Memo<C> {
    pub fn digest(
        &self,
        cassette: &str,
        method: &Method,
        path_and_query: &str,
        body: &[u8],
    ) -> Digest {
        let mut h = SipHasher13::new_with_keys(self.keys.0, self.keys.1);
        cassette.hash(&mut h);
        method.as_str().hash(&mut h);
        path_and_query.hash(&mut h);
        body.hash(&mut h);
        Digest(h.finish128().as_u128())
    }

    pub fn get(&self, digest: Digest) -> Option<Recalled<'_, C>> {
        if let Some(found) = self.frozen.get().and_then(|f| f.get(digest.0)) {
            return Some(Recalled::Frozen(found));
        }
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.analyses.get(&digest.0).cloned().map(Recalled::Learned)
    }

    /// Moves what is remembered so far into the lock-free map; later entries (learned from
    /// requests) go on into the locked one. Called once, when the index's scan ends.
    pub fn freeze(&self) {
        let mut guard = self.map.write().unwrap_or_else(|p| p.into_inner());
        if self.frozen.get().is_none() {
            let _ = self
                .frozen
                .set(Frozen::of(std::mem::take(&mut guard.analyses)));
        }
    }

    /// Remembers what the stages found for a call that replayed. A call learned from a
    /// request (`prefill` false) is not remembered once [`LIMIT`] of them are.
    pub fn insert(&self, digest: Digest, findings: Findings, call: C, prefill: bool) {
        let mut guard = self.map.write().unwrap_or_else(|p| p.into_inner());
        let m = &mut *guard;
        let frozen = self.frozen.get().is_some_and(|f| f.get(digest.0).is_some());
        if (!prefill && m.learned >= LIMIT) || frozen || m.analyses.contains_key(&digest.0) {
            return;
        }
        let findings = match m.findings.get(&findings) {
            Some(f) => Arc::clone(f),
            None => {
                let f = Arc::new(findings);
                m.findings.insert(Arc::clone(&f));
                f
            }
        };
        if !prefill {
            m.learned += 1;
        }
        m.analyses.insert(digest.0, Analysis { findings, call });
    }
}

/// The frozen table: each digest with its analysis in one slot of a flat array, found by
/// probing from the digest's low bits (already uniform: the digest is a keyed hash) to the
/// next slots, until the digest or an empty slot.
///
/// Not a `HashMap`, because of what a lookup touches when a test suite cycles through more
/// calls than the caches hold: std's map reads a group of control bytes, then the entry at an
/// address those give, two cache misses one after the other; here the entry is read at once
/// (replay's slot is 48 bytes: the digest, the findings, the call and its answer's buffer).
/// At most 7 slots in 8 are full, so a run of full slots is short and every probe meets an
/// empty one.
#[derive(Debug)]
struct Frozen<C> {
    /// A power of two long, so the probe wraps with a mask.
    slots: Box<[Option<Slot<C>>]>,
}

#[derive(Debug)]
struct Slot<C> {
    digest: u128,
    analysis: Analysis<C>,
}

impl<C> Frozen<C> {
    fn of(analyses: HashMap<u128, Analysis<C>, crate::key::PrehashedState>) -> Self {
        let len = (analyses.len() + analyses.len() / 7 + 1).next_power_of_two();
        let mut slots: Box<[Option<Slot<C>>]> = (0..len).map(|_| None).collect();
        for (digest, analysis) in analyses {
            let mut at = Self::home(digest, len);
            while let Some(Some(_)) = slots.get(at) {
                at = (at + 1) & (len - 1);
            }
            if let Some(slot) = slots.get_mut(at) {
                *slot = Some(Slot { digest, analysis });
            }
        }
        Self { slots }
    }

    fn home(digest: u128, len: usize) -> usize {
        (digest as usize) & (len - 1)
    }

    fn get(&self, digest: u128) -> Option<&Analysis<C>> {
        let len = self.slots.len();
        let mut at = Self::home(digest, len);
        // Ends: `of` left at least one slot empty.
        loop {
            match self.slots.get(at)? {
                Some(slot) if slot.digest == digest => return Some(&slot.analysis),
                Some(_) => at = (at + 1) & (len - 1),
                None => return None,
            }
        }
    }
}

/// A random number, from std's per-process random hashing keys (std has no other source).
fn random_u64() -> u64 {
    std::hash::RandomState::new().build_hasher().finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frozen_entries_are_found_and_later_ones_still_learned() {
        let memo = Memo::<u32>::default();
        let d = |b: &[u8]| memo.digest("c", &Method::POST, "/v1.0/a/assign", b);
        memo.insert(d(b"1"), Findings::default(), 1, true);
        memo.freeze();
        assert!(matches!(memo.get(d(b"1")), Some(Recalled::Frozen(a)) if a.call == 1));
        memo.insert(d(b"2"), Findings::default(), 2, false);
        assert!(matches!(memo.get(d(b"2")), Some(Recalled::Learned(a)) if a.call == 2));
        // Already frozen: not remembered twice.
        memo.insert(d(b"1"), Findings::default(), 3, false);
        assert!(matches!(memo.get(d(b"1")), Some(Recalled::Frozen(a)) if a.call == 1));
        assert!(memo.get(d(b"3")).is_none());
    }

    #[test]
    fn the_frozen_table_finds_every_entry_and_no_other() {
        // Digests chosen to share their low bits, so they collide on one home slot and
        // wrap around the end of the table.
        for n in [0usize, 1, 2, 7, 8, 100, 1000] {
            let digest = |i: usize| ((i as u128) << 64) | 7;
            let map: HashMap<u128, Analysis<usize>, crate::key::PrehashedState> = (0..n)
                .map(|i| {
                    let a = Analysis {
                        findings: Arc::new(Findings::default()),
                        call: i,
                    };
                    (digest(i), a)
                })
                .collect();
            let frozen = Frozen::of(map);
            assert!(frozen.slots.len().is_power_of_two() && frozen.slots.len() > n);
            for i in 0..n {
                assert_eq!(
                    frozen.get(digest(i)).map(|a| a.call),
                    Some(i),
                    "n={n} i={i}"
                );
            }
            assert!(frozen.get(digest(n)).is_none());
            assert!(frozen.get(8).is_none());
        }
    }

    #[test]
    fn an_empty_frozen_slot_costs_no_tag() {
        // The findings' pointer is the niche: a slot is the digest and the analysis, no more.
        assert_eq!(std::mem::size_of::<Option<Slot<Arc<u8>>>>(), 32);
        assert_eq!(
            std::mem::size_of::<Option<Slot<(Arc<u8>, Arc<[u8]>)>>>(),
            48
        );
    }

    #[test]
    fn any_input_changes_the_digest() {
        let memo = Memo::<()>::default();
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
