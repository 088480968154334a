//! Index: replay's cassettes, held in memory.
//!
//! Replay reads its cassette directory once, on a background thread, into compact in-memory
//! form: per (cassette, key) a [`Call`] with its prepared responses, occurrence counter and
//! replay tallies. The same scan runs the pure stages over every stored request and pre-fills
//! the memo, so a client that sends what it recorded skips them from its first call on. Once
//! the scan is done a request touches no store at all, however large the cassette.
//!
//! sled 0.34 keeps every page it has read in memory, whatever its cache capacity says, and only
//! closing the database releases them. So the scan reopens sled every [`CHUNK`] records, and
//! closes it when done; it is opened again only for what needs the stored requests (a miss's
//! nearest recording, the report's unplayed list, `--max-age`). Requests that arrive before
//! the scan reaches their call are answered by a point lookup in the same store, so the first
//! response does not wait for the whole scan.
//!
//! The store lives in one slot behind a mutex. Everything that uses it other than the scan
//! holds the lock while it does, and drops its `Cassette` handles before releasing it, so when
//! the scan reopens sled (holding the lock) no handle to the old database is left.

use crate::cassette::{Cassette, CassetteName, ClosedStore, Store, StoreError};
use crate::graph_error::GraphError;
use crate::interaction::Interaction;
use crate::key::{CanonicalBody, Key, KeyOptions};
use crate::memo::Memo;
use crate::nearest::{Candidates, Summary};
use crate::report::CallLog;
use crate::respond::Prepared;
use http::Method;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;

/// Records the scan reads between two reopenings of sled: bounds sled's memory during the
/// scan to a few megabytes.
const CHUNK: usize = 2_048;

/// Records a walk over a whole cassette (a miss's candidates, the report's unplayed list)
/// reads between two reopenings: each reopening costs sled's start-up, and a walk, unlike
/// the scan, runs while nothing else is held (tens of megabytes of pages at most).
const WALK_CHUNK: usize = 16_384;

/// One recorded (cassette, key): what replay serves and counts for it.
#[derive(Debug)]
pub struct Call {
    pub action: Arc<str>,
    pub key: Key,
    /// Occurrences of this call so far in the run.
    pub counter: AtomicU32,
    recordings: Recordings,
    /// What the run did with it, kept here so that a replayed request updates the call it
    /// holds instead of a table of its own (see `report::RunLog`).
    pub log: CallLog,
}

/// A call's prepared responses, by position; the usual single one without a second
/// allocation. Or why they cannot be served (a corrupt record).
#[derive(Debug)]
enum Recordings {
    One(Prepared),
    Many(Box<[Prepared]>),
    Corrupt(Box<GraphError>),
}

impl Call {
    fn new(action: Arc<str>, key: Key, recordings: Result<Vec<Prepared>, GraphError>) -> Self {
        let recordings = match recordings {
            Ok(mut r) if r.len() == 1 => match r.pop() {
                Some(one) => Recordings::One(one),
                None => Recordings::Many(Box::default()),
            },
            Ok(r) => Recordings::Many(r.into_boxed_slice()),
            Err(e) => Recordings::Corrupt(Box::new(e)),
        };
        Self {
            action,
            key,
            counter: AtomicU32::new(0),
            recordings,
            log: CallLog::default(),
        }
    }

    /// The prepared responses, by position.
    pub fn recordings(&self) -> Result<&[Prepared], GraphError> {
        match &self.recordings {
            Recordings::One(one) => Ok(std::slice::from_ref(one)),
            Recordings::Many(r) => Ok(r),
            Recordings::Corrupt(e) => Err((**e).clone()),
        }
    }

    /// How many recordings there are (the next position to record).
    pub fn recorded(&self) -> u32 {
        self.recordings()
            .ok()
            .and_then(<[Prepared]>::last)
            .map_or(0, |p| p.position.saturating_add(1))
    }
}

