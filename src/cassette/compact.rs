//! Compacting a cassette directory: its database rewritten into a new file that holds only
//! what is live, so that values overwritten or removed (a sanitized recording, a removed
//! cassette) are gone from the disk and not just from the database. sled 0.34 keeps old
//! values in its log until it happens to reuse the space, and `cassette sanitize` promises a
//! clean directory.
//!
//! The new database is written whole beside the old one, under the directory's lock, and only
//! then moved in: old snapshots first (sled rebuilds from the log alone), then the log, then
//! the new snapshots, so that an interruption between steps leaves a log sled can open (this
//! order is reasoned; no test kills a compaction midway).
//!
//! `cassette import` and a record run that recorded compact their directory as they end
//! ([`compact_dir`]): sled 0.34 leaves about a third of a log written in one large batch (an
//! import's) as free segments (100,000 recordings: 222 of 625), and rewrites every free
//! segment each time a database is opened. Replay opens its private copy once before it
//! listens and again every few thousand records of its scan, so a compacted cassette answers
//! its first request and finishes its scan in half the time (`docs/PERFORMANCE.md`, session
//! 13). A record run's log gains less but still gains (one written fresh opens 7–22% faster
//! once compacted, one that replaced every recording of a cassette 39–56%:
//! `examples/sled_layout`, `docs/PERFORMANCE.md` session 14).

use super::files::{open_sled, waiting_out_lock};
use super::{Store, StoreError};
use std::fs;
use std::path::Path;

/// Where the new database is written, inside the cassette directory. What an interrupted
/// compaction leaves there is removed by the next one and never copied for replay
/// (`files::copy_dir`).
pub(super) const NEW_DIR: &str = ".graph-vcr-compacting";

impl Store {
    /// Rewrites the database into a new file with only its live data and reopens it. Only a
    /// store that owns its directory (opened read-write) can be compacted.
    pub fn compact(mut self) -> Result<Store, StoreError> {
        let dir = self.dir.clone();
        let io = |source| StoreError::Io {
            dir: dir.clone(),
            source,
        };
        if self._lock.is_none() {
            return Err(io(std::io::Error::other(
                "a read-only store cannot be compacted",
            )));
        }
        let new = dir.join(NEW_DIR);
        if new.exists() {
            fs::remove_dir_all(&new).map_err(io)?;
        }
        if let Err(e) = write_copy(&self.db, &new, &dir) {
            // A full disk is the likely cause: give the half-written copy's space back.
            drop(fs::remove_dir_all(&new));
            return Err(e);
        }
        // Every queued record is durable before the old database goes.
        if let Some(recorder) = self.recorder.take() {
            recorder.stop();
        }
        self.db.flush().map_err(|source| StoreError::Sled {
            dir: dir.clone(),
            source,
        })?;
        swap_in(&new, &dir).map_err(io)?;
        let lock = self._lock.take();
        drop(self);
        let db = waiting_out_lock(|| open_sled(&dir, &dir))?;
        let recorder = super::Recorder::start(db.clone(), dir.clone()).map_err(io)?;
        Ok(Store {
            recorder: Some(recorder),
            ..Store::assemble(db, &dir, lock, None)
        })
    }
}

/// What [`compact_dir`] did: the log's size before and after, and how long it took.
#[derive(Debug, Clone, Copy)]
pub struct Compacted {
    pub before: u64,
    pub after: u64,
    pub took: std::time::Duration,
}

/// Whether sled keeps pages of `dir` outside its log, in `blobs/` (a page over 128 KiB: a
/// large recording). Compaction moves that directory in after the log, so an interruption
/// between the two would leave the new log without its blobs; the automatic compactions
/// (the end of a record run, an import) leave such a directory alone.
pub(super) fn has_blobs(dir: &Path) -> bool {
    fs::read_dir(dir.join("blobs")).is_ok_and(|mut entries| entries.next().is_some())
}

/// Compacts the cassette directory `dir` once nothing else has it open: for the end of a run
/// that recorded. Waits a little for the file locks of the run's own store, which sled's
/// threads let go of a moment after it is dropped; a lock held longer (another recorder) is
/// an error, and the directory is left as it was. `None`: left alone, it [`has_blobs`].
pub fn compact_dir(dir: &Path) -> Result<Option<Compacted>, StoreError> {
    if has_blobs(dir) {
        return Ok(None);
    }
    let started = std::time::Instant::now();
    let size = |p: &Path| fs::metadata(p.join("db")).map_or(0, |m| m.len());
    let before = size(dir);
    let store = waiting_out_lock(|| Store::open(dir, super::Access::ReadWrite))?;
    // `compact` made the new log durable before moving it in.
    drop(store.compact()?);
    Ok(Some(Compacted {
        before,
        after: size(dir),
        took: started.elapsed(),
    }))
}

/// Writes every tree of `db` into a new database at `new`, durably.
fn write_copy(db: &sled::Db, new: &Path, dir: &Path) -> Result<(), StoreError> {
    let fresh = open_sled(new, dir)?;
    let sled_err = |source| StoreError::Sled {
        dir: dir.to_path_buf(),
        source,
    };
    copy_trees(db, &fresh).map_err(sled_err)?;
    fresh.flush().map_err(sled_err)?;
    Ok(())
}

fn copy_trees(from: &sled::Db, to: &sled::Db) -> Result<(), sled::Error> {
    for kv in from.iter() {
        let (k, v) = kv?;
        to.insert(k, v)?;
    }
    for name in from.tree_names() {
        if name == from.name() {
            continue;
        }
        let (source, target) = (from.open_tree(&name)?, to.open_tree(&name)?);
        for kv in source.iter() {
            let (k, v) = kv?;
            target.insert(k, v)?;
        }
    }
    Ok(())
}

/// sled's files in a database directory other than its log: its snapshots.
fn snapshots(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    Ok(fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("snap."))
        })
        .collect())
}

fn swap_in(new: &Path, dir: &Path) -> std::io::Result<()> {
    for old in snapshots(dir)? {
        fs::remove_file(old)?;
    }
    fs::rename(new.join("db"), dir.join("db"))?;
    for snap in snapshots(new)? {
        if let Some(name) = snap.file_name() {
            fs::rename(&snap, dir.join(name))?;
        }
    }
    if new.join("conf").exists() {
        fs::rename(new.join("conf"), dir.join("conf"))?;
    }
    if dir.join("blobs").exists() {
        fs::remove_dir_all(dir.join("blobs"))?;
    }
    if new.join("blobs").exists() {
        fs::rename(new.join("blobs"), dir.join("blobs"))?;
    }
    fs::remove_dir_all(new)
}
