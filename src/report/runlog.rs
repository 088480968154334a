//! Run log: the run's calls, folded from exchanges as they happen (or from a journal read
//! back by `verify`), and turned into a [`Report`] at the end.
//!
//! Every request of a run is added here, so this is on the hot path and its memory grows with
//! the distinct calls of a run (a replay of a 100,000-call cassette makes 100,000 of them).
//! A call's state is 40 bytes: its names interned as one pointer, its outcome counts inline
//! while it has one outcome, played positions a bit set, its deviation list interned (most
//! calls share one) behind one pointer, and what few calls have (a message, positions past
//! 31, outcomes of older versions) out of line. Strings are built only for the report.
//!
//! Where a call's state lives: a request matched to a recorded call (replay) carries that
//! call's [`CallLog`], kept beside the call by the index, and updates it there: no table
//! lookup, no second copy of the key, no lock but the call's own. Every other request (a
//! miss, a request turned away before it was matched, every request of record, audit and
//! `verify`) goes to the run log's own tables: 16 shards by key, each behind its own lock,
//! so two workers rarely wait on each other. The report adds the two up.
//!
//! Locks: a kept call's lock, then (to intern its names or deviations) one of the run log's
//! interning locks, which take nothing else; a shard's lock alone. So nothing waits in a
//! cycle.

use super::{Call, Report, Totals, Unplayed};
use crate::cassette::{Cassette, CassetteName, StoreError};
use crate::check::{Deviation, Severity};
use crate::interaction::Interaction;
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
    /// Names and deviation lists of kept calls ([`CallLog`]), interned as the shards' are.
    kept_names: Mutex<HashSet<Arc<CallName>>>,
    kept_lists: Mutex<HashSet<DeviationList>>,
}

/// A call's state kept outside the run log, beside the call it belongs to (replay's index
/// keeps one in every recorded call): see [`Event::kept`]. Empty until a request is added.
#[derive(Debug, Default)]
pub struct CallLog(Mutex<Option<CallState>>);

impl CallLog {
    /// Whether a request panicked holding the state (it is used anyway): read by
    /// `index::Entry::warm` only for the cache line it is on.
    pub fn is_poisoned(&self) -> bool {
        self.0.is_poisoned()
    }

    fn lock(&self) -> MutexGuard<'_, Option<CallState>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The cassettes whose recordings a report lists when no request played them.
pub trait Recordings {
    fn cassettes(&self) -> Vec<CassetteName>;
    /// Calls `f` with every record of `cassette` (one of [`Recordings::cassettes`]), one
    /// that does not decode as its error.
    fn each(
        &self,
        cassette: &CassetteName,
        f: &mut dyn FnMut(Result<Interaction, StoreError>),
    ) -> Result<(), StoreError>;
}

/// Open cassettes, read through (record mode, `verify`).
impl Recordings for Vec<Cassette> {
    fn cassettes(&self) -> Vec<CassetteName> {
        self.iter().map(|c| c.name().clone()).collect()
    }

