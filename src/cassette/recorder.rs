//! Recorder: record mode's durable writes, group-committed on a thread of their own.
//!
//! A recording request hands its record to the recorder and waits until the record is on disk;
//! only then does its client get the response (nothing a client saw can be lost). The recorder
//! thread takes every record queued since its last round, inserts them all, flushes sled once
//! (one fsync), and then answers each waiting request. While it flushes, new records queue up
//! for the next round, so the more requests arrive at once, the more each fsync covers.
//!
//! Why a thread: inserting on the runtime's workers and flushing through `spawn_blocking`
//! behind an async mutex cost two thread switches per call and a chain of wake-ups through the
//! mutex's queue; under 32 concurrent clients that, not the disk, bounded record mode
//! (docs/PERFORMANCE.md). Here a request costs one channel send, which wakes the thread only
//! when it is idle, and one wake-up when its round is durable.

use super::{Cassette, StoreError};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// Most records in one round: bounds how long the first of them waits for the fsync.
const MOST_PER_ROUND: usize = 4_096;

/// One record on its way to disk, and where to say it got there.
struct Write {
    tree: sled::Tree,
    key: [u8; 36],
    value: Vec<u8>,
    done: oneshot::Sender<Result<(), sled::Error>>,
}

/// The recorder thread of one store, and the queue into it.
pub(super) struct Recorder {
    queue: Mutex<Option<Sender<Write>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    dir: PathBuf,
}

impl Recorder {
    pub(super) fn start(db: sled::Db, dir: PathBuf) -> std::io::Result<Self> {
        let (queue, rounds) = channel();
        let thread = std::thread::Builder::new()
            .name("graph-vcr-recorder".into())
            .spawn(move || run(&db, &rounds))?;
        Ok(Self {
            queue: Mutex::new(Some(queue)),
            thread: Mutex::new(Some(thread)),
            dir,
        })
    }

    /// Stores `value` at `key` in `cassette` and returns once it is durable.
    pub(super) async fn write(
        &self,
        cassette: &Cassette,
        key: [u8; 36],
        value: Vec<u8>,
    ) -> Result<(), StoreError> {
        let (done, durable) = oneshot::channel();
        let write = Write {
            tree: cassette.tree.clone(),
            key,
            value,
            done,
        };
        let queued = match self
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            Some(queue) => queue.send(write).is_ok(),
            None => false,
        };
        if !queued {
            return Err(self.stopped());
        }
        match durable.await {
            Ok(result) => result.map_err(|source| StoreError::Sled {
                dir: self.dir.clone(),
                source,
            }),
            Err(_) => Err(self.stopped()),
        }
    }

    /// Stops taking records, and waits for the thread to make every queued one durable.
    pub(super) fn stop(&self) {
        drop(self.queue.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take()
            && thread.join().is_err()
        {
            tracing::error!(dir = %self.dir.display(), "the recorder thread panicked");
        }
    }

    fn stopped(&self) -> StoreError {
        StoreError::Io {
            dir: self.dir.clone(),
            source: std::io::Error::other("the recorder has stopped; nothing was recorded"),
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The recorder thread: one round per wake-up until the queue closes and is drained.
fn run(db: &sled::Db, rounds: &Receiver<Write>) {
    let mut round = Vec::with_capacity(64);
    while let Ok(first) = rounds.recv() {
        round.push(first);
        while round.len() < MOST_PER_ROUND {
            match rounds.try_recv() {
                Ok(write) => round.push(write),
                Err(_) => break,
            }
        }
        commit(db, &mut round);
    }
}

/// Inserts a round, flushes once, and answers every write in it: an insert's own error goes
/// to its writer; a failed flush goes to every writer whose insert it would have made durable.
fn commit(db: &sled::Db, round: &mut Vec<Write>) {
    let inserted: Vec<Result<(), sled::Error>> = round
        .iter_mut()
        .map(|w| {
            w.tree
                .insert(w.key, std::mem::take(&mut w.value))
                .map(|_| ())
        })
        .collect();
    let flushed = if inserted.iter().any(Result::is_ok) {
        db.flush().map(|_| ())
    } else {
        Ok(())
    };
    for (write, inserted) in round.drain(..).zip(inserted) {
        let result = inserted.and_then(|()| flushed.clone());
        // A writer that stopped waiting (its client went away) is not an error here: its record
        // is durable all the same, and the report counts what is in the cassette.
        let _ = write.done.send(result);
    }
}
