//! The cassette directory on disk: opening sled, the lock file that names its holder, and
//! replay's private copy of the directory.

use super::{JOURNAL_FILE, LOCK_FILE, StoreError};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// A replay store's private copy of a cassette directory, removed when dropped.
#[derive(Debug)]
pub struct PrivateCopy(pub(super) PathBuf);

impl Drop for PrivateCopy {
    fn drop(&mut self) {
        // sled's I/O threads may still write a file a moment after its database is dropped,
        // bringing the directory back: look again, briefly. Whatever outlives even that is
        // removed by the next replay (`remove_stale_copies`).
        for _ in 0..5 {
            let _ = fs::remove_dir_all(&self.0);
            std::thread::sleep(std::time::Duration::from_millis(10));
            if !self.0.exists() {
                return;
            }
        }
    }
}

pub(super) fn open_sled(path: &Path, dir: &Path) -> Result<sled::Db, StoreError> {
    sled::Config::new()
        .path(path)
        // Small: lookups are point reads, and replay must stay lean with large cassettes.
        .cache_capacity(16 * 1024 * 1024)
        .open()
        .map_err(|source| match source {
            // sled's own lock is the backstop behind ours (another tool, an older graph-vcr).
            sled::Error::Io(ref e) if e.to_string().contains("could not acquire lock") => {
                StoreError::Locked {
                    dir: dir.to_path_buf(),
                    holder: e.to_string(),
                }
            }
            sled::Error::Io(e) => StoreError::Io {
                dir: dir.to_path_buf(),
                source: e,
            },
            sled::Error::Corruption { .. } | sled::Error::Unsupported(_) => {
                StoreError::NotACassetteDir {
                    dir: dir.to_path_buf(),
                    reason: source.to_string(),
                }
            }
            other => StoreError::Sled {
                dir: dir.to_path_buf(),
                source: other,
            },
        })
}

/// Calls `open` until it no longer fails as locked, for at most 10 s. sled's I/O threads let
/// go of a database's file lock a moment after the database is dropped, so one opened again
/// right after (a private copy between chunks of the scan, a directory just compacted or
/// just recorded into) can find the lock still held; a lock held longer is the error.
pub(super) fn waiting_out_lock<T>(
    mut open: impl FnMut() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match open() {
            Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            other => return other,
        }
    }
}

pub(super) fn take_lock(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE);
    let io = |source| StoreError::Io {
        dir: dir.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    if file.try_lock().is_err() {
        return Err(StoreError::Locked {
            dir: dir.to_path_buf(),
            holder: describe_holder(dir),
        });
    }
    let who = format!(
        "pid {} since {}\n",
        std::process::id(),
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    );
    file.set_len(0).map_err(io)?;
    file.write_all(who.as_bytes()).map_err(io)?;
    Ok(file)
}

pub(super) fn describe_holder(dir: &Path) -> String {
    let path = dir.join(LOCK_FILE);
    let mut text = String::new();
    let _ = File::open(&path).and_then(|mut f| f.read_to_string(&mut text));
    let text = text.trim();
    if text.is_empty() {
        format!("lock held on {}", path.display())
    } else {
        format!("{text}, lock on {}", path.display())
    }
}

/// The kinds of scratch directory graph-vcr makes in the temporary directory: replay's
/// private copies, `textconv`'s, the wrapper's. Each is named by [`scratch_path`].
#[derive(Debug, Clone, Copy)]
pub enum Scratch {
    Replay,
    Textconv,
    Wrap,
}

impl Scratch {
    const ALL: [Scratch; 3] = [Scratch::Replay, Scratch::Textconv, Scratch::Wrap];

    fn prefix(self) -> &'static str {
        match self {
            Self::Replay => "graph-vcr-replay-",
            Self::Textconv => "graph-vcr-textconv-",
            Self::Wrap => "graph-vcr-wrap-",
        }
    }
}

/// A new scratch directory's path: its kind, this process's pid (so that a later process can
/// tell whether its owner is gone, see [`remove_stale_copies`]) and the time.
pub fn scratch_path(kind: Scratch) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("{}{}-{nanos}", kind.prefix(), std::process::id()))
}

/// Removes the scratch directories of graph-vcr processes that are gone (a replay killed with
/// SIGKILL cannot remove its copy; the next one does). A directory whose process still runs,
/// or whose owner cannot be told, is left alone.
pub(super) fn remove_stale_copies() {
    let tmp = std::env::temp_dir();
    let Ok(entries) = fs::read_dir(&tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = Scratch::ALL
            .iter()
            .find_map(|k| name.strip_prefix(k.prefix()))
        else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| pid != std::process::id() && is_gone(pid)) {
            match fs::remove_dir_all(entry.path()) {
                Ok(()) => tracing::debug!(dir = %entry.path().display(),
                    "removed the scratch directory of a graph-vcr process that is gone"),
                Err(e) => tracing::debug!(dir = %entry.path().display(), error = %e,
                    "could not remove a stale scratch directory"),
            }
        }
    }
}

/// Whether no process has this pid (so it cannot be using its directory).
#[cfg(unix)]
fn is_gone(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) with signal 0 sends nothing; it only asks whether the pid exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    !alive && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

#[cfg(not(unix))]
fn is_gone(_pid: u32) -> bool {
    false
}

/// Copies a cassette directory for replay: not its lock or journal, which are the original's,
/// nor what an interrupted compaction left (`compact::NEW_DIR`), which replay never reads.
pub(super) fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == LOCK_FILE || name == JOURNAL_FILE || name == super::compact::NEW_DIR {
            continue;
        }
        let ty = entry.file_type()?;
        if ty.is_dir() {
            copy_dir(&entry.path(), &to.join(&name))?;
        } else if ty.is_file() {
            fs::copy(entry.path(), to.join(&name))?;
        }
    }
    Ok(())
}
