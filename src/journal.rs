//! Journal: one JSON line per request, for audits and for `verify`.
//!
//! Each line records when, which cassette, which action, the key, the mode, what graph-vcr did
//! (the outcome), the status, and the contract deviations. Lines are written by a background
//! thread so a request never waits on the disk for its journal line; the thread drains and
//! flushes on [`Journal::close`]. Everything written passes the redaction scan first.

use crate::check::Deviation;
use crate::redact;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

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
}

/// An open journal file.
pub struct Journal {
    path: PathBuf,
    tx: Mutex<Option<Sender<Vec<u8>>>>,
    writer: Mutex<Option<JoinHandle<std::io::Result<()>>>>,
}

impl Journal {
    /// Opens `path` for appending, creating it (and its directory) if needed.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let (tx, rx) = channel();
        let writer = std::thread::Builder::new()
            .name("graph-vcr-journal".into())
            .spawn(move || write_lines(file, rx))?;
        Ok(Self {
            path: path.to_path_buf(),
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues one line. Never blocks on the disk.
    pub fn write(&self, entry: &Entry) {
        let Ok(json) = serde_json::to_vec(entry) else {
            return;
        };
        let mut line = redact::redact_bytes(&json).into_owned();
        line.push(b'\n');
        if let Some(tx) = self.tx.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let _ = tx.send(line);
        }
    }

    /// Writes out every queued line and flushes. Later writes are dropped.
    pub fn close(&self) -> std::io::Result<()> {
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        match self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(handle) => handle
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("journal writer panicked"))),
            None => Ok(()),
        }
    }
}

fn write_lines(file: File, rx: Receiver<Vec<u8>>) -> std::io::Result<()> {
    let mut out = BufWriter::new(file);
    while let Ok(line) = rx.recv() {
        out.write_all(&line)?;
        // Batch whatever else is already queued, then flush once.
        while let Ok(more) = rx.try_recv() {
            out.write_all(&more)?;
        }
        out.flush()?;
    }
    out.flush()
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
