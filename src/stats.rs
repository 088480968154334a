//! Stats: live counters of a running proxy, one per outcome (`outcome::Outcome`) plus what
//! never reaches the pipeline (forward mode's tunnels and refusals). The end-of-run summary
//! is rendered from the report (`report::Totals`), which counts the same outcomes from the
//! same exchanges, so the two cannot disagree.

use crate::outcome::Outcome;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters shared by every connection. Relaxed atomics: they are tallies, not synchronization.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    outcomes: [AtomicU64; Outcome::ALL.len()],
    /// Replay: requests whose analysis came from the memo (see `memo`).
    pub remembered: AtomicU64,
    /// Forward mode: connections and plain-HTTP requests passed on untouched.
    pub tunnelled: AtomicU64,
    /// Forward mode: CONNECT and plain-HTTP requests refused (not intercepted, not allowed).
    pub refused: AtomicU64,
}

impl Stats {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counter of one outcome.
    pub fn outcome(&self, outcome: Outcome) -> &AtomicU64 {
        &self.outcomes[outcome.index()]
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Replay's memo at work, when it was.
    pub fn memo_summary(&self) -> Option<String> {
        let n = Self::get(&self.remembered);
        (n > 0).then(|| format!("{n} requests answered from the memo (analysis skipped)"))
    }

    /// The forward-proxy part of the summary, when there was any such traffic.
    pub fn forward_summary(&self) -> Option<String> {
        let (t, r) = (Self::get(&self.tunnelled), Self::get(&self.refused));
        (t + r > 0).then(|| format!("forward proxy: {t} tunnelled, {r} refused"))
    }
}
