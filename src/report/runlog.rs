//! Run log: the run's calls, folded from exchanges as they happen (or from a journal read
//! back by `verify`), and turned into a [`Report`] at the end.
//!
//! Every request of a run is added here, so this is on the hot path and its memory grows with
//! the distinct calls of a run (a replay of a 100,000-call cassette makes 100,000 of them):
//! calls live in 16 shards by key, each behind its own lock, so two workers rarely wait on
//! each other, and a call's state is 64 bytes beside its key: its names interned as one
//! pointer, its outcome counts inline while it has one outcome, played positions a bit set,
//! its deviation list interned (most calls share one), and what few calls have (a message,
//! positions past 63, outcomes of older versions) out of line. Strings are built only for
//! the report.

use super::{Call, Report, Totals, Unplayed};
use crate::cassette::{Cassette, StoreError};
use crate::check::{Deviation, Severity};
use crate::journal::Entry;
use crate::key::Key;
use crate::outcome::Outcome;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

const SHARDS: usize = 16;

/// Folds exchanges into calls.
#[derive(Debug, Default)]
pub struct RunLog {
    shards: [Mutex<Shard>; SHARDS],
    /// Recordings per cassette, when known (replay): each shard's table for a cassette is
    /// made that large at once, instead of doubling as calls arrive (a table that doubles
    /// holds its old and its new buckets at the same moment: at 100,000 recordings, megabytes
    /// of peak memory for nothing).
    sizes: std::collections::BTreeMap<String, usize>,
}

/// Most distinct calls that were not answered (misses, refusals) a shard lists one by one;
/// past it they are folded into one call per cassette ([`FOLDED`]), counted but not listed,
/// so a client that sends 200,000 distinct misses cannot grow the run's memory without bound.
const MAX_UNANSWERED_PER_SHARD: usize = 10_000 / SHARDS;

/// The key of a cassette's folded call (no SHA-256 of a request is all ones in practice).
const FOLDED: [u8; 32] = [0xff; 32];

#[derive(Debug, Default)]
struct Shard {
    /// Distinct calls listed so far that were first seen unanswered.
    unanswered: usize,
    names: HashSet<Arc<CallName>>,
    deviation_lists: HashSet<Arc<[Deviation]>>,
    cassettes: HashMap<Arc<str>, CassetteCalls>,
}

/// What a call is called in the report.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CallName {
    action: Box<str>,
    method: Box<str>,
    path: Box<str>,
}

#[derive(Debug, Default)]
struct CassetteCalls {
    /// Keyed calls (the key determines the action and path).
    keyed: HashMap<[u8; 32], CallState, crate::key::PrehashedState>,
    /// Requests turned away before keying, grouped by action, method and path.
    unkeyed: HashMap<Arc<CallName>, CallState>,
}

/// The outcomes graph-vcr writes; anything else (an older journal) is counted in `other`.
const OUTCOMES: [Outcome; Outcome::ALL.len()] = Outcome::ALL;

#[derive(Debug)]
struct CallState {
    name: Arc<CallName>,
    counts: Counts,
    /// Recording positions under 64 that were played, a bit each.
    played_low: u64,
    /// graph-vcr's time over the call's requests, added up.
    micros: u64,
    deviations: Option<Arc<[Deviation]>>,
    /// What few calls have, out of line to keep the common call small.
    extra: Option<Box<Extra>>,
}

/// The rarer parts of a call's state.
#[derive(Debug, Default)]
struct Extra {
    /// The call's latest request was throttled (`--throttle`): unless a later one is
    /// answered, the client gave up after a 429.
    last_throttled: bool,
    /// Outcomes this version does not know (an older journal), by name.
    other: Vec<(Box<str>, u64)>,
    /// Positions of 64 and above that were played.
    played_high: Vec<u32>,
    deviations_omitted: usize,
    message: Option<Box<str>>,
}

impl CallState {
    fn new(name: Arc<CallName>) -> Self {
        Self {
            name,
            counts: Counts::default(),
            played_low: 0,
            micros: 0,
            deviations: None,
            extra: None,
        }
    }

    fn extra(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }

    fn requests(&self) -> u64 {
        let other = self.extra.iter().flat_map(|x| &x.other).map(|(_, n)| n);
        self.counts.total() + other.sum::<u64>()
    }

    fn play(&mut self, pos: u32) {
        if pos < 64 {
            self.played_low |= 1 << pos;
        } else if !self.played(pos) {
            self.extra().played_high.push(pos);
        }
    }

