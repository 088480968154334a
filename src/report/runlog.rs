//! Run log: the run's calls, folded from journal events as they happen (or from a journal
//! read back by `verify`), kept compact because a run can make 100,000 distinct calls, and
//! turned into a [`Report`] at the end.

use super::{Call, Report, Totals, Unplayed};
use crate::cassette::{Cassette, StoreError};
use crate::check::{Deviation, Severity};
use crate::journal::Entry;
use crate::key::Key;
use crate::outcome::Outcome;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// Folds entries into calls. Memory grows with the distinct calls of a run (a replay of a
/// 100,000-call cassette makes 100,000 of them), so per-call state is compact: names and
/// deviation lists are interned (most calls share them), outcomes are counters in a fixed
/// array, played positions a bit set, and strings are built only for the report.
#[derive(Debug, Default)]
pub struct RunLog(Mutex<LogState>);

#[derive(Debug, Default)]
struct LogState {
    strings: HashSet<Arc<str>>,
    deviation_lists: HashSet<Arc<[Deviation]>>,
    cassettes: HashMap<Arc<str>, CassetteCalls>,
}

#[derive(Debug, Default)]
struct CassetteCalls {
    /// Keyed calls (the key determines the action and path).
    keyed: HashMap<[u8; 32], CallState>,
    /// Requests turned away before keying, grouped by action, method and path.
    unkeyed: HashMap<(Arc<str>, Arc<str>), CallState>,
}

/// The outcomes graph-vcr writes; anything else (an older journal) is counted in `other`.
const OUTCOMES: [Outcome; Outcome::ALL.len()] = Outcome::ALL;

#[derive(Debug)]
struct CallState {
    action: Arc<str>,
    method: Arc<str>,
    path: Arc<str>,
    requests: u64,
    outcomes: [u32; OUTCOMES.len()],
    other: Vec<(Arc<str>, u64)>,
    played: Played,
    deviations: Option<Arc<[Deviation]>>,
    deviations_omitted: usize,
    message: Option<Box<str>>,
}

impl CallState {
    fn new(strings: &mut HashSet<Arc<str>>, action: &str, method: &str, path: &str) -> Self {
        Self {
            action: intern(strings, action),
            method: intern(strings, method),
            path: intern(strings, path),
            requests: 0,
            outcomes: [0; OUTCOMES.len()],
            other: Vec::new(),
            played: Played::default(),
            deviations: None,
            deviations_omitted: 0,
            message: None,
        }
    }
}

/// Recording positions played: a bit per position under 64 (nearly always), a list above.
#[derive(Debug, Default)]
struct Played {
    low: u64,
    high: Vec<u32>,
}

impl Played {
    fn insert(&mut self, pos: u32) {
        if pos < 64 {
            self.low |= 1 << pos;
        } else if !self.high.contains(&pos) {
            self.high.push(pos);
        }
    }

    fn contains(&self, pos: u32) -> bool {
        if pos < 64 {
            self.low & (1 << pos) != 0
        } else {
            self.high.contains(&pos)
        }
    }
}

fn intern(strings: &mut HashSet<Arc<str>>, s: &str) -> Arc<str> {
    match strings.get(s) {
        Some(a) => Arc::clone(a),
        None => {
            let a: Arc<str> = Arc::from(s);
            strings.insert(Arc::clone(&a));
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
    pub outcome: &'a str,
    pub position: Option<u32>,
    pub message: Option<&'a str>,
    pub deviations: &'a [Deviation],
    pub deviations_omitted: usize,
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
            outcome: &e.outcome,
            position: e.position,
            message: e.message.as_deref(),
            deviations: &e.deviations,
            deviations_omitted: e.deviations_omitted,
        }
    }
}

impl RunLog {
    pub fn add(&self, e: &Event<'_>) {
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let s = &mut *guard;
        let calls = match s.cassettes.get_mut(e.cassette) {
            Some(c) => c,
            None => s.cassettes.entry(Arc::from(e.cassette)).or_default(),
        };
        let strings = &mut s.strings;
        let new_state =
            |strings: &mut HashSet<Arc<str>>| CallState::new(strings, e.action, e.method, e.path);
        let call = match e.key {
            Some(key) => calls
                .keyed
                .entry(key.0)
                .or_insert_with(|| new_state(strings)),
            None => {
                let id = (
                    intern(strings, e.action),
                    intern(strings, &format!("{} {}", e.method, e.path)),
                );
                calls
                    .unkeyed
                    .entry(id)
                    .or_insert_with(|| new_state(strings))
            }
        };
        call.requests += 1;
        match OUTCOMES.iter().position(|o| o.as_str() == e.outcome) {
            Some(i) => call.outcomes[i] = call.outcomes[i].saturating_add(1),
            None => match call.other.iter_mut().find(|(o, _)| **o == *e.outcome) {
                Some((_, n)) => *n += 1,
                None => call.other.push((intern(strings, e.outcome), 1)),
            },
        }
        if let (Some(pos), Some(_)) = (e.position, e.key) {
            call.played.insert(pos);
        }
        call.deviations_omitted = call.deviations_omitted.max(e.deviations_omitted);
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
        if call.message.is_none() {
            call.message = e.message.map(Box::from);
        }
    }