type Calls = HashMap<CassetteName, HashMap<Key, Arc<Call>, crate::key::PrehashedState>>;

/// Where the store is: open (during the scan, and after something needed it again), or
/// closed with its private copy kept.
struct Slot {
    open: Option<Store>,
    closed: Option<ClosedStore>,
}

impl Slot {
    /// Closes the store, keeping its private copy here for [`Slot::store`] to open again.
    fn close(&mut self) {
        if let Some(store) = self.open.take() {
            match store.close() {
                Ok(closed) => self.closed = Some(closed),
                Err(store) => self.open = Some(*store),
            }
        }
    }

    fn store(&mut self) -> Result<&Store, StoreError> {
        if self.open.is_none()
            && let Some(closed) = &self.closed
        {
            self.open = Some(closed.open()?);
        }
        self.open.as_ref().ok_or(StoreError::NoStore)
    }
}

struct Shared {
    calls: RwLock<Calls>,
    store: Mutex<Slot>,
    /// Per cassette, its recordings summarised for misses (`nearest`), made on its first miss.
    nearest: Mutex<HashMap<CassetteName, Arc<Candidates>>>,
    /// Set, with the store's lock held, once every recording is in `calls`.
    complete: AtomicBool,
    /// Set when the index is dropped: the scan stops at the next record.
    cancel: AtomicBool,
    actions: Mutex<HashSet<Arc<str>>>,
}

/// What memory knows of a (cassette, key).
#[derive(Debug)]
pub enum InMemory {
    Found(Arc<Call>),
    /// Every recording is in memory, and this is not one of them.
    NotRecorded,
    /// The scan has not finished: only the store can tell ([`Index::lookup`], off the runtime).
    AskTheStore,
}

/// Replay's memo: per distinct request, its findings and its call.
pub type CallMemo = Memo<Entry>;

/// What the memo keeps of a call: the call, and its answer's buffer when it has one recording
/// (the usual case), so that a repeated request can ask for both at once ([`Entry::warm`]).
#[derive(Debug, Clone)]
pub struct Entry {
    pub call: Arc<Call>,
    answer: Option<Arc<[u8]>>,
}

impl Entry {
    pub fn new(call: Arc<Call>) -> Self {
        let answer = match &call.recordings {
            Recordings::One(one) => Some(Arc::clone(one.buffer())),
            _ => None,
        };
        Self { call, answer }
    }

    /// Reads every part of the call a replay of it will use, and its answer's buffer, before
    /// any of them is needed. Otherwise a repeated request touches the call's cache lines and
    /// its answer's one by one, each a miss when a test suite cycles through more calls than
    /// the caches hold, and each waited for before the next is asked for (the answer's
    /// address is in the call). Both addresses are here, so the loads below have no
    /// dependency between them and their misses overlap.
    pub fn warm(&self) {
        let call = &self.call;
        let state = (
            // The reference count, which `Arc::clone` is about to change, is on the
            // allocation's first line.
            Arc::strong_count(call),
            Arc::as_ptr(&call.action).cast::<u8>(),
            call.key.0[0] ^ call.key.0[31],
            call.counter.load(Ordering::Relaxed),
            call.log.is_poisoned(),
        );
        std::hint::black_box(state);
        if let Some(answer) = &self.answer {
            crate::respond::warm(answer);
        }
    }
}

/// What the scan needs to pre-fill the memo.
pub struct Prefill {
    /// `None` with `--no-memo`.
    pub memo: Option<Arc<CallMemo>>,
    /// The key options of each cassette (those it was recorded with), shared with replay.
    pub keys: Arc<HashMap<CassetteName, KeyOptions>>,
    pub max_json_depth: usize,
}

/// Replay's in-memory cassettes, filled by a background scan.
pub struct Index {
    shared: Arc<Shared>,
    loader: Option<JoinHandle<()>>,
}