    fn played(&self, pos: u32) -> bool {
        if pos < 64 {
            self.played_low & (1 << pos) != 0
        } else {
            self.extra
                .as_ref()
                .is_some_and(|x| x.played_high.contains(&pos))
        }
    }
}

/// Requests per outcome: inline while the call has had one outcome (nearly every call), an
/// array once it has had two.
#[derive(Debug, Default)]
struct Counts {
    only: u8,
    n: u32,
    all: Option<Box<[u64; OUTCOMES.len()]>>,
}

impl Counts {
    fn add(&mut self, i: usize) {
        match &mut self.all {
            Some(all) => all[i] += 1,
            None if (self.n == 0 || usize::from(self.only) == i) && self.n < u32::MAX => {
                self.only = i as u8;
                self.n += 1;
            }
            None => {
                let mut all = Box::new([0; OUTCOMES.len()]);
                all[usize::from(self.only)] = u64::from(self.n);
                all[i] += 1;
                self.all = Some(all);
            }
        }
    }

    fn get(&self, i: usize) -> u64 {
        match &self.all {
            Some(all) => all[i],
            None if usize::from(self.only) == i => u64::from(self.n),
            None => 0,
        }
    }

    fn total(&self) -> u64 {
        match &self.all {
            Some(all) => all.iter().sum(),
            None => u64::from(self.n),
        }
    }
}

fn intern_name(names: &mut HashSet<Arc<CallName>>, e: &Event<'_>) -> Arc<CallName> {
    let name = CallName {
        action: e.action.into(),
        method: e.method.into(),
        path: e.path.into(),
    };
    match names.get(&name) {
        Some(a) => Arc::clone(a),
        None => {
            let a = Arc::new(name);
            names.insert(Arc::clone(&a));
            a
        }
    }
}

fn intern_list(lists: &mut HashSet<Arc<[Deviation]>>, list: Vec<Deviation>) -> Arc<[Deviation]> {
    match lists.get(list.as_slice()) {
        Some(a) => Arc::clone(a),
        None => {
            let a: Arc<[Deviation]> = Arc::from(list);
            lists.insert(Arc::clone(&a));
            a
        }
    }
}

/// What one request did, as the run log needs it: borrowed, so a request pays for no copies
/// (the journal's [`Entry`] is built only when there is a journal).
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    pub cassette: &'a str,
    pub action: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub key: Option<Key>,
    /// What happened; `Err` names an outcome this version does not know (an older journal).
    pub outcome: Result<Outcome, &'a str>,
    pub position: Option<u32>,
    pub message: Option<&'a str>,
    pub deviations: &'a [Deviation],
    pub deviations_omitted: usize,
    /// How long graph-vcr took over the request.
    pub elapsed_us: u64,
}

impl<'a> Event<'a> {
    /// The event a journal line records.
    pub fn of(e: &'a Entry) -> Self {
        Self {
            cassette: &e.cassette,
            action: &e.action,
            method: &e.method,
            path: &e.path,
            key: e.key.as_deref().and_then(Key::from_hex),
            outcome: Outcome::parse(&e.outcome).ok_or(e.outcome.as_str()),
            position: e.position,
            message: e.message.as_deref(),
            deviations: &e.deviations,
            deviations_omitted: e.deviations_omitted,
            elapsed_us: (e.elapsed_ms * 1000.0) as u64,
        }
    }
}

impl RunLog {
    /// A run log for the cassettes of `sizes` (recordings per cassette).
    pub fn sized(sizes: std::collections::BTreeMap<String, usize>) -> Self {
        Self {
            sizes,
            ..Self::default()
        }
    }

