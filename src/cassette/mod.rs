//! Cassette: the sled-backed store of recorded interactions.
//!
//! One sled database per cassette directory (`--cassettes`), one sled tree per cassette name, so
//! a single proxy serves a whole parallel test suite from one directory. Records are keyed by
//! the 32-byte request key followed by the big-endian position among identical requests, so
//! the nth identical request is one point lookup and the cassette stays flat as it grows.
//!
//! Recording opens the directory itself and holds an exclusive lock on `graph-vcr.lock` beside
//! sled's files (sled allows one process per database; our lock exists to name the holder).
//! Replay never writes to the directory: sled writes when it opens a database, so replay opens
//! a private copy in the system temporary directory, removed when the store is dropped. A
//! directory of JSON exports (see `export`) is imported into such a private copy instead.
//!
//! Record mode writes through the store's [`recorder`] thread, which group-commits.

mod compact;
mod files;
pub mod manifest;
mod packing;
mod recorder;
mod records;

pub use compact::{Compacted, compact_dir};
pub use files::PrivateCopy;
pub use records::Cassette;

use crate::key::Key;
pub use files::{Scratch, scratch_path};
use files::{
    copy_dir, describe_holder, open_sled, remove_stale_copies, take_lock, waiting_out_lock,
};
use recorder::Recorder;
use records::record_key;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

const LOCK_FILE: &str = "graph-vcr.lock";
/// The default journal file, kept beside the database (see `journal`). Not part of a cassette:
/// replay's private copy leaves it out.
pub const JOURNAL_FILE: &str = "journal.jsonl";
const TREE_PREFIX: &str = "cassette:";
/// Per-cassette metadata lives under this key. Record keys are exactly 36 bytes, so a key of
/// another length can never collide with one, and iteration skips it by length.
const META_KEY: &[u8] = b"meta";

/// Errors of the cassette store. Every message names the directory or cassette involved.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error(
        "cassette directory {dir} is in use by another graph-vcr process ({holder}); sled allows one \
         process per database. Stop that process, or pass another --cassettes directory"
    )]
    Locked { dir: PathBuf, holder: String },
    #[error("cassette directory {dir} does not exist (record into it first, or check --cassettes)")]
    Missing { dir: PathBuf },
    #[error("{dir} is not a graph-vcr cassette directory: {reason}")]
    NotACassetteDir { dir: PathBuf, reason: String },
    #[error("cassette directory {dir}: {source}")]
    Io {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cassette database in {dir}: {source}")]
    Sled {
        dir: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("cassette {cassette}: record {key} is unreadable: {source}")]
    Corrupt {
        cassette: String,
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cassette {cassette}: cannot encode a record: {source}")]
    Encode {
        cassette: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("audit mode has no cassette store")]
    NoStore,
    #[error(
        "invalid cassette name {0:?}: use 1 to 100 letters, digits, '.', '_' or '-', not starting with '.'"
    )]
    BadName(String),
}

/// A validated cassette name: safe as a file or tree name anywhere. Shared, not copied: every
/// request carries one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CassetteName(std::sync::Arc<str>);