impl Index {
    /// Starts the background scan of `store`, a replay store.
    pub fn start(store: Store, prefill: Prefill) -> Result<Self, StoreError> {
        let shared = Arc::new(Shared {
            calls: RwLock::new(HashMap::new()),
            store: Mutex::new(Slot {
                open: Some(store),
                closed: None,
            }),
            complete: AtomicBool::new(false),
            cancel: AtomicBool::new(false),
            actions: Mutex::new(HashSet::new()),
            nearest: Mutex::new(HashMap::new()),
        });
        let scan = Arc::clone(&shared);
        let loader = std::thread::Builder::new()
            .name("graph-vcr-index".into())
            .spawn(move || {
                let started = std::time::Instant::now();
                let loaded = scan.load(&prefill);
                // Whatever the scan got to is all it will pre-fill: read lock-free from now on.
                if let Some(memo) = &prefill.memo {
                    memo.freeze();
                }
                match loaded {
                    Ok(Some(count)) => {
                        // sled's pages, read and dropped by the scan, go back to the system
                        // before the run's own state (the run log) grows.
                        crate::memory::give_back();
                        tracing::info!(
                            recordings = count,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "cassettes indexed; replay no longer reads the store"
                        )
                    }
                    Ok(None) => {}
                    // The store stays open: requests go on with point lookups.
                    Err(e) => tracing::error!(error = %e,
                        "indexing the cassettes failed; replay goes on reading the store per request"),
                }
            })
            .map_err(|e| StoreError::Io {
                dir: std::path::PathBuf::from("(index thread)"),
                source: e,
            })?;
        Ok(Self {
            shared,
            loader: Some(loader),
        })
    }

    /// Whether every recording is in memory (the scan has finished).
    pub fn is_complete(&self) -> bool {
        self.shared.complete.load(Ordering::Acquire)
    }

    /// Whether the scan is still running (false once it has finished, failed or stopped).
    pub fn is_scanning(&self) -> bool {
        self.loader.as_ref().is_some_and(|l| !l.is_finished())
    }

    /// The call recorded for (cassette, key), as far as memory can tell.
    pub fn get(&self, cassette: &CassetteName, key: &Key) -> InMemory {
        match self.shared.get(cassette, key) {
            Some(found) => InMemory::Found(found),
            None if self.is_complete() => InMemory::NotRecorded,
            None => InMemory::AskTheStore,
        }
    }

    /// The call recorded for (cassette, key), looked up in the store if the scan has not
    /// reached it (and kept). Blocks on the store's lock and on sled: call it where blocking
    /// is allowed.
    pub fn lookup(
        &self,
        cassette: &CassetteName,
        key: &Key,
        action: &str,
    ) -> Result<Option<Arc<Call>>, StoreError> {
        if let Some(found) = self.shared.get(cassette, key) {
            return Ok(Some(found));
        }
        if self.is_complete() {
            return Ok(None);
        }
        let mut slot = self.shared.slot();
        // The scan marks completion holding this lock: checked again, the answer is final.
        if self.is_complete() {
            return Ok(self.shared.get(cassette, key));
        }
        let store = slot.store()?;
        let prepared = match store.cassette(cassette)?.all_recorded(key) {
            Ok(recorded) if recorded.is_empty() => return Ok(None),
            Ok(recorded) => recorded
                .iter()
                .map(Prepared::of)
                .collect::<Result<Vec<_>, _>>(),
            // The same answer as once the scan has read it.
            Err(e @ StoreError::Corrupt { .. }) => Err(corrupt(&e)),
            Err(e) => return Err(e),
        };
        let action = self.shared.intern(action);
        let call = Call::new(action, *key, prepared);
        Ok(Some(self.shared.insert(cassette, call)))
    }

