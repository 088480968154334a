//! Journal: one JSON line per request, for audits and for `verify`.
//!
//! Each line records when, which cassette, which action, the key, the mode, what graph-vcr did
//! (the outcome), the status, and the contract deviations. Lines are written by a background
//! thread so a request never waits on the disk for its journal line; the thread drains and
//! flushes on [`Journal::close`]. Everything written passes the redaction gate first.
//!
//! A request appends its line to a shared buffer and, as a rule, does not wake the writer. The
//! first line into an empty buffer wakes it; it then lets lines gather for [`WRITE_EVERY`] (or
//! until the buffer passes [`WAKE_AT`]) and writes them in one go, and sleeps while there is
//! nothing to write. Waking it per line cost a futex call and a thread switch per request, a
//! fifth of what forwarding cost under load (docs/PERFORMANCE.md).

use crate::check::Deviation;
use crate::redact;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a line may wait in memory before the writer puts it in the file.
pub const WRITE_EVERY: Duration = Duration::from_millis(20);
/// Buffered bytes at which a request wakes the writer early, bounding the memory held.
pub const WAKE_AT: usize = 256 * 1024;

/// Where the journal goes.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct JournalOptions {
    /// Append one JSON line per request to FILE.
    ///
    /// Default: `journal.jsonl` in the cassette directory for record, auto and audit; none for
    /// replay, which never writes into the cassette directory. Example: `--journal out/run.jsonl`.
    #[arg(long, env = "GRAPH_VCR_JOURNAL", value_name = "FILE")]
    pub journal: Option<PathBuf>,
}

/// One journal line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub time: String,
    pub cassette: String,
    pub action: String,
    pub method: String,
    pub path: String,
    /// Hex key, absent when the request was turned away before keying.
    pub key: Option<String>,
    pub mode: String,
    /// `replayed`, `recorded`, `forwarded`, `miss`, `rejected`, `upstream-error`, `error`.
    pub outcome: String,
    pub status: u16,
    /// The recording served or written (replayed, recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u32>,
    /// What graph-vcr answered when it answered itself (a miss's diff, a rejection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub deviations: Vec<Deviation>,
    /// Deviations past the per-request cap, counted but not listed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub deviations_omitted: usize,
    /// How long graph-vcr took over the request, from its head to its answer.
    #[serde(default)]
    pub elapsed_ms: f64,
    /// A `$batch` (`{"batch": 1}`) or one of its items (`{"batch": 1, "item": "2"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<crate::exchange::BatchRef>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// An open journal file.
pub struct Journal {
    path: PathBuf,
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<std::io::Result<()>>>>,
}

/// What requests and the writer share: lines not yet written, and whether the journal is
/// closing.
#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
}

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    closed: bool,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Journal {
    /// Opens `path` for appending, creating it (and its directory) if needed.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let shared = Arc::new(Shared::default());
        let writer = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("graph-vcr-journal".into())
                .spawn(move || write_lines(file, &shared))?
        };
        Ok(Self {
            path: path.to_path_buf(),
            shared,
            writer: Mutex::new(Some(writer)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues one line, through the redaction gate with the exchange's `secrets`. Never
    /// blocks on the disk.
    pub fn write(&self, entry: &Entry, secrets: &redact::Secrets) {
        let Ok(json) = serde_json::to_vec(entry) else {
            return;
        };
        let line = secrets.scrub(json);
        let mut pending = self.shared.pending();
        if pending.closed {
            return;
        }
        let before = pending.lines.len();
        pending.lines.extend_from_slice(&line);
        pending.lines.push(b'\n');
        // Wake the writer for the first line of a batch, and once more if the batch crosses the
        // mark; not on every line.
        if before == 0 || (before < WAKE_AT && pending.lines.len() >= WAKE_AT) {
            self.shared.wake.notify_one();
        }
    }

    /// Writes out every queued line and flushes. Later writes are dropped.
    pub fn close(&self) -> std::io::Result<()> {
        self.shared.pending().closed = true;
        self.shared.wake.notify_one();
        match self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(handle) => handle
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("journal writer panicked"))),
            None => Ok(()),
        }
    }
}

/// The writer thread: sleeps until a line comes, lets lines gather for [`WRITE_EVERY`] (or
/// up to [`WAKE_AT`] bytes), and writes them; on close, writes the rest and returns. A failed write ends it, and the journal
/// stops taking lines rather than gather them in memory for nobody; [`Journal::close`]
/// returns the error.
fn write_lines(file: File, shared: &Shared) -> std::io::Result<()> {
    let result = write_until_closed(file, shared);
    let mut pending = shared.pending();
    pending.closed = true;
    pending.lines = Vec::new();
    result
}

