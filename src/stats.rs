//! Stats: live tallies of a running proxy that the report does not hold — replay's memo hits
//! and forward mode's tunnels and refusals — for the end-of-run summary. Everything else in
//! the summary is rendered from the report (`report::Totals`), which counts the outcomes of
//! the same exchanges, so the two cannot disagree.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Tallies shared by every connection.
#[derive(Debug, Default)]
pub struct Stats {
    /// Replay: requests whose analysis came from the memo (see `memo`).
    pub remembered: Tally,
    /// Forward mode: connections and plain-HTTP requests passed on untouched.
    pub tunnelled: Tally,
    /// Forward mode: CONNECT and plain-HTTP requests refused (not intercepted, not allowed).
    pub refused: Tally,
}

impl Stats {
    /// Replay's memo at work, when it was.
    pub fn memo_summary(&self) -> Option<String> {
        let n = self.remembered.get();
        (n > 0).then(|| format!("{n} requests answered from the memo (analysis skipped)"))
    }

    /// The forward-proxy part of the summary, when there was any such traffic.
    pub fn forward_summary(&self) -> Option<String> {
        let (t, r) = (self.tunnelled.get(), self.refused.get());
        (t + r > 0).then(|| format!("forward proxy: {t} tunnelled, {r} refused"))
    }
}

/// Slots of a [`Tally`]: more than the worker threads of a usual run.
const SLOTS: usize = 8;

/// A count bumped from every worker thread, in a slot per thread (a cache line each), so that
/// two threads bumping it on every request do not pass one cache line back and forth.
/// Relaxed atomics: a tally, not synchronization.
#[derive(Debug, Default)]
pub struct Tally {
    slots: [Slot; SLOTS],
}

#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot(AtomicU64);

impl Tally {
    pub fn bump(&self) {
        self.slots[slot()].0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.slots.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// This thread's slot: threads take slots in turn as they first bump a tally.
fn slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SLOTS;
    }
    SLOT.with(|s| *s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_sums_every_thread() {
        let t = std::sync::Arc::new(Tally::default());
        let threads: Vec<_> = (0..12)
            .map(|_| {
                let t = std::sync::Arc::clone(&t);
                std::thread::spawn(move || (0..1000).for_each(|_| t.bump()))
            })
            .collect();
        for th in threads {
            assert!(th.join().is_ok());
        }
        assert_eq!(t.get(), 12_000);
    }
}
