//! Stats: what a run did, counted as it happens and summarized at shutdown.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters shared by every connection. Relaxed atomics: they are tallies, not synchronization.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub replayed: AtomicU64,
    /// Replays answered from the memo, without running the pure stages (see `memo`).
    pub remembered: AtomicU64,
    pub recorded: AtomicU64,
    pub forwarded: AtomicU64,
    pub misses: AtomicU64,
    pub upstream_errors: AtomicU64,
    pub rejected: AtomicU64,
    pub deviation_errors: AtomicU64,
    pub deviation_warnings: AtomicU64,
    /// Forward mode: connections and plain-HTTP requests passed on untouched.
    pub tunnelled: AtomicU64,
    /// Forward mode: CONNECT and plain-HTTP requests refused (not intercepted, not allowed).
    pub refused: AtomicU64,
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub requests: u64,
    pub replayed: u64,
    pub remembered: u64,
    pub recorded: u64,
    pub forwarded: u64,
    pub misses: u64,
    pub upstream_errors: u64,
    pub rejected: u64,
    pub deviation_errors: u64,
    pub deviation_warnings: u64,
    pub tunnelled: u64,
    pub refused: u64,
}

impl Stats {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn summary(&self) -> Summary {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Summary {
            requests: g(&self.requests),
            replayed: g(&self.replayed),
            remembered: g(&self.remembered),
            recorded: g(&self.recorded),
            forwarded: g(&self.forwarded),
            misses: g(&self.misses),
            upstream_errors: g(&self.upstream_errors),
            rejected: g(&self.rejected),
            deviation_errors: g(&self.deviation_errors),
            deviation_warnings: g(&self.deviation_warnings),
            tunnelled: g(&self.tunnelled),
            refused: g(&self.refused),
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} requests: {} replayed, {} recorded, {} forwarded, {} missed, {} upstream errors, {} rejected; \
             deviations: {} errors, {} warnings",
            self.requests,
            self.replayed,
            self.recorded,
            self.forwarded,
            self.misses,
            self.upstream_errors,
            self.rejected,
            self.deviation_errors,
            self.deviation_warnings
        )?;
        // Replay's fast path, when it was taken: how many calls skipped the analysis.
        if self.remembered > 0 {
            write!(f, "; {} replays answered from the memo", self.remembered)?;
        }
        // Forward-mode traffic that never entered the pipeline, when there was any.
        if self.tunnelled + self.refused > 0 {
            write!(
                f,
                "; forward proxy: {} tunnelled, {} refused",
                self.tunnelled, self.refused
            )?;
        }
        Ok(())
    }
}