fn write_until_closed(mut file: File, shared: &Shared) -> std::io::Result<()> {
    let mut out = Vec::new();
    loop {
        let closed = {
            let mut pending = shared.pending();
            while pending.lines.is_empty() && !pending.closed {
                pending = shared.wake.wait(pending).unwrap_or_else(|p| p.into_inner());
            }
            if !pending.closed && pending.lines.len() < WAKE_AT {
                pending = shared
                    .wake
                    .wait_timeout(pending, WRITE_EVERY)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            // Swap buffers, so requests go on appending while this one is written.
            std::mem::swap(&mut out, &mut pending.lines);
            pending.closed
        };
        if !out.is_empty() {
            file.write_all(&out)?;
            out.clear();
        }
        if closed {
            return file.flush();
        }
    }
}

/// Reads a journal back as JSON values (for tools and tests). Lines that do not parse are
/// returned as errors with their line number, not skipped.
pub fn read(path: &Path) -> std::io::Result<Vec<Result<serde_json::Value, String>>> {
    read_as(path)
}

/// Reads a journal back as entries (for `verify`).
pub fn read_entries(path: &Path) -> std::io::Result<Vec<Result<Entry, String>>> {
    read_as(path)
}

fn read_as<T: serde::de::DeserializeOwned>(path: &Path) -> std::io::Result<Vec<Result<T, String>>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| format!("{} line {}: {e}", path.display(), i + 1))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn entry(i: usize) -> Entry {
        Entry {
            time: "2026-11-29T00:00:00Z".into(),
            cassette: "c".into(),
            action: "deviceEnrollmentConfiguration.assign".into(),
            method: "POST".into(),
            path: format!("/v1.0/{i}"),
            key: None,
            mode: "record".into(),
            outcome: "recorded".into(),
            status: 204,
            position: Some(i as u32),
            message: None,
            deviations: Vec::new(),
            deviations_omitted: 0,
            elapsed_ms: 0.0,
            batch: None,
        }
    }

    #[test]
    fn every_line_from_every_thread_is_in_the_file_after_close() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("j.jsonl");
        let journal = Journal::open(&path)?;
        std::thread::scope(|s| {
            for t in 0..4 {
                let journal = &journal;
                s.spawn(move || {
                    (0..2_000).for_each(|i| {
                        journal.write(&entry(t * 2_000 + i), &redact::Secrets::default())
                    })
                });
            }
        });
        journal.close()?;
        journal.write(&entry(99_999), &redact::Secrets::default()); // after close: dropped, not an error
        let mut positions: Vec<u64> = read(&path)?
            .into_iter()
            .map(|l| l.ok().and_then(|v| v["position"].as_u64()))
            .collect::<Option<_>>()
            .ok_or_else(|| std::io::Error::other("a line did not parse"))?;
        positions.sort_unstable();
        assert_eq!(positions, (0..8_000).collect::<Vec<u64>>());
        Ok(())
    }

    #[test]
    fn lines_reach_the_file_while_the_journal_is_open() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("j.jsonl");
        let journal = Journal::open(&path)?;
        // Each line comes after the writer has been idle a while (asleep, with nothing to
        // write): the line itself must get it going.
        for n in 1..=2 {
            std::thread::sleep(Duration::from_millis(100));
            journal.write(&entry(n), &redact::Secrets::default());
            let deadline = Instant::now() + Duration::from_secs(5);
            while read(&path)?.len() < n && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            assert_eq!(read(&path)?.len(), n, "line {n} was not written while open");
        }
        journal.close()
    }

    #[test]
    fn a_journal_that_cannot_be_written_says_so_on_close_and_stops_gathering() {
        let Ok(journal) = Journal::open(Path::new("/dev/full")) else {
            return; // no /dev/full here: nothing to test
        };
        for i in 0..1_000 {
            journal.write(&entry(i), &redact::Secrets::default());
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !journal.shared.pending().closed && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        journal.write(&entry(1_000), &redact::Secrets::default());
        assert!(
            journal.shared.pending().lines.is_empty(),
            "lines gathered after the writer failed"
        );
        assert!(journal.close().is_err(), "a failed write was not reported");
    }
}