    fn each(
        &self,
        cassette: &CassetteName,
        f: &mut dyn FnMut(Result<Interaction, StoreError>),
    ) -> Result<(), StoreError> {
        let Some(c) = self.iter().find(|c| c.name() == cassette) else {
            return Ok(());
        };
        for i in c.iter() {
            match i {
                Ok(i) => f(Ok(i)),
                Err(e @ StoreError::Corrupt { .. }) => f(Err(e)),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// A kept call, as the report reads it.
#[derive(Debug, Clone, Copy)]
pub struct Kept<'a> {
    pub cassette: &'a str,
    pub key: Key,
    pub log: &'a CallLog,
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
    deviation_lists: HashSet<DeviationList>,
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

/// One call's state: 40 bytes, since a replay of a large cassette holds one per recorded call.
#[derive(Debug, Clone)]
struct CallState {
    name: Arc<CallName>,
    counts: Counts,
    /// Recording positions under 32 that were played, a bit each.
    played_low: u32,
    /// graph-vcr's time over the call's requests in µs, added up: what fits in 32 bits here,
    /// the rest in [`Extra::micros`].
    micros: u32,
    deviations: Option<DeviationList>,
    /// What few calls have, out of line to keep the common call small.
    extra: Option<Box<Extra>>,
}

/// The rarer parts of a call's state.
#[derive(Debug, Default, Clone)]
struct Extra {
    /// The call's latest request was throttled (`--throttle`): unless a later one is
    /// answered, the client gave up after a 429.
    last_throttled: bool,
    /// Requests per outcome, once the call has had two outcomes (or more requests of one
    /// than 32 bits count).
    counts: Option<Box<[u64; OUTCOMES.len()]>>,
    micros: u64,
    /// Outcomes this version does not know (an older journal), by name.
    other: Vec<(Box<str>, u64)>,
    /// Positions of 32 and above that were played.
    played_high: Vec<u32>,
    deviations_omitted: usize,
    message: Option<Box<str>>,
}

/// A deviation list, interned: calls with the same deviations share one, behind one pointer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DeviationList(Arc<Box<[Deviation]>>);

impl std::ops::Deref for DeviationList {
    type Target = [Deviation];
    fn deref(&self) -> &[Deviation] {
        &self.0
    }
}

impl std::borrow::Borrow<[Deviation]> for DeviationList {
    fn borrow(&self) -> &[Deviation] {
        &self.0
    }
}

impl From<Vec<Deviation>> for DeviationList {
    fn from(list: Vec<Deviation>) -> Self {
        Self(Arc::new(list.into_boxed_slice()))
    }
}

/// Requests of a call's one outcome, while it has had one (nearly every call); see
/// [`Extra::counts`].
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    only: u8,
    n: u32,
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

    /// Counts `n` more requests of outcome `i` (an index in [`OUTCOMES`]).
    fn count(&mut self, i: usize, n: u64) {
        if n == 0 {
            return;
        }
        if let Some(all) = self.extra.as_mut().and_then(|x| x.counts.as_mut()) {
            all[i] = all[i].saturating_add(n);
            return;
        }
        let c = &mut self.counts;
        let inline = u64::from(c.n).saturating_add(n);
        if (c.n == 0 || usize::from(c.only) == i)
            && let Ok(inline) = u32::try_from(inline)
        {
            *c = Counts {
                only: i as u8,
                n: inline,
            };
            return;
        }
        let mut all = Box::new([0; OUTCOMES.len()]);
        all[usize::from(c.only)] = u64::from(c.n);
        all[i] = all[i].saturating_add(n);
        *c = Counts::default();
        self.extra().counts = Some(all);
    }

    /// Requests of outcome `i`.
    fn outcome(&self, i: usize) -> u64 {
        match self.extra.as_ref().and_then(|x| x.counts.as_ref()) {
            Some(all) => all[i],
            None if self.counts.n > 0 && usize::from(self.counts.only) == i => {
                u64::from(self.counts.n)
            }
            None => 0,
        }
    }

    fn requests(&self) -> u64 {
        let known: u64 = (0..OUTCOMES.len()).map(|i| self.outcome(i)).sum();
        let other = self.extra.iter().flat_map(|x| &x.other).map(|(_, n)| n);
        known + other.sum::<u64>()
    }

    fn add_micros(&mut self, us: u64) {
        match u32::try_from(u64::from(self.micros).saturating_add(us)) {
            Ok(sum) => self.micros = sum,
            Err(_) => {
                let sum = u64::from(self.micros).saturating_add(us);
                self.micros = 0;
                let x = self.extra();
                x.micros = x.micros.saturating_add(sum);
            }
        }
    }

    fn micros(&self) -> u64 {
        u64::from(self.micros) + self.extra.as_ref().map_or(0, |x| x.micros)
    }

    fn play(&mut self, pos: u32) {
        if pos < 32 {
            self.played_low |= 1 << pos;
        } else if !self.played(pos) {
            self.extra().played_high.push(pos);
        }
    }

    fn played(&self, pos: u32) -> bool {
        if pos < 32 {
            self.played_low & (1 << pos) != 0
        } else {
            self.extra
                .as_ref()
                .is_some_and(|x| x.played_high.contains(&pos))
        }
    }
}

impl CallState {
    /// Folds one request in; `intern` shares a changed deviation list.
    fn apply(&mut self, e: &Event<'_>, intern: impl FnOnce(Vec<Deviation>) -> DeviationList) {
        match e.outcome {
            Ok(o @ (Outcome::Throttled | Outcome::Fault)) => {
                self.count(o.index(), 1);
                self.extra().last_throttled = true;
            }
            Ok(o) => {
                self.count(o.index(), 1);
                if let Some(x) = &mut self.extra {
                    x.last_throttled = false;
                }
            }
            Err(name) => {
                let other = &mut self.extra().other;
                match other.iter_mut().find(|(o, _)| **o == *name) {
                    Some((_, n)) => *n += 1,
                    None => other.push((name.into(), 1)),
                }
            }
        }
        if let (Some(pos), Some(_)) = (e.position, e.key) {
            self.play(pos);
        }
        self.add_micros(e.elapsed_us);
        if e.deviations_omitted > 0 {
            let x = self.extra();
            x.deviations_omitted = x.deviations_omitted.max(e.deviations_omitted);
        }
        // The usual case, a repeat of the call's deviations, costs one comparison.
        if !e.deviations.is_empty()
            && self.deviations.as_deref() != Some(e.deviations)
            && let Some(merged) = merge_deviations(self.deviations.as_deref(), e.deviations)
        {
            self.deviations = Some(intern(merged));
        }
        if let Some(message) = e.message
            && self.extra.as_ref().is_none_or(|x| x.message.is_none())
        {
            self.extra().message = Some(message.into());
        }
    }

    /// Adds what `other`, the same call counted elsewhere, saw. The latest request's throttling
    /// is this state's: the kept state, which absorbs the listed one, has every request made
    /// after the call was matched.
    fn absorb(&mut self, other: &CallState) {
        for i in 0..OUTCOMES.len() {
            self.count(i, other.outcome(i));
        }
        self.played_low |= other.played_low;
        self.add_micros(other.micros());
        if let Some(merged) = other
            .deviations
            .as_deref()
            .and_then(|d| merge_deviations(self.deviations.as_deref(), d))
        {
            self.deviations = Some(DeviationList::from(merged));
        }
        let Some(x) = &other.extra else { return };
        for pos in &x.played_high {
            self.play(*pos);
        }
        let mine = self.extra();
        for (name, n) in &x.other {
            match mine.other.iter_mut().find(|(o, _)| o == name) {
                Some((_, m)) => *m += n,
                None => mine.other.push((name.clone(), *n)),
            }
        }
        mine.deviations_omitted = mine.deviations_omitted.max(x.deviations_omitted);
        if mine.message.is_none() {
            mine.message.clone_from(&x.message);
        }
    }
}

/// `known` with the deviations of `new` it lacks (by code and place), errors first; `None`
/// when it lacks none.
fn merge_deviations(known: Option<&[Deviation]>, new: &[Deviation]) -> Option<Vec<Deviation>> {
    let known = known.unwrap_or(&[]);
    let missing: Vec<&Deviation> = new
        .iter()
        .filter(|d| !known.iter().any(|k| k.code == d.code && k.at == d.at))
        .collect();
    if missing.is_empty() {
        return None;
    }
    let mut merged: Vec<Deviation> = known.to_vec();
    merged.extend(missing.into_iter().cloned());
    merged.sort_by_key(|d| std::cmp::Reverse(d.severity));
    Some(merged)
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

fn intern_list(lists: &mut HashSet<DeviationList>, list: Vec<Deviation>) -> DeviationList {
    match lists.get(list.as_slice()) {
        Some(a) => a.clone(),
        None => {
            let a = DeviationList::from(list);
            lists.insert(a.clone());
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
    /// The state of the call it was matched to, kept beside the call (see [`CallLog`]):
    /// the request is counted there instead of in the run log's tables.
    pub kept: Option<&'a CallLog>,
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
            kept: None,
        }
    }
}

impl RunLog {
    fn shard(&self, i: usize) -> MutexGuard<'_, Shard> {
        self.shards[i % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub fn add(&self, e: &Event<'_>) {
        match e.kept {
            Some(log) if e.key.is_some() => self.add_kept(log, e),
            _ => self.add_listed(e),
        }
    }

    /// A request matched to a kept call: its state updated where the call keeps it.
    fn add_kept(&self, log: &CallLog, e: &Event<'_>) {
        let mut state = log.lock();
        let call = state.get_or_insert_with(|| {
            let mut names = self.kept_names.lock().unwrap_or_else(|p| p.into_inner());
            CallState::new(intern_name(&mut names, e))
        });
        call.apply(e, |merged| {
            let mut lists = self.kept_lists.lock().unwrap_or_else(|p| p.into_inner());
            intern_list(&mut lists, merged)
        });
    }

    /// Any other request: its state in the shard of its key.
    fn add_listed(&self, e: &Event<'_>) {
        // By key, so one call always lands in one shard; requests turned away before keying
        // are rare and share the first.
        let mut guard = self.shard(e.key.map_or(0, |k| usize::from(k.0[0])));
        let Shard {
            unanswered,
            names,
            deviation_lists,
            cassettes,
        } = &mut *guard;
        let calls = match cassettes.get_mut(e.cassette) {
            Some(c) => c,
            None => cassettes.entry(Arc::from(e.cassette)).or_default(),
        };
        let answered = e.outcome.is_err() || e.outcome.is_ok_and(Outcome::answered);
        let known = match e.key {
            Some(key) => calls.keyed.contains_key(&key.0),
            None => calls
                .unkeyed
                .keys()
                .any(|n| *n.action == *e.action && *n.method == *e.method && *n.path == *e.path),
        };
        let fold = !known && !answered && *unanswered >= MAX_UNANSWERED_PER_SHARD;
        if !known && !answered && !fold {
            *unanswered += 1;
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
        call.apply(e, |merged| intern_list(deviation_lists, merged));
    }

    /// Cassettes the run touched, `kept` calls' included.
    pub fn cassettes(&self, kept: &[Kept<'_>]) -> Vec<String> {
        let mut set = BTreeSet::new();
        for i in 0..SHARDS {
            set.extend(self.shard(i).cassettes.keys().map(|c| c.to_string()));
        }
        let used = kept.iter().filter(|k| k.log.lock().is_some());
        set.extend(used.map(|k| k.cassette.to_string()));
        set.into_iter().collect()
    }

    /// The report, with the recordings that were never played.
    /// `started` is when the run started (RFC 3339); `recordings` the cassettes whose
    /// unplayed recordings are listed; `expected` the recordings per cassette the
    /// directory's manifest promises (fewer present is damage); `kept` the calls whose state
    /// is kept outside the run log (replay's index's).
    pub fn report(
        &self,
        mode: &str,
        started: &str,
        recordings: &dyn Recordings,
        expected: &std::collections::BTreeMap<String, usize>,
        kept: &[Kept<'_>],
    ) -> Result<Report, StoreError> {
        // A copy of each kept call's state, so no lock of one is held with a shard's.
        let mut kept: HashMap<(&str, [u8; 32]), CallState> = kept
            .iter()
            .filter_map(|k| Some(((k.cassette, k.key.0), k.log.lock().clone()?)))
            .collect();
        let shards: Vec<MutexGuard<'_, Shard>> = (0..SHARDS).map(|i| self.shard(i)).collect();
        // A call counted in both (requests turned away before they were matched to it, then
        // requests matched) is one call.
        for (name, cc) in shards.iter().flat_map(|s| s.cassettes.iter()) {
            for (key, listed) in &cc.keyed {
                if let Some(state) = kept.get_mut(&(&**name, *key)) {
                    state.absorb(listed);
                }
            }
        }
        let played = |cassette: &str, key: &[u8; 32], position: u32| {
            if let Some(state) = kept.get(&(cassette, *key)) {
                return state.played(position);
            }
            let shard = &shards[usize::from(key[0]) % SHARDS];
            shard
                .cassettes
                .get(cassette)
                .and_then(|c| c.keyed.get(key))
                .is_some_and(|c| c.played(position))
        };
        let mut unplayed = Vec::new();
        let mut damaged = Vec::new();
        for cassette in recordings.cassettes() {
            let name = cassette.as_str();
            let mut present = 0;
            recordings.each(&cassette, &mut |i| {
                present += 1;
                // A record that does not decode is reported, not allowed to hide the rest.
                let i = match i {
                    Ok(i) => i,
                    Err(e) => return damaged.push(e.to_string()),
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
            })?;
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
                    .filter(|(k, _)| !kept.contains_key(&(&**name, **k)))
                    .map(|(k, c)| call(name, Some(k), c))
                    .chain(cc.unkeyed.values().map(|c| call(name, None, c)))
            })
            .chain(kept.iter().map(|((name, k), c)| call(name, Some(k), c)))
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
            .map(|(i, o)| (o, c.outcome(i)))
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
        seconds: c.micros() as f64 / 1e6,
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
        for pos in [0, 5, 31, 32, 1000] {
            assert!(!c.played(pos));
            c.play(pos);
            assert!(c.played(pos));
        }
        c.play(1000);
        assert_eq!(
            c.extra.as_ref().map(|x| x.played_high.clone()),
            Some(vec![32, 1000])
        );
        assert!(!c.played(6) && !c.played(33));
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
                kept: None,
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
        // A replay of 100,000 distinct calls holds 100,000 of these, one in every recorded
        // call (docs/PERFORMANCE.md).
        assert!(std::mem::size_of::<CallState>() <= 40);
        assert!(std::mem::size_of::<CallLog>() <= 48);
    }

    #[test]
    fn counts_stay_inline_until_a_second_outcome_or_32_bits() {
        let mut c = CallState::new(Arc::new(CallName {
            action: "a".into(),
            method: "POST".into(),
            path: "/p".into(),
        }));
        c.count(3, 1);
        c.count(3, 1);
        assert!(c.extra.is_none());
        assert_eq!((c.outcome(3), c.outcome(0), c.requests()), (2, 0, 2));
        c.count(0, 1);
        assert_eq!((c.outcome(3), c.outcome(0), c.requests()), (2, 1, 3));
        let mut big = CallState::new(Arc::clone(&c.name));
        big.count(1, u64::from(u32::MAX));
        assert!(big.extra.is_none());
        big.count(1, 2);
        assert_eq!(
            (big.outcome(1), big.requests()),
            (u64::from(u32::MAX) + 2, u64::from(u32::MAX) + 2)
        );
        big.add_micros(u64::from(u32::MAX));
        big.add_micros(5);
        assert_eq!(big.micros(), u64::from(u32::MAX) + 5);
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
                kept: None,
            });
        }
        let s = log.shard(0);
        assert_eq!(s.deviation_lists.len(), 1);
        assert_eq!(s.names.len(), 1);
        let calls = &s.cassettes["c"].keyed;
        let one = &calls[&key(1).0];
        assert_eq!(one.requests(), 3);
        assert_eq!(one.outcome(0), 1); // replayed (Outcome::ALL order)
        assert_eq!(one.outcome(3), 1); // miss
        assert_eq!(one.extra.as_ref().map(|x| x.other.len()), Some(1)); // an older journal's
        let two = &calls[&key(2).0];
        assert!(matches!(
            (&one.deviations, &two.deviations),
            (Some(a), Some(b)) if Arc::ptr_eq(&a.0, &b.0)
        ));
    }
    #[test]
    fn a_call_counted_both_kept_and_listed_is_one_call_in_the_report() {
        let log = RunLog::default();
        let kept = CallLog::default();
        let key = Key([7; 32]);
        let warning = |at: &str| Deviation {
            code: crate::check::Code::ALL[0],
            severity: Severity::Warning,
            at: at.into(),
            message: "m".into(),
        };
        let (first, second) = (warning("/a"), warning("/b"));
        let event = |outcome, position, deviations, kept| Event {
            cassette: "c",
            action: "a",
            method: "POST",
            path: "/p",
            key: Some(key),
            outcome: Ok(outcome),
            position,
            message: None,
            deviations,
            deviations_omitted: 0,
            elapsed_us: 10,
            kept,
        };
        // Turned away before it was matched (listed), then replayed twice (kept), the last
        // request throttled and then answered.
        log.add(&event(
            Outcome::Rejected,
            None,
            std::slice::from_ref(&first),
            None,
        ));
        log.add(&event(Outcome::Replayed, Some(0), &[], Some(&kept)));
        log.add(&event(Outcome::Throttled, None, &[], Some(&kept)));
        log.add(&event(
            Outcome::Replayed,
            Some(70),
            std::slice::from_ref(&second),
            Some(&kept),
        ));
        // A kept call no request reached is not in the report.
        let untouched = CallLog::default();
        let kept_calls = [
            Kept {
                cassette: "c",
                key,
                log: &kept,
            },
            Kept {
                cassette: "d",
                key,
                log: &untouched,
            },
        ];
        assert_eq!(log.cassettes(&kept_calls), ["c"]);
        let report = log
            .report("replay", "", &Vec::new(), &Default::default(), &kept_calls)
            .unwrap();
        assert_eq!(report.calls.len(), 1, "{:?}", report.calls);
        let call = &report.calls[0];
        assert_eq!(call.requests, 4);
        assert_eq!(call.outcomes.get("replayed"), Some(&2));
        assert_eq!(call.outcomes.get("rejected"), Some(&1));
        assert_eq!(call.outcomes.get("throttled"), Some(&1));
        let places: Vec<&str> = call.deviations.iter().map(|d| &*d.at).collect();
        assert_eq!(
            places,
            ["/b", "/a"],
            "both requests' deviations, none for abandonment"
        );
        assert_eq!(call.seconds, 40e-6);
        let state = kept.lock().clone().unwrap();
        assert!(state.played(0) && state.played(70) && !state.played(1));
    }
}