impl CassetteName {
    pub fn new(name: &str) -> Result<Self, StoreError> {
        let ok = !name.is_empty()
            && name.len() <= 100
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(std::sync::Arc::from(name)))
        } else {
            Err(StoreError::BadName(name.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `other` is a clone of this very name: a pointer comparison, for a fast path
    /// before a lookup by name (`false` says nothing about the names' text).
    pub fn is_same(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::str::FromStr for CassetteName {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl std::fmt::Display for CassetteName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `names` sorted closest to `name` first (edit distance, then name), for "did you mean".
pub fn closest<'a>(name: &str, names: &'a [CassetteName]) -> Vec<&'a CassetteName> {
    let mut ranked: Vec<(usize, &CassetteName)> = names
        .iter()
        .map(|n| (edit_distance(name, n.as_str()), n))
        .collect();
    ranked.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.as_str().cmp(b.1.as_str())));
    ranked.into_iter().map(|(_, n)| n).collect()
}

/// Levenshtein distance over characters, for short names (at most 100 characters or so).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// "a, b, c" (closest to `name` first), or "none", for messages.
pub fn listing(name: &str, names: &[CassetteName]) -> String {
    if names.is_empty() {
        return "none".into();
    }
    closest(name, names)
        .iter()
        .map(|n| n.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// How to open a cassette directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Open in place, create if missing, lock exclusively (record, auto).
    ReadWrite,
    /// Open a private copy; the directory itself is never written (replay).
    ReadOnly,
}

/// An open cassette directory.
pub struct Store {
    /// Record mode's writer (read-write stores only). First, so that dropping the store makes
    /// every queued record durable before the database and the lock go.
    recorder: Option<Recorder>,
    db: sled::Db,
    dir: PathBuf,
    /// Held for the store's lifetime; the OS releases the lock when it closes.
    _lock: Option<File>,
    /// The recordings per cassette the directory's manifest promises (see `manifest`).
    expected: std::collections::BTreeMap<String, usize>,
    /// The private copy replay works in, removed when its last store is dropped.
    private_copy: Option<Arc<PrivateCopy>>,
}

impl Store {
    fn assemble(
        db: sled::Db,
        dir: &Path,
        lock: Option<File>,
        private_copy: Option<Arc<PrivateCopy>>,
    ) -> Self {
        Self {
            recorder: None,
            db,
            dir: dir.to_path_buf(),
            _lock: lock,
            expected: manifest::read(dir),
            private_copy,
        }
    }

    /// Opens the cassette directory `dir`.
    pub fn open(dir: &Path, access: Access) -> Result<Self, StoreError> {
        let io = |source| StoreError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        match access {
            Access::ReadWrite => {
                fs::create_dir_all(dir).map_err(io)?;
                let lock = take_lock(dir)?;
                let db = open_sled(dir, dir)?;
                let recorder = Recorder::start(db.clone(), dir.to_path_buf()).map_err(io)?;
                Ok(Self {
                    recorder: Some(recorder),
                    ..Self::assemble(db, dir, Some(lock), None)
                })
            }
            Access::ReadOnly => {
                if !dir.is_dir() {
                    return Err(StoreError::Missing {
                        dir: dir.to_path_buf(),
                    });
                }
                if !dir.join("db").is_file() {
                    return Err(StoreError::NotACassetteDir {
                        dir: dir.to_path_buf(),
                        reason: "no sled database (db) in it".into(),
                    });
                }
                // A recorder mid-write would give us a torn copy; a shared lock waits for none
                // and fails clearly instead. Only an existing lock file is opened: replay must
                // not create files in the directory.
                let shared = match File::open(dir.join(LOCK_FILE)) {
                    Ok(f) => {
                        if f.try_lock_shared().is_err() {
                            return Err(StoreError::Locked {
                                dir: dir.to_path_buf(),
                                holder: describe_holder(dir),
                            });
                        }
                        Some(f)
                    }
                    Err(_) => None,
                };
                let copy = PrivateCopy(scratch_path(Scratch::Replay));
                copy_dir(dir, &copy.0).map_err(|source| StoreError::Io {
                    dir: dir.to_path_buf(),
                    source: std::io::Error::new(
                        source.kind(),
                        format!(
                            "copying to private replay copy {}: {source}",
                            copy.0.display()
                        ),
                    ),
                })?;
                drop(shared);
                remove_stale_copies();
                // On failure `copy` is dropped, which removes it.
                let db = open_sled(&copy.0, dir)?;
                Ok(Self::assemble(db, dir, None, Some(Arc::new(copy))))
            }
        }
    }

    /// An empty private database for the cassettes of `dir` (a directory of JSON exports,
    /// which `export::open` imports into it), removed when the store is dropped.
    pub fn private(dir: &Path) -> Result<Self, StoreError> {
        remove_stale_copies();
        let copy = PrivateCopy(scratch_path(Scratch::Replay));
        let db = open_sled(&copy.0, dir)?;
        Ok(Self::assemble(db, dir, None, Some(Arc::new(copy))))
    }

    /// Closes a replay store's database, keeping its private copy. A store that
    /// works in the cassette directory itself (record) is handed back: it has no copy to reopen.
    ///
    /// sled 0.34 keeps every page it has read in memory, whatever its cache capacity says;
    /// closing the database is the only way to release them. Every `Cassette` of this store
    /// must be dropped first, or the reopened database finds sled's file lock still held.
    pub fn close(self) -> Result<ClosedStore, Box<Self>> {
        let Some(copy) = self.private_copy.clone() else {
            return Err(Box::new(self));
        };
        let dir = self.dir.clone();
        drop(self);
        Ok(ClosedStore { dir, copy })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the store is a scratch database of replay's (a private copy, or the import of
    /// a directory of exports): removed with the store, so a crash mid-write loses nothing.
    pub fn is_scratch(&self) -> bool {
        self.private_copy.is_some()
    }

    /// Removes cassette `name`. Returns whether it existed.
    pub fn drop_cassette(&self, name: &CassetteName) -> Result<bool, StoreError> {
        self.db
            .drop_tree(format!("{TREE_PREFIX}{name}"))
            .map_err(|source| self.sled_err(source))
    }

    /// The recordings per cassette the manifest promised when the store was opened.
    pub fn expected(&self) -> &std::collections::BTreeMap<String, usize> {
        &self.expected
    }

    /// Cassettes the manifest promises that the database no longer has at all (a truncated or
    /// replaced database opens empty), as damage messages.
    pub fn missing(&self) -> Vec<String> {
        self.missing_of(|_| true)
    }

    /// [`Store::missing`] for the cassettes `wanted` accepts (by name).
    pub fn missing_of(&self, wanted: impl Fn(&str) -> bool) -> Vec<String> {
        let names = self.cassette_names();
        self.expected
            .iter()
            .filter(|(name, n)| **n > 0 && wanted(name))
            .filter(|(name, _)| !names.iter().any(|c| c.as_str() == name.as_str()))
            .filter_map(|(name, _)| manifest::shortfall(&self.expected, name, 0))
            .collect()
    }

    /// Records how many recordings each cassette holds now, in the directory's manifest.
    /// Call after [`Store::flush_blocking`]. Only a store that owns its directory (record,
    /// auto, the cassette tools) writes one; replay never writes.
    pub fn write_manifest(&self) -> Result<(), StoreError> {
        if self._lock.is_none() {
            return Ok(());
        }
        let mut counts = std::collections::BTreeMap::new();
        for name in self.cassette_names() {
            counts.insert(name.to_string(), self.cassette(&name)?.len());
        }
        manifest::write(&self.dir, counts).map_err(|source| StoreError::Io {
            dir: self.dir.clone(),
            source,
        })
    }

    /// Makes every write so far durable, blocking the calling thread (for tools, not requests).
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.db
            .flush()
            .map(|_| ())
            .map_err(|source| self.sled_err(source))
    }

    /// The cassette `name`, created empty if it does not exist.
    pub fn cassette(&self, name: &CassetteName) -> Result<Cassette, StoreError> {
        let tree = self
            .db
            .open_tree(format!("{TREE_PREFIX}{name}"))
            .map_err(|source| self.sled_err(source))?;
        Ok(Cassette {
            tree,
            name: name.clone(),
        })
    }

    /// Names of the cassettes in this directory.
    pub fn cassette_names(&self) -> Vec<CassetteName> {
        self.db
            .tree_names()
            .iter()
            .filter_map(|n| {
                std::str::from_utf8(n)
                    .ok()?
                    .strip_prefix(TREE_PREFIX)
                    .map(str::to_string)
            })
            .filter_map(|n| CassetteName::new(&n).ok())
            .collect()
    }

    /// Stores a recorded interaction (serialized and scrubbed by the caller) at its key and
    /// position in `cassette`, and returns once it is durable. Concurrent calls share an fsync
    /// (see [`recorder`]).
    pub async fn record(
        &self,
        cassette: &Cassette,
        key: &Key,
        position: u32,
        record: Vec<u8>,
    ) -> Result<(), StoreError> {
        match &self.recorder {
            Some(recorder) => {
                recorder
                    .write(cassette, record_key(key, position), packing::pack(record))
                    .await
            }
            None => Err(StoreError::Io {
                dir: self.dir.clone(),
                source: std::io::Error::other("opened read-only: nothing can be recorded"),
            }),
        }
    }

    /// Stops recording: every record already handed over is made durable first, later ones
    /// are refused. For shutdown; blocks until the recorder thread is done.
    pub fn stop_recording(&self) {
        if let Some(recorder) = &self.recorder {
            recorder.stop();
        }
    }

    fn sled_err(&self, source: sled::Error) -> StoreError {
        StoreError::Sled {
            dir: self.dir.clone(),
            source,
        }
    }
}

/// A private copy with its database closed: what replay keeps once its index is built, so
/// that sled's memory is released and the copy can be opened again when a stored request
/// is needed (a miss's nearest recording, the report's unplayed list).
#[derive(Debug)]
pub struct ClosedStore {
    dir: PathBuf,
    copy: Arc<PrivateCopy>,
}

impl ClosedStore {
    pub fn open(&self) -> Result<Store, StoreError> {
        // Nobody else can hold this private copy's lock: only the store just closed has.
        let db = waiting_out_lock(|| open_sled(&self.copy.0, &self.dir))?;
        Ok(Store::assemble(
            db,
            &self.dir,
            None,
            Some(Arc::clone(&self.copy)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::compact::has_blobs;
    use super::*;

    fn tempdir() -> Result<tempfile::TempDir, StoreError> {
        tempfile::tempdir().map_err(|source| StoreError::Io {
            dir: PathBuf::from("tempdir"),
            source,
        })
    }

    /// Whether any file under `dir` holds `needle`.
    fn holds(dir: &Path, needle: &[u8]) -> std::io::Result<bool> {
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let found = if path.is_dir() {
                holds(&path, needle)?
            } else {
                fs::read(&path)?.windows(needle.len()).any(|w| w == needle)
            };
            if found {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A distinct made-up request key per `i`.
    fn key(i: u32) -> Key {
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&i.to_be_bytes());
        Key(key)
    }

    #[test]
    fn closest_names_first() -> Result<(), StoreError> {
        let names = ["onboarding", "example", "exams"]
            .iter()
            .map(|n| CassetteName::new(n))
            .collect::<Result<Vec<_>, _>>()?;
        assert_eq!(listing("exmaple", &names), "example, exams, onboarding");
        assert_eq!(listing("x", &[]), "none");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        Ok(())
    }

    #[test]
    fn cassette_names() {
        for ok in ["default", "onboarding", "suite-1.v2", "A_b"] {
            assert!(CassetteName::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "..",
            "../x",
            "a/b",
            "a\\b",
            ".hidden",
            "a b",
            &"x".repeat(101),
        ] {
            assert!(CassetteName::new(bad).is_err(), "{bad}");
        }
    }

    /// Replay's index closes and reopens its private copy over and over (src/index.rs), and
    /// every reopen must see all the records. (sled can hold the file lock a moment after a
    /// database is dropped, which `ClosedStore::open` waits out; that race was seen only with
    /// 100,000 recordings, in `examples/replay_memory.rs`, not at this size.)
    #[test]
    fn a_closed_private_copy_reopens_at_once_again_and_again() -> Result<(), StoreError> {
        let tmp = tempdir()?;
        let dir = tmp.path().join("cassettes");
        let name = CassetteName::new("c")?;
        {
            let store = Store::open(&dir, Access::ReadWrite)?;
            let cassette = store.cassette(&name)?;
            for i in 0..2_000u32 {
                cassette.put(&key(i), 0, vec![b'x'; 1_000])?;
            }
            store.flush_blocking()?;
        }
        let mut store = Store::open(&dir, Access::ReadOnly)?;
        for _ in 0..40 {
            let read = store.cassette(&name)?.tree.iter().count();
            assert_eq!(read, 2_000);
            let closed = store.close().map_err(|_| StoreError::NoStore)?;
            store = closed.open()?;
        }
        Ok(())
    }

    /// The end of a record run (`compact_dir`): what is dead (here every record's first
    /// version, overwritten) leaves the disk, every record reads as it was written last,
    /// nothing is left of the work, and the directory is opened afresh for it: the run's own
    /// store, dropped a moment before, is waited out. (Not the log's size: how sled lays out
    /// a rewritten log varies with its threads' timing, and CI once saw it grow.)
    #[test]
    fn compacting_a_directory_keeps_every_record_and_drops_the_dead_ones()
    -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempdir()?;
        let dir = tmp.path().join("cassettes");
        let name = CassetteName::new("c")?;
        {
            let store = Store::open(&dir, Access::ReadWrite)?;
            let cassette = store.cassette(&name)?;
            for i in 0..2_000u32 {
                cassette.put(&key(i), 0, format!("old-version-{i:0>988}").into_bytes())?;
            }
            store.flush_blocking()?;
            for i in 0..2_000u32 {
                cassette.put(&key(i), 0, vec![b'b'; 1_000])?;
            }
            store.flush_blocking()?;
        }
        let before = fs::metadata(dir.join("db"))?.len();
        assert!(!has_blobs(&dir));
        let dead = b"old-version-";
        assert!(holds(&dir, dead)?, "the overwritten values are not on disk");
        let done = compact_dir(&dir)?.ok_or("left alone")?;
        assert_eq!(done.before, before);
        assert_eq!(done.after, fs::metadata(dir.join("db"))?.len());
        assert!(
            !holds(&dir, dead)?,
            "compaction left overwritten values on disk"
        );
        assert!(!dir.join(compact::NEW_DIR).exists());
        let store = Store::open(&dir, Access::ReadOnly)?;
        let cassette = store.cassette(&name)?;
        assert_eq!(cassette.tree.len(), 2_000);
        for i in 0..2_000u32 {
            let stored = cassette.tree.get(record_key(&key(i), 0));
            let stored = stored.map_err(|e| store.sled_err(e))?.unwrap_or_default();
            let record = packing::unpack(&stored).map(|r| r.into_owned());
            assert_eq!(
                record.as_deref().ok(),
                Some(&[b'b'; 1_000][..]),
                "record {i}"
            );
        }
        Ok(())
    }

    /// What a compaction killed midway leaves (its half-written database) is not copied into
    /// replay's private copy, which would pay for it at every start, and the next compaction
    /// removes it.
    #[test]
    fn an_interrupted_compaction_leaves_nothing_replay_copies()
    -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempdir()?;
        let dir = tmp.path().join("cassettes");
        let name = CassetteName::new("c")?;
        {
            let store = Store::open(&dir, Access::ReadWrite)?;
            store.cassette(&name)?.put(&key(7), 0, b"{}".to_vec())?;
            store.flush_blocking()?;
        }
        let left = dir.join(compact::NEW_DIR);
        fs::create_dir_all(&left)?;
        fs::write(left.join("db"), vec![0u8; 1 << 20])?;
        {
            let store = Store::open(&dir, Access::ReadOnly)?;
            let copy = store
                .private_copy
                .as_ref()
                .ok_or("replay works on a copy")?;
            assert!(copy.0.join("db").exists());
            assert!(!copy.0.join(compact::NEW_DIR).exists());
            assert_eq!(store.cassette(&name)?.tree.len(), 1);
        }
        compact_dir(&dir)?.ok_or("left alone")?;
        assert!(!left.exists());
        let store = Store::open(&dir, Access::ReadOnly)?;
        assert_eq!(store.cassette(&name)?.tree.len(), 1);
        Ok(())
    }

    /// A directory whose log keeps pages in `blobs/` (a recording too large for a segment) is
    /// left alone by the automatic compaction: its swap would move the blobs in after the log.
    #[test]
    fn a_directory_with_large_recordings_is_not_compacted() -> Result<(), Box<dyn std::error::Error>>
    {
        let tmp = tempdir()?;
        let dir = tmp.path().join("cassettes");
        {
            let store = Store::open(&dir, Access::ReadWrite)?;
            let cassette = store.cassette(&CassetteName::new("c")?)?;
            // Noise that deflate cannot shrink under sled's 128 KiB page limit.
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            let large = (0..400_000)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x.to_le_bytes()[0]
                })
                .collect();
            cassette.put(&key(1), 0, large)?;
            store.flush_blocking()?;
        }
        assert!(has_blobs(&dir));
        let before = fs::metadata(dir.join("db"))?.modified()?;
        assert!(compact_dir(&dir)?.is_none());
        assert_eq!(fs::metadata(dir.join("db"))?.modified()?, before);
        Ok(())
    }

    /// Record mode's writes: many at once all land and are acknowledged; stopping makes what
    /// was handed over durable and refuses the rest with a message that says so; a store opened
    /// read-only cannot record at all.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_land_until_recording_stops_and_are_refused_after() -> Result<(), StoreError> {
        let tmp = tempdir()?;
        let dir = tmp.path().join("cassettes");
        let name = CassetteName::new("c")?;
        let store = Arc::new(Store::open(&dir, Access::ReadWrite)?);
        let cassette = Arc::new(store.cassette(&name)?);
        let mut writes = tokio::task::JoinSet::new();
        for i in 0..200u32 {
            let (store, cassette) = (Arc::clone(&store), Arc::clone(&cassette));
            writes.spawn(async move { store.record(&cassette, &key(i), 1, vec![b'r'; 500]).await });
        }
        while let Some(written) = writes.join_next().await {
            written.map_err(|e| StoreError::Io {
                dir: dir.clone(),
                source: std::io::Error::other(e),
            })??;
        }
        store.stop_recording();
        let refused = store.record(&cassette, &key(999), 1, vec![b'r'; 10]).await;
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.to_string().contains("recorder has stopped")),
            "{refused:?}"
        );
        assert_eq!(cassette.tree.len(), 200);
        drop(cassette);
        drop(store);

        let store = Store::open(&dir, Access::ReadOnly)?;
        let cassette = store.cassette(&name)?;
        assert_eq!(cassette.tree.len(), 200);
        let refused = store.record(&cassette, &key(1), 1, vec![b'r'; 10]).await;
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.to_string().contains("read-only")),
            "{refused:?}"
        );
        Ok(())
    }
}