    /// Every call in memory, with its cassette: the run log's kept calls, for the report.
    pub fn calls(&self) -> Vec<(CassetteName, Arc<Call>)> {
        let calls = self.shared.calls.read().unwrap_or_else(|p| p.into_inner());
        let each = calls.iter().flat_map(|(name, calls)| {
            calls
                .values()
                .map(move |call| (name.clone(), Arc::clone(call)))
        });
        each.collect()
    }

    /// Every record of `name`, read in chunks as the scan reads (see `Shared::walk`): what a
    /// report reads to list the recordings never played, without sled keeping every page.
    pub fn walk(
        &self,
        name: &CassetteName,
        f: impl FnMut(Result<Interaction, StoreError>),
    ) -> Result<(), StoreError> {
        self.shared.walk(name, f)
    }

    /// Runs `f` on the store, opening it again if the scan closed it.
    pub fn with_store<T>(&self, f: impl FnOnce(&Store) -> T) -> Result<T, StoreError> {
        let mut slot = self.shared.slot();
        Ok(f(slot.store()?))
    }

    /// The recordings of `name` a miss summarised as `probe` is compared with, closest first
    /// (see `nearest`). The first miss of a cassette summarises it, reading it in chunks as the
    /// scan does (sled reopened between chunks, closed at the end once the scan is done).
    pub fn nearest(
        &self,
        name: &CassetteName,
        probe: &Summary,
    ) -> Result<Vec<(Key, u32)>, StoreError> {
        let mut made = self
            .shared
            .nearest
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let candidates = match made.get(name) {
            Some(c) => Arc::clone(c),
            None => {
                let c = Arc::new(self.shared.summarise(name)?);
                made.insert(name.clone(), Arc::clone(&c));
                c
            }
        };
        drop(made);
        Ok(candidates.closest(probe))
    }

    /// Runs `f` on one cassette of the store (see [`Index::with_store`]).
    pub fn with_cassette<T>(
        &self,
        name: &CassetteName,
        f: impl FnOnce(&Cassette) -> T,
    ) -> Result<T, StoreError> {
        let mut slot = self.shared.slot();
        let cassette = slot.store()?.cassette(name)?;
        Ok(f(&cassette))
    }
}

impl Drop for Index {
    /// Stops the scan and waits for it, so its store (and private copy) is gone with the index.
    fn drop(&mut self) {
        self.shared.cancel.store(true, Ordering::Release);
        if let Some(loader) = self.loader.take() {
            let _ = loader.join();
        }
    }
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("complete", &self.is_complete())
            .finish()
    }
}

