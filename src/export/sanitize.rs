//! `cassette sanitize`: stored cassettes through the project's rules and pseudonymisation,
//! without re-recording: a sled directory (each cassette re-keyed, then the database
//! rewritten so the replaced values leave the disk) or a directory of exports (each rewritten
//! in place).

use super::{ImportError, Imported, export, export_files, import, import_with, parse, to_bytes};
use crate::cassette::{Access, CassetteName, Store};
use crate::sanitize::Setup;
use std::path::{Path, PathBuf};

/// What `cassette sanitize` did to a directory.
#[derive(Debug)]
pub struct Sanitized {
    /// Each cassette sanitized, and the export file it was in (none in a sled directory).
    pub cassettes: Vec<(Option<PathBuf>, Imported)>,
    /// A journal from an earlier run, left in the directory (it was written before the rules).
    pub old_journal: Option<PathBuf>,
    /// Whether the sled database was rewritten.
    pub compacted: bool,
}

fn invalid(dir: &Path, message: String) -> ImportError {
    ImportError::Invalid {
        file: dir.display().to_string(),
        message,
    }
}

/// Sanitizes cassette `name` (every one without) of `dir`, a sled directory or a directory
/// of exports, with `rules` and (`pseudonymize`) pseudonymisation. Never makes a directory or
/// a database of its own; the pseudonym key is made only once there is something to sanitize.
pub fn sanitize_dir(
    dir: &Path,
    name: Option<&CassetteName>,
    rules: std::sync::Arc<crate::sanitize::Rules>,
    pseudonymize: bool,
) -> Result<Sanitized, ImportError> {
    if !dir.is_dir() {
        return Err(invalid(dir, "no cassette directory".into()));
    }
    let exports = !dir.join("db").exists();
    if exports && !export_files(dir).is_ok_and(|f| !f.is_empty()) {
        return Err(invalid(
            dir,
            "no cassettes in this directory (no sled database, no exports)".into(),
        ));
    }
    let setup =
        Setup::for_recording(rules, pseudonymize, dir).map_err(|e| invalid(dir, e.to_string()))?;
    let setup = &setup;
    if exports {
        let done = sanitize_exports(dir, name, setup)?;
        if done.is_empty() {
            return Err(invalid(dir, "no export of that cassette".into()));
        }
        return Ok(Sanitized {
            cassettes: done.into_iter().map(|(f, d)| (Some(f), d)).collect(),
            old_journal: None,
            compacted: false,
        });
    }
    let store = Store::open(dir, Access::ReadWrite)?;
    let names = match name {
        Some(n) if !store.cassette_names().contains(n) => {
            return Err(invalid(dir, format!("no cassette {n}")));
        }
        Some(n) => vec![n.clone()],
        None => store.cassette_names(),
    };
    if names.is_empty() {
        return Err(invalid(dir, "no cassettes in this directory".into()));
    }
    let mut cassettes = Vec::with_capacity(names.len());
    for n in &names {
        cassettes.push((None, sanitize(&store, n, setup)?));
    }
    // The old values are still in sled's log until it is rewritten.
    store.compact()?.flush_blocking()?;
    let journal = dir.join(crate::cassette::JOURNAL_FILE);
    Ok(Sanitized {
        cassettes,
        old_journal: journal.exists().then_some(journal),
        compacted: true,
    })
}

/// `cassette sanitize`: the cassette's recordings through `setup`'s rules and
/// pseudonymisation (with `setup.pseudonymize`, turned on for it), re-keyed, through the gate
/// again, and written back whole. Recordings that become the same request are numbered in
/// recording order.
pub fn sanitize(
    store: &Store,
    name: &CassetteName,
    setup: &crate::sanitize::Setup,
) -> Result<Imported, ImportError> {
    let mut doc = export(&store.cassette(name)?)?;
    let (sanitizer, remember) = setup
        .for_sanitizing(name.as_str(), doc.pseudonymized.as_ref())
        .map_err(|e| ImportError::Invalid {
            file: name.to_string(),
            message: e.to_string(),
        })?;
    for interaction in &mut doc.interactions {
        sanitizer.interaction(interaction);
    }
    doc.pseudonymized = remember;
    import_with(store, doc, Some(name.clone()), true, name.as_str(), true)
}

/// `cassette sanitize` on a directory of exports (what the README has teams commit): each
/// export of `name` (every one without) read into a private database, sanitized there as a
/// stored cassette is, and written back in place (a new file renamed over the old, so an
/// interrupted run leaves the old one whole). Returns the files rewritten.
pub fn sanitize_exports(
    dir: &Path,
    name: Option<&CassetteName>,
    setup: &crate::sanitize::Setup,
) -> Result<Vec<(PathBuf, Imported)>, ImportError> {
    let io = |file: &Path, e: std::io::Error| ImportError::Invalid {
        file: file.display().to_string(),
        message: e.to_string(),
    };
    let mut done = Vec::new();
    for file in export_files(dir).map_err(|e| io(dir, e))? {
        let shown = file.display().to_string();
        let bytes = std::fs::read(&file).map_err(|e| io(&file, e))?;
        let doc = parse(&bytes, &shown)?;
        if name.is_some_and(|n| n.as_str() != doc.name) {
            continue;
        }
        let store = Store::private(dir)?;
        let imported = import(&store, doc, None, false, &shown)?;
        let sanitized = sanitize(&store, &imported.name, setup)?;
        let out = to_bytes(&export(&store.cassette(&imported.name)?)?);
        let tmp = file.with_extension("json.sanitizing");
        std::fs::write(&tmp, out).map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &file).map_err(|e| io(&file, e))?;
        done.push((file, sanitized));
    }
    Ok(done)
}