    fn shard(&self, i: usize) -> MutexGuard<'_, Shard> {
        self.shards[i % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub fn add(&self, e: &Event<'_>) {
        // By key, so one call always lands in one shard; requests turned away before keying
        // are rare and share the first.
        let mut guard = self.shard(e.key.map_or(0, |k| usize::from(k.0[0])));
        let s = &mut *guard;
        let calls = match s.cassettes.get_mut(e.cassette) {
            Some(c) => c,
            None => {
                // Keys spread evenly over the shards; a little room for calls not recorded.
                let per_shard = self
                    .sizes
                    .get(e.cassette)
                    .map_or(0, |n| n / SHARDS + n / SHARDS / 16);
                s.cassettes
                    .entry(Arc::from(e.cassette))
                    .or_insert_with(|| CassetteCalls {
                        keyed: HashMap::with_capacity_and_hasher(per_shard, Default::default()),
                        unkeyed: HashMap::new(),
                    })
            }
        };
        let names = &mut s.names;
        let answered = e.outcome.is_err() || e.outcome.is_ok_and(Outcome::answered);
        let known = match e.key {
            Some(key) => calls.keyed.contains_key(&key.0),
            None => calls
                .unkeyed
                .keys()
                .any(|n| *n.action == *e.action && *n.method == *e.method && *n.path == *e.path),
        };
        let fold = !known && !answered && s.unanswered >= MAX_UNANSWERED_PER_SHARD;
        if !known && !answered && !fold {
            s.unanswered += 1;
        }
        let call = match e.key {
            _ if fold => calls.keyed.entry(FOLDED).or_insert_with(|| {
                let folded = Event {
                    action: "(more distinct calls that were not answered, counted together)",
                    method: "*",
                    path: "*",
                    ..*e
                };
                CallState::new(intern_name(names, &folded))
            }),
            Some(key) => calls
                .keyed
                .entry(key.0)
                .or_insert_with(|| CallState::new(intern_name(names, e))),
            None => {
                let name = intern_name(names, e);
                calls
                    .unkeyed
                    .entry(Arc::clone(&name))
                    .or_insert_with(|| CallState::new(name))
            }
        };
        match e.outcome {
            Ok(o @ (Outcome::Throttled | Outcome::Fault)) => {
                call.counts.add(o.index());
                call.extra().last_throttled = true;
            }
            Ok(o) => {
                call.counts.add(o.index());
                if let Some(x) = &mut call.extra {
                    x.last_throttled = false;
                }
            }
            Err(name) => {
                let other = &mut call.extra().other;
                match other.iter_mut().find(|(o, _)| **o == *name) {
                    Some((_, n)) => *n += 1,
                    None => other.push((name.into(), 1)),
                }
            }
        }
        if let (Some(pos), Some(_)) = (e.position, e.key) {
            call.play(pos);
        }
        call.micros = call.micros.saturating_add(e.elapsed_us);
        if e.deviations_omitted > 0 {
            let x = call.extra();
            x.deviations_omitted = x.deviations_omitted.max(e.deviations_omitted);
        }
        // The usual case, a repeat of the call's deviations, costs one comparison.
        if !e.deviations.is_empty() && call.deviations.as_deref() != Some(e.deviations) {
            let known = call.deviations.as_deref().unwrap_or(&[]);
            let new: Vec<&Deviation> = e
                .deviations
                .iter()
                .filter(|d| !known.iter().any(|k| k.code == d.code && k.at == d.at))
                .collect();
            if !new.is_empty() {
                let mut merged: Vec<Deviation> = known.to_vec();
                merged.extend(new.into_iter().cloned());
                merged.sort_by_key(|d| std::cmp::Reverse(d.severity));
                call.deviations = Some(intern_list(&mut s.deviation_lists, merged));
            }
        }
        if let Some(message) = e.message
            && call.extra.as_ref().is_none_or(|x| x.message.is_none())
        {
            call.extra().message = Some(message.into());
        }
    }

    /// Cassettes the run touched.
    pub fn cassettes(&self) -> Vec<String> {
        let mut set = BTreeSet::new();
        for i in 0..SHARDS {
            set.extend(self.shard(i).cassettes.keys().map(|c| c.to_string()));
        }
        set.into_iter().collect()
    }

    /// The report, with the recordings of `cassettes` that were never played.
    /// `started` is when the run started (RFC 3339); `expected` the recordings per cassette
    /// the directory's manifest promises (fewer present is damage).
    pub fn report(
        &self,
        mode: &str,
        started: &str,
        cassettes: &[Cassette],
        expected: &std::collections::BTreeMap<String, usize>,
    ) -> Result<Report, StoreError> {
        let shards: Vec<MutexGuard<'_, Shard>> = (0..SHARDS).map(|i| self.shard(i)).collect();
        let played = |cassette: &str, key: &[u8; 32], position: u32| {
            let shard = &shards[usize::from(key[0]) % SHARDS];
            shard
                .cassettes
                .get(cassette)
                .and_then(|c| c.keyed.get(key))
                .is_some_and(|c| c.played(position))
        };
        let mut unplayed = Vec::new();
        let mut damaged = Vec::new();
        for cassette in cassettes {
            let name = cassette.name().as_str();
            let mut present = 0;
            for i in cassette.iter() {
                present += 1;
                // A record that does not decode is reported, not allowed to hide the rest.
                let i = match i {
                    Err(e @ StoreError::Corrupt { .. }) => {
                        damaged.push(e.to_string());
                        continue;
                    }
                    other => other?,
                };
                let key = Key::from_hex(&i.key).map(|k| k.0);
                if !key.is_some_and(|k| played(name, &k, i.position)) {
                    unplayed.push(Unplayed {
                        cassette: name.to_string(),
                        action: i.action,
                        method: i.request.method,
                        path: i.request.path,
                        key: i.key,
                        position: i.position,
                        recorded_at: i.recorded_at,
                    });
                }
            }
            damaged.extend(crate::cassette::manifest::shortfall(
                expected, name, present,
            ));
        }
        let mut calls: Vec<Call> = shards
            .iter()
            .flat_map(|s| s.cassettes.iter())
            .flat_map(|(name, cc)| {
                cc.keyed
                    .iter()
                    .map(|(k, c)| call(name, Some(k), c))
                    .chain(cc.unkeyed.values().map(|c| call(name, None, c)))
            })
            .collect();
        // Sorted by cassette, action and key (or path), whatever order requests came in.
        calls.sort_by(|a, b| {
            (&a.cassette, &a.action, &a.key, &a.method, &a.path).cmp(&(
                &b.cassette,
                &b.action,
                &b.key,
                &b.method,
                &b.path,
            ))
        });
        Ok(Report {
            format: "graph-vcr-report",
            version: 1,
            mode: mode.to_string(),
            started: started.to_string(),
            totals: totals(&calls, unplayed.len(), damaged.len()),
            needs: super::needs::of(&calls),
            calls,
            unplayed,
            damaged,
        })
    }
}

/// One call of the report.
fn call(cassette: &str, key: Option<&[u8; 32]>, c: &CallState) -> Call {
    let mut call = call_of(cassette, key, c);
    abandoned(
        &mut call,
        c.extra.as_ref().is_some_and(|x| x.last_throttled),
    );
    call
}

/// A call whose latest request `--throttle` answered 429: the client gave up after the
/// throttling (or never retried before the run ended), which a run must not pass in silence.
fn abandoned(call: &mut Call, last_throttled: bool) {
    let throttled: u64 = [Outcome::Throttled, Outcome::Fault]
        .iter()
        .filter_map(|o| call.outcomes.get(o.as_str()))
        .sum();
    if last_throttled {
        call.deviations.insert(
            0,
            Deviation::new(
                crate::check::Code::AbandonedAfterThrottle,
                "Retry-After",
                format!(
                    "its last request was throttled ({throttled} in all) and it was never retried to an answer before the run ended: the client gave up after a 429"
                ),
            ),
        );
    }
}

fn call_of(cassette: &str, key: Option<&[u8; 32]>, c: &CallState) -> Call {
    Call {
        cassette: cassette.to_string(),
        action: c.name.action.to_string(),
        method: c.name.method.to_string(),
        path: c.name.path.to_string(),
        key: key.filter(|k| **k != FOLDED).map(|k| Key(*k).to_hex()),
        requests: c.requests(),
        outcomes: OUTCOMES
            .iter()
            .enumerate()
            .map(|(i, o)| (o, c.counts.get(i)))
            .filter(|(_, n)| *n > 0)
            .map(|(o, n)| (o.as_str().to_string(), n))
            .chain(
                c.extra
                    .iter()
                    .flat_map(|x| &x.other)
                    .map(|(o, n)| (o.to_string(), *n)),
            )
            .collect(),
        deviations: c
            .deviations
            .as_deref()
            .map(<[_]>::to_vec)
            .unwrap_or_default(),
        deviations_omitted: c.extra.as_ref().map_or(0, |x| x.deviations_omitted),
        message: c
            .extra
            .as_ref()
            .and_then(|x| x.message.as_deref())
            .map(str::to_string),
        seconds: c.micros as f64 / 1e6,
    }
}

fn totals(calls: &[Call], unplayed: usize, damaged: usize) -> Totals {
    let count = |outcome: &str| {
        calls
            .iter()
            .map(|c| c.outcomes.get(outcome).copied().unwrap_or(0))
            .sum()
    };
    let devs = |sev: Severity| {
        calls
            .iter()
            .flat_map(|c| &c.deviations)
            .filter(|d| d.severity == sev)
            .count()
    };
    Totals {
        requests: calls.iter().map(|c| c.requests).sum(),
        calls: calls.len(),
        outcomes: OUTCOMES
            .iter()
            .map(|o| (o.as_str().to_string(), count(o.as_str())))
            .collect(),
        replayed: count("replayed"),
        recorded: count("recorded"),
        forwarded: count("forwarded"),
        misses: count("miss"),
        rejected: count("rejected"),
        upstream_errors: count("upstream-error"),
        deviation_errors: devs(Severity::Error),
        deviation_warnings: devs(Severity::Warning),
        unplayed,
        damaged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn played_positions_below_and_above_the_bit_set() {
        let mut c = CallState::new(Arc::new(CallName {
            action: "a".into(),
            method: "POST".into(),
            path: "/p".into(),
        }));
        for pos in [0, 5, 63, 64, 1000] {
            assert!(!c.played(pos));
            c.play(pos);
            assert!(c.played(pos));
        }
        c.play(1000);
        assert_eq!(
            c.extra.as_ref().map(|x| x.played_high.clone()),
            Some(vec![64, 1000])
        );
        assert!(!c.played(6) && !c.played(65));
    }

    #[test]
    fn distinct_unanswered_calls_past_the_cap_are_folded_together() {
        let log = RunLog::default();
        let shard_keys = MAX_UNANSWERED_PER_SHARD + 50;
        for i in 0..shard_keys {
            let mut k = [0u8; 32];
            k[1..9].copy_from_slice(&(i as u64).to_le_bytes());
            log.add(&Event {
                cassette: "c",
                action: "a",
                method: "POST",
                path: &format!("/p/{i}"),
                key: Some(Key(k)),
                outcome: Ok(Outcome::Miss),
                position: None,
                message: Some("no recording"),
                deviations: &[],
                deviations_omitted: 0,
                elapsed_us: 1,
            });
        }
        let s = log.shard(0);
        let calls = &s.cassettes["c"].keyed;
        assert_eq!(calls.len(), MAX_UNANSWERED_PER_SHARD + 1);
        assert_eq!(calls[&FOLDED].requests(), 50);
        assert!(s.names.len() <= MAX_UNANSWERED_PER_SHARD + 1);
    }

    #[test]
    fn a_call_stays_small() {
        // A replay of 100,000 distinct calls holds 100,000 of these (docs/PERFORMANCE.md).
        assert!(std::mem::size_of::<CallState>() <= 64);
    }

    #[test]
    fn counts_stay_inline_until_a_second_outcome() {
        let mut c = Counts::default();
        c.add(3);
        c.add(3);
        assert!(c.all.is_none());
        assert_eq!((c.get(3), c.get(0), c.total()), (2, 0, 2));
        c.add(0);
        assert_eq!((c.get(3), c.get(0), c.total()), (2, 1, 3));
    }

    #[test]
    fn calls_share_one_deviation_list_and_keep_their_own_counts() {
        let log = RunLog::default();
        let warning = Deviation {
            code: crate::check::Code::ALL[0],
            severity: Severity::Warning,
            at: "/x".into(),
            message: "m".into(),
        };
        // Keys 1 and 2 start with the same byte: one shard, so one interned list.
        let key = |k: u8| {
            let mut b = [0u8; 32];
            b[1] = k;
            Key(b)
        };
        for (k, outcome) in [
            (1u8, "replayed"),
            (2, "replayed"),
            (1, "miss"),
            (1, "legacy"),
        ] {
            log.add(&Event {
                cassette: "c",
                action: "a",
                method: "POST",
                path: "/p",
                key: Some(key(k)),
                outcome: Outcome::parse(outcome).ok_or(outcome),
                position: Some(0),
                message: None,
                deviations: std::slice::from_ref(&warning),
                deviations_omitted: 0,
                elapsed_us: 10,
            });
        }
        let s = log.shard(0);
        assert_eq!(s.deviation_lists.len(), 1);
        assert_eq!(s.names.len(), 1);
        let calls = &s.cassettes["c"].keyed;
        let one = &calls[&key(1).0];
        assert_eq!(one.requests(), 3);
        assert_eq!(one.counts.get(0), 1); // replayed (Outcome::ALL order)
        assert_eq!(one.counts.get(3), 1); // miss
        assert_eq!(one.extra.as_ref().map(|x| x.other.len()), Some(1)); // an older journal's
        let two = &calls[&key(2).0];
        assert!(matches!(
            (&one.deviations, &two.deviations),
            (Some(a), Some(b)) if Arc::ptr_eq(a, b)
        ));
    }
}