impl Shared {
    fn slot(&self) -> MutexGuard<'_, Slot> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, cassette: &CassetteName, key: &Key) -> Option<Arc<Call>> {
        let calls = self.calls.read().unwrap_or_else(|p| p.into_inner());
        calls.get(cassette)?.get(key).cloned()
    }

    /// Adds a call unless it is there already (the scan and a point lookup can both find
    /// it); either way, the one in the index.
    fn insert(&self, cassette: &CassetteName, call: Call) -> Arc<Call> {
        let mut calls = self.calls.write().unwrap_or_else(|p| p.into_inner());
        let per_cassette = match calls.get_mut(cassette) {
            Some(m) => m,
            None => calls.entry(cassette.clone()).or_default(),
        };
        Arc::clone(
            per_cassette
                .entry(call.key)
                .or_insert_with(|| Arc::new(call)),
        )
    }

    fn intern(&self, action: &str) -> Arc<str> {
        let mut actions = self.actions.lock().unwrap_or_else(|p| p.into_inner());
        match actions.get(action) {
            Some(a) => Arc::clone(a),
            None => {
                let a: Arc<str> = Arc::from(action);
                actions.insert(Arc::clone(&a));
                a
            }
        }
    }

    /// The scan: every cassette, in chunks, then the store closed. `None` when cancelled.
    fn load(&self, prefill: &Prefill) -> Result<Option<usize>, StoreError> {
        // In name order, so a run is repeatable.
        let mut names = self.slot().store()?.cassette_names();
        names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        let mut count = 0;
        for name in names {
            match self.load_cassette(&name, prefill)? {
                Some(n) => count += n,
                None => return Ok(None),
            }
        }
        let mut slot = self.slot();
        slot.close();
        self.complete.store(true, Ordering::Release);
        Ok(Some(count))
    }

    fn load_cassette(
        &self,
        name: &CassetteName,
        prefill: &Prefill,
    ) -> Result<Option<usize>, StoreError> {
        let mut after = None;
        let mut group: Vec<Interaction> = Vec::new();
        let mut count = 0;
        loop {
            let cassette = self.slot().store()?.cassette(name)?;
            let mut read = 0;
            let mut finished = true;
            for item in cassette.scan_after(after) {
                if self.cancel.load(Ordering::Acquire) {
                    return Ok(None);
                }
                let (raw, interaction) = match item {
                    Ok(found) => found,
                    Err(e @ StoreError::Corrupt { .. }) => {
                        if let StoreError::Corrupt { key, .. } = &e
                            && let Some(k) = Key::from_hex(key)
                        {
                            self.insert(name, Call::new(self.intern(""), k, Err(corrupt(&e))));
                        }
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                after = Some(raw);
                read += 1;
                count += 1;
                if group.first().is_some_and(|g| g.key != interaction.key) {
                    self.add(name, std::mem::take(&mut group), prefill);
                }
                group.push(interaction);
                if read >= CHUNK {
                    finished = false;
                    break;
                }
            }
            drop(cassette);
            if finished {
                self.add(name, group, prefill);
                return Ok(Some(count));
            }
            // Reopen: the only way to release what sled has cached of the pages read so far.
            // The next round's `store()` opens it again. Kept in the slot either way, so a
            // failure to reopen leaves the private copy in place for point lookups to retry.
            self.slot().close();
            // What the chunk read and dropped (sled's pages, the records) goes back before
            // the next is read: the scan's peak is then one chunk over what it keeps.
            crate::memory::give_back();
        }
    }

    /// Every recording of `name`, summarised for misses.
    fn summarise(&self, name: &CassetteName) -> Result<Candidates, StoreError> {
        let mut candidates = Candidates::default();
        self.walk(name, |item| {
            let Ok(i) = item else { return };
            let Some(key) = Key::from_hex(&i.key) else {
                return;
            };
            let canonical = match &i.request.canonical_body {
                Some(c) => CanonicalBody::Json(c.clone()),
                None => CanonicalBody::Bytes(i.request.body.to_bytes().unwrap_or_default()),
            };
            let action = crate::classify::classify(&i.request.path, i.request.query.as_deref())
                .action_label();
            let summary = Summary::of(
                &action,
                &i.request.method,
                &i.request.path,
                i.request.query.as_deref(),
                &canonical,
            );
            candidates.push(key, i.position, summary);
        })?;
        Ok(candidates)
    }

    /// Every record of `name` in key order, read in chunks as the scan reads (sled reopened
    /// every [`WALK_CHUNK`] records, what each chunk freed given back, the store closed at the
    /// end once the scan is done), so a walk over a large cassette holds one chunk's pages at
    /// most. A record that does not decode is passed on as its error.
    fn walk(
        &self,
        name: &CassetteName,
        mut f: impl FnMut(Result<Interaction, StoreError>),
    ) -> Result<(), StoreError> {
        let mut after = None;
        loop {
            let mut slot = self.slot();
            let cassette = slot.store()?.cassette(name)?;
            let mut read = 0;
            for item in cassette.scan_after(after) {
                // A chunk ends after a record that decoded, so resuming after it never meets
                // a corrupt one twice.
                match item {
                    Ok((raw, i)) => {
                        after = Some(raw);
                        f(Ok(i));
                    }
                    Err(e @ StoreError::Corrupt { .. }) => {
                        f(Err(e));
                        continue;
                    }
                    Err(e) => return Err(e),
                }
                read += 1;
                if read >= WALK_CHUNK {
                    break;
                }
            }
            drop(cassette);
            let finished = read < WALK_CHUNK;
            // Release what sled cached of the pages read; once the scan is done nothing else
            // needs the store open.
            if !finished || self.complete.load(Ordering::Acquire) {
                slot.close();
                crate::memory::give_back();
            }
            if finished {
                return Ok(());
            }
        }
    }

    /// One key's recordings (its positions, in order): the call, and the memo pre-filled
    /// with what each stored request analyses to.
    fn add(&self, name: &CassetteName, group: Vec<Interaction>, prefill: &Prefill) {
        let Some(first) = group.first() else {
            return;
        };
        let Some(key) = Key::from_hex(&first.key) else {
            return;
        };
        let prepared = group
            .iter()
            .map(|i| Prepared::from_parts(&i.key, i.position, &i.response))
            .collect::<Result<Vec<_>, _>>();
        let servable = prepared.is_ok();
        // The action as this version classifies it, as a live request's would be.
        let action = crate::classify::classify(&first.request.path, first.request.query.as_deref())
            .action_label();
        let call = self.insert(name, Call::new(self.intern(&action), key, prepared));
        let Some(memo) = prefill.memo.as_ref().filter(|_| servable) else {
            return;
        };
        for i in &group {
            let Ok(method) = Method::from_bytes(i.request.method.as_bytes()) else {
                continue;
            };
            let Some(body) = i.request.body.to_bytes() else {
                continue;
            };
            let query = i.request.query.as_deref();
            let mut secrets = crate::redact::Secrets::default();
            let Ok(analyzed) = crate::analyze::analyze(
                &method,
                &i.request.path,
                query,
                &body,
                prefill.keys.get(name).unwrap_or(&KeyOptions::default()),
                prefill.max_json_depth,
                &mut secrets,
            ) else {
                continue;
            };
            // Keyed with other options than this run's: the request will not find this call.
            if analyzed.key != key {
                continue;
            }
            let path_and_query = match query {
                Some(q) => format!("{}?{q}", i.request.path),
                None => i.request.path.clone(),
            };
            let digest = memo.digest(name.as_str(), &method, &path_and_query, &body);
            memo.insert(
                digest,
                analyzed.findings,
                Entry::new(Arc::clone(&call)),
                true,
            );
        }
    }
}

/// A record that does not decode: served as a 500 naming it, whichever path reads it.
fn corrupt(e: &StoreError) -> GraphError {
    GraphError::new(
        http::StatusCode::INTERNAL_SERVER_ERROR,
        "graphVcrCorruptCassette",
        e.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interaction::{Body, RecordedResponse};

    fn answer(position: u32, body: &[u8]) -> Prepared {
        let response = RecordedResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Body::from_bytes(body),
        };
        match Prepared::from_parts("k", position, &response) {
            Ok(p) => p,
            Err(e) => panic!("a valid recording did not prepare: {}", e.message),
        }
    }

    #[test]
    fn the_memo_entry_names_the_answer_of_a_call_with_one_recording_only() {
        let one = Arc::new(Call::new(
            Arc::from("a"),
            Key([1; 32]),
            Ok(vec![answer(0, b"{}")]),
        ));
        let entry = Entry::new(Arc::clone(&one));
        // The very buffer the call answers from, not a copy.
        let served = one.recordings().map(|r| Arc::as_ptr(r[0].buffer()));
        assert_eq!(entry.answer.as_ref().map(Arc::as_ptr), served.ok());
        entry.warm();

        let two = vec![answer(0, b"{}"), answer(1, b"[]")];
        let many = Entry::new(Arc::new(Call::new(Arc::from("a"), Key([2; 32]), Ok(two))));
        assert!(many.answer.is_none());
        many.warm();
    }
}
