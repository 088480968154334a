//! Manifest: how many recordings each cassette held when graph-vcr last finished writing the
//! directory, kept beside the database (`graph-vcr.manifest`), so that damage is noticed.
//!
//! sled recovers a damaged log by stopping at the first record that fails its checksum: the
//! database then opens, smaller, without a word (flipped bytes left 79 of 300 recordings; a
//! truncated file, none). A count kept outside the log tells. It is written only after the
//! database is flushed (record and auto at shutdown, `cassette import`, `cassette rm`), so a
//! crash leaves it behind the database, never ahead: fewer recordings than it says is damage,
//! more is a run that did not get to write it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// The manifest's file name in a cassette directory.
pub const MANIFEST_FILE: &str = "graph-vcr.manifest";

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Manifest {
    format: u32,
    /// Recordings per cassette.
    cassettes: BTreeMap<String, usize>,
}

/// The counts in `dir`'s manifest, if it has one. An unreadable manifest is reported and
/// treated as none: it cannot vouch for anything.
pub fn read(dir: &Path) -> BTreeMap<String, usize> {
    let path = dir.join(MANIFEST_FILE);
    let Ok(bytes) = std::fs::read(&path) else {
        return BTreeMap::new();
    };
    match serde_json::from_slice::<Manifest>(&bytes) {
        Ok(m) => m.cassettes,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e,
                "the cassette manifest is unreadable; damage to the database cannot be detected");
            BTreeMap::new()
        }
    }
}

/// Writes the counts, durably and atomically (a temporary file, fsync, rename).
pub fn write(dir: &Path, cassettes: BTreeMap<String, usize>) -> std::io::Result<()> {
    let manifest = Manifest {
        format: 1,
        cassettes,
    };
    let bytes = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!("{MANIFEST_FILE}.tmp"));
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(MANIFEST_FILE))
}

/// What is wrong with a cassette that now holds `present` recordings (readable or not),
/// given the manifest's counts; `None` when it holds at least as many as promised.
pub fn shortfall(expected: &BTreeMap<String, usize>, name: &str, present: usize) -> Option<String> {
    let want = expected.get(name).copied().unwrap_or(0);
    (present < want).then(|| {
        format!(
            "cassette {name}: {present} of the {want} recordings it had are left; the database is damaged (re-record it, or re-import its export)"
        )
    })
}