    /// Cassettes the run touched.
    pub fn cassettes(&self) -> Vec<String> {
        let s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let set: BTreeSet<String> = s.cassettes.keys().map(|c| c.to_string()).collect();
        set.into_iter().collect()
    }

    /// The report, with the recordings of `cassettes` that were never played.
    pub fn report(&self, mode: &str, cassettes: &[Cassette]) -> Result<Report, StoreError> {
        let s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut unplayed = Vec::new();
        let mut damaged = Vec::new();
        for cassette in cassettes {
            let calls = s.cassettes.get(cassette.name().as_str());
            for i in cassette.iter() {
                // A record that does not decode is reported, not allowed to hide the rest.
                let i = match i {
                    Err(e @ StoreError::Corrupt { .. }) => {
                        damaged.push(e.to_string());
                        continue;
                    }
                    other => other?,
                };
                let key = Key::from_hex(&i.key).map(|k| k.0);
                let played = key.and_then(|k| calls.and_then(|c| c.keyed.get(&k)));
                if !played.is_some_and(|c| c.played.contains(i.position)) {
                    unplayed.push(Unplayed {
                        cassette: cassette.name().to_string(),
                        action: i.action,
                        method: i.request.method,
                        path: i.request.path,
                        key: i.key,
                        position: i.position,
                        recorded_at: i.recorded_at,
                    });
                }
            }
        }
        let call = |cassette: &str, key: Option<&[u8; 32]>, c: &CallState| Call {
            cassette: cassette.to_string(),
            action: c.action.to_string(),
            method: c.method.to_string(),
            path: c.path.to_string(),
            key: key.map(|k| Key(*k).to_hex()),
            requests: c.requests,
            outcomes: OUTCOMES
                .iter()
                .zip(c.outcomes)
                .filter(|(_, n)| *n > 0)
                .map(|(o, n)| (o.as_str().to_string(), u64::from(n)))
                .chain(c.other.iter().map(|(o, n)| (o.to_string(), *n)))
                .collect(),
            deviations: c
                .deviations
                .as_deref()
                .map(<[_]>::to_vec)
                .unwrap_or_default(),
            deviations_omitted: c.deviations_omitted,
            message: c.message.as_deref().map(str::to_string),
        };
        let mut calls: Vec<Call> = s
            .cassettes
            .iter()
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
        let totals = Totals {
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
            unplayed: unplayed.len(),
            damaged: damaged.len(),
        };
        Ok(Report {
            format: "graph-vcr-report",
            version: 1,
            mode: mode.to_string(),
            totals,
            calls,
            unplayed,
            damaged,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn played_positions_below_and_above_the_bit_set() {
        let mut p = Played::default();
        for pos in [0, 5, 63, 64, 1000] {
            assert!(!p.contains(pos));
            p.insert(pos);
            assert!(p.contains(pos));
        }
        p.insert(1000);
        assert_eq!(p.high, vec![64, 1000]);
        assert!(!p.contains(6) && !p.contains(65));
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
                key: Some(Key([k; 32])),
                outcome,
                position: Some(0),
                message: None,
                deviations: std::slice::from_ref(&warning),
                deviations_omitted: 0,
            });
        }
        let s = log.0.lock().unwrap_or_else(|p| p.into_inner());
        assert_eq!(s.deviation_lists.len(), 1);
        let calls = &s.cassettes["c"].keyed;
        let one = &calls[&[1u8; 32]];
        assert_eq!(one.requests, 3);
        assert_eq!(one.outcomes[0], 1); // replayed
        assert_eq!(one.outcomes[3], 1); // miss (Outcome::ALL order)
        assert_eq!(one.other.len(), 1); // an outcome from an older journal
        assert!(Arc::ptr_eq(
            one.deviations.as_ref().unwrap_or(&Arc::from(vec![])),
            calls[&[2u8; 32]]
                .deviations
                .as_ref()
                .unwrap_or(&Arc::from(vec![]))
        ));
    }
}
