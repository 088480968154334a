//! Export: cassettes as deterministic, reviewable JSON, and back into sled.
//!
//! An export is the same bytes for the same cassette on every machine: format 2
//! (`format2`: JSON bodies as JSON, nothing derived), interactions in recording order,
//! pretty-printed, newline-terminated, and nothing volatile beyond what was recorded; every
//! interaction passes the redaction gate on the way out. Import checks the document, puts every interaction through the gate and then
//! `analyze`, exactly as a live request (so a hand-edited body still replays, and a secret in
//! it never lands), and writes durably. Replay can also read a directory of exports directly, which is the
//! recommended way to keep cassettes in git (see `docs/DECISIONS.md`).

use crate::cassette::{Cassette, CassetteName, Store, StoreError};
use crate::classify::classify;
use crate::interaction::{FORMAT, Interaction};
use crate::key::{CanonicalBody, Key, KeyOptions};
use crate::redact;
use crate::sanitize::Pseudonymized;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use thiserror::Error;

mod format2;
mod sanitize;

pub use sanitize::{Sanitized, sanitize, sanitize_dir, sanitize_exports};

/// The `format` field of every export.
pub const FORMAT_NAME: &str = "graph-vcr-cassette";
/// The version of the export document written (format 1, the stored records verbatim, is
/// still read).
pub const DOCUMENT_VERSION: u32 = 2;

/// One cassette, as import takes it and as format 1 wrote it (the stored records verbatim).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    pub format: String,
    pub version: u32,
    pub name: String,
    /// The key options the cassette was recorded with.
    pub key_options: KeyOptions,
    /// How its identifiers were pseudonymised (`--pseudonymize`), if they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pseudonymized: Option<Pseudonymized>,
    pub interactions: Vec<Interaction>,
}

/// One cassette as format 2 writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Document2 {
    format: String,
    version: u32,
    name: String,
    key_options: KeyOptions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pseudonymized: Option<Pseudonymized>,
    interactions: Vec<format2::Entry>,
}

/// Just enough of a document to tell which format it is.
#[derive(Deserialize)]
struct Head {
    format: String,
    version: u32,
}

/// Why an import failed. Nothing is written unless the whole document is valid.
#[derive(Debug, Error)]
pub enum ImportError {
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
    #[error("cassette {0} already has recordings; pass --replace to overwrite it")]
    Exists(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub name: CassetteName,
    pub interactions: usize,
    /// Interactions whose stored key did not match their request, and were re-keyed.
    pub rekeyed: usize,
}

/// The export of `cassette`, its interactions in recording order (by time, recorded to the
/// microsecond, or to the millisecond by older versions; requests recorded at the same
/// instant by key and position, so the order is the same on every machine).
pub fn export(cassette: &Cassette) -> Result<Document, StoreError> {
    let meta = cassette.meta();
    let field = |name: &str| meta.as_ref().and_then(|m| m.get(name)).cloned();
    let mut interactions: Vec<Interaction> = cassette
        .iter()
        .map(|i| i.map(redact::gated))
        .collect::<Result<_, _>>()?;
    recording_order(&mut interactions);
    Ok(Document {
        format: FORMAT_NAME.into(),
        version: 1,
        name: cassette.name().to_string(),
        key_options: field("key_options")
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default(),
        pseudonymized: field(crate::sanitize::META_FIELD)
            .and_then(|v| serde_json::from_value(v).ok()),
        interactions,
    })
}

/// The bytes of an export: format 2, pretty JSON and a final newline.
pub fn to_bytes(doc: &Document) -> Vec<u8> {
    let doc = Document2 {
        format: FORMAT_NAME.into(),
        version: DOCUMENT_VERSION,
        name: doc.name.clone(),
        key_options: doc.key_options.clone(),
        pseudonymized: doc.pseudonymized.clone(),
        interactions: doc.interactions.iter().map(format2::Entry::of).collect(),
    };
    let mut bytes = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// Parses an export of format 1 or 2; `file` names it in errors.
pub fn parse(bytes: &[u8], file: &str) -> Result<Document, ImportError> {
    let invalid = |message: String| ImportError::Invalid {
        file: file.to_string(),
        message,
    };
    let not_export = |e: serde_json::Error| invalid(format!("not a graph-vcr export: {e}"));
    let head: Head = serde_json::from_slice(bytes).map_err(not_export)?;
    if head.format != FORMAT_NAME || !(1..=DOCUMENT_VERSION).contains(&head.version) {
        return Err(invalid(format!(
            "format {:?} version {} is not {FORMAT_NAME:?} version 1 to {DOCUMENT_VERSION}",
            head.format, head.version
        )));
    }
    if head.version == 1 {
        return serde_json::from_slice(bytes).map_err(not_export);
    }
    let doc: Document2 = serde_json::from_slice(bytes).map_err(not_export)?;
    let interactions = doc
        .interactions
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            e.into_interaction()
                .map_err(|m| invalid(format!("interaction {i}: {m}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(Document {
        format: doc.format,
        version: 1,
        name: doc.name,
        key_options: doc.key_options,
        pseudonymized: doc.pseudonymized,
        interactions,
    })
}

/// Writes `doc` into `store` as cassette `name` (default: the document's own name).
pub fn import(
    store: &Store,
    doc: Document,
    name: Option<CassetteName>,
    replace: bool,
    file: &str,
) -> Result<Imported, ImportError> {
    import_with(store, doc, name, replace, file, false)
}

pub(crate) fn import_with(
    store: &Store,
    mut doc: Document,
    name: Option<CassetteName>,
    replace: bool,
    file: &str,
    renumber: bool,
) -> Result<Imported, ImportError> {
    let invalid = |message: String| ImportError::Invalid {
        file: file.to_string(),
        message,
    };
    let name = match name {
        Some(n) => n,
        None => CassetteName::new(&doc.name).map_err(|e| invalid(e.to_string()))?,
    };
    let mut seen = HashSet::new();
    let mut next_position: std::collections::HashMap<Key, u32> = Default::default();
    let mut rekeyed = 0;
    let mut records = Vec::with_capacity(doc.interactions.len());
    for (i, interaction) in doc.interactions.iter_mut().enumerate() {
        if interaction.format != FORMAT {
            return Err(invalid(format!(
                "interaction {i}: record format {} is not {FORMAT}",
                interaction.format
            )));
        }
        let (key, secrets) = rekey(interaction, &doc.key_options)
            .map_err(|m| invalid(format!("interaction {i}: {m}")))?;
        // Format 2 stores no key (import derives it); format 1's is checked.
        if !interaction.key.is_empty() && key.to_hex() != interaction.key {
            rekeyed += 1;
        }
        interaction.key = key.to_hex();
        if renumber {
            let n = next_position.entry(key).or_default();
            interaction.position = *n;
            *n += 1;
        }
        if !seen.insert((key, interaction.position)) {
            return Err(invalid(format!(
                "interaction {i}: a second recording at position {} of the same request (key {})",
                interaction.position, interaction.key
            )));
        }
        let bytes = redact::to_bytes(interaction, &secrets).map_err(|e| invalid(e.to_string()))?;
        records.push((key, interaction.position, bytes));
    }
    let cassette = store.cassette(&name)?;
    if !cassette.is_empty() && !replace {
        return Err(ImportError::Exists(name.to_string()));
    }
    // All or nothing: the old cassette stays whole until the new one is written whole.
    let mut meta = serde_json::json!({"key_options": doc.key_options});
    if let Some(p) = &doc.pseudonymized {
        meta[crate::sanitize::META_FIELD] = serde_json::to_value(p).unwrap_or_default();
    }
    // Into a scratch store (replay's private import of exports), where a crash loses only
    // the scratch copy: record by record, which leaves sled's log compact (`Cassette::fill`).
    if store.is_scratch() && cassette.is_empty() {
        cassette.fill(&meta, records)?;
    } else {
        cassette.replace_all(&meta, records)?;
    }
    store.flush_blocking()?;
    store.write_manifest()?;
    Ok(Imported {
        name,
        interactions: doc.interactions.len(),
        rekeyed,
    })
}

/// Puts an imported interaction through the gate and `analyze`, exactly as a live request
/// would go: its stored request becomes what the gate lets through, and its key, action and
/// canonical body what `analyze` makes of that. Returns the key and the secrets found, for
/// the final scrub ([`redact::to_bytes`]).
fn rekey(
    interaction: &mut Interaction,
    opts: &KeyOptions,
) -> Result<(Key, redact::Secrets), String> {
    // Headers, the response and the upstream here; the query and body in `analyze`, once.
    let mut secrets = redact::Secrets::default();
    redact::stored_headers(&mut interaction.request.headers, &mut secrets);
    redact::response(&mut interaction.response, &mut secrets);
    if let std::borrow::Cow::Owned(clean) = redact::text(&interaction.upstream) {
        interaction.upstream = clean;
    }
    let request = &mut interaction.request;
    let body = request
        .body
        .to_bytes()
        .ok_or_else(|| "request body is not valid base64".to_string())?;
    let method = http::Method::from_bytes(request.method.as_bytes())
        .map_err(|_| format!("{:?} is not an HTTP method", request.method))?;
    let analyzed = crate::analyze::analyze(
        &method,
        &request.path,
        request.query.as_deref(),
        &body,
        opts,
        crate::analyze::DEFAULT_MAX_JSON_DEPTH,
        &mut secrets,
    )
    .map_err(|e| format!("request body nests deeper than {} levels", e.0))?;
    request.query = analyzed.query.clone();
    request.body = crate::interaction::Body::from_bytes(&analyzed.stored_body);
    request.canonical_body = match &analyzed.canonical {
        CanonicalBody::Json(s) => Some(s.clone()),
        CanonicalBody::Bytes(_) => None,
    };
    interaction.action = analyzed.action_label();
    Ok((analyzed.key, secrets))
}

/// The request-id of call `i` of a [`synthetic`] cassette.
pub fn synthetic_request_id(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

/// A generated cassette of `n` distinct `POST path` calls (call i sends `body(i)` and was
/// answered 204 with request-id [`synthetic_request_id`]`(i)`): how benchmarks and load tests
/// build a large cassette quickly.
pub fn synthetic(name: &str, path: &str, n: usize, body: impl Fn(usize) -> String) -> Document {
    let opts = KeyOptions::default();
    let interactions = (0..n)
        .map(|i| {
            let response = crate::interaction::RecordedResponse {
                status: 204,
                headers: vec![("request-id".into(), synthetic_request_id(i))],
                body: crate::interaction::Body::Empty,
            };
            made_up(
                "POST",
                path,
                &body(i),
                response,
                "2026-11-28T00:00:00.000Z",
                &opts,
            )
        })
        .collect();
    Document {
        format: FORMAT_NAME.into(),
        version: 1,
        name: name.into(),
        key_options: opts,
        pseudonymized: None,
        interactions,
    }
}

/// The bundled `example` cassette (`cassettes/example.json`): the seed reference page's
/// example call, verbatim, answered `204 No Content` with the `request-id` and
/// `client-request-id` headers Graph documents on every response (fixed, illustrative values).
pub fn bundled_example() -> Document {
    use crate::interaction::{Body, RecordedResponse};
    const PATH: &str = "/v1.0/deviceManagement/deviceEnrollmentConfigurations/b0c1d2e3-0000-4000-8000-000000000001/assign";
    const REQUEST_ID: &str = "6f1b8a52-3c1e-4f4e-9d0b-7a2c5e9d1f30";
    let opts = KeyOptions::default();
    let response = RecordedResponse {
        status: 204,
        headers: vec![
            ("request-id".into(), REQUEST_ID.into()),
            ("client-request-id".into(), REQUEST_ID.into()),
            ("cache-control".into(), "no-cache".into()),
        ],
        body: Body::Empty,
    };
    let mut interaction = made_up(
        "POST",
        PATH,
        crate::contract::SEED_EXAMPLE_BODY,
        response,
        "2026-11-28T00:00:00.000Z",
        &opts,
    );
    interaction.request.headers = vec![
        ("authorization".into(), "Bearer REDACTED".into()),
        ("content-type".into(), "application/json".into()),
        ("accept".into(), "application/json".into()),
    ];
    Document {
        format: FORMAT_NAME.into(),
        version: 1,
        name: "example".into(),
        key_options: opts,
        pseudonymized: None,
        interactions: vec![interaction],
    }
}

/// Sorts interactions by the instant each was recorded, not by its text: "…:59.123Z" (an
/// older version's, to the millisecond) sorts after "…:59.123456Z" as text. A time that does
/// not parse sorts first, by its text; ties by key and position.
fn recording_order(interactions: &mut [Interaction]) {
    interactions.sort_by_cached_key(|i| {
        let at = humantime::parse_rfc3339_weak(&i.recorded_at).ok();
        (at, i.recorded_at.clone(), i.key.clone(), i.position)
    });
}

/// An interaction written rather than recorded (the bundled example, generated cassettes for
/// benchmarks and load tests), keyed exactly as the proxy keys the same live request.
pub fn made_up(
    method: &str,
    path: &str,
    body: &str,
    response: crate::interaction::RecordedResponse,
    recorded_at: &str,
    opts: &KeyOptions,
) -> Interaction {
    use crate::interaction::{Body, RecordedRequest};
    let mut interaction = Interaction {
        format: FORMAT,
        key: String::new(),
        position: 0,
        action: String::new(),
        recorded_at: recorded_at.into(),
        upstream: "https://graph.microsoft.com".into(),
        request: RecordedRequest {
            method: method.into(),
            version: classify(path, None).version.map(|v| v.to_string()),
            path: path.into(),
            query: None,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Body::from_bytes(body.as_bytes()),
            canonical_body: None,
        },
        response,
    };
    // The same gate and analysis as a live request; a made-up body too deep for them keeps
    // no key, and so never replays.
    if let Ok((key, _)) = rekey(&mut interaction, opts) {
        interaction.key = key.to_hex();
    }
    interaction
}

/// Opens the cassette directory `dir`: a sled database, or (read-only) a directory of JSON
/// exports, imported into a private database as `cassette import` would.
pub fn open(dir: &Path, access: crate::cassette::Access) -> Result<Store, StoreError> {
    use crate::cassette::Access;
    if access == Access::ReadWrite || !dir.is_dir() || dir.join("db").is_file() {
        return Store::open(dir, access);
    }
    let io = |source| StoreError::Io {
        dir: dir.to_path_buf(),
        source,
    };
    let not_cassettes = |reason: String| StoreError::NotACassetteDir {
        dir: dir.to_path_buf(),
        reason,
    };
    let files = export_files(dir).map_err(io)?;
    if files.is_empty() {
        return Err(not_cassettes(
            "no sled database (db) and no cassette exports (*.json) in it".into(),
        ));
    }
    let store = Store::private(dir)?;
    for file in files {
        let shown = file.display().to_string();
        let bytes = std::fs::read(&file).map_err(io)?;
        if let Err(e) =
            parse(&bytes, &shown).and_then(|doc| import(&store, doc, None, false, &shown))
        {
            return Err(not_cassettes(e.to_string()));
        }
    }
    Ok(store)
}

/// The `*.json` files of `dir`, sorted: a directory of exports.
pub fn export_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// For git's `textconv`: every cassette of a sled `db` file (git hands over that one file) as
/// concatenated exports, in name order. sled recovers a database from its log alone.
pub fn textconv(db_file: &Path) -> Result<Vec<u8>, String> {
    let tmp = crate::cassette::scratch_path(crate::cassette::Scratch::Textconv);
    let result = (|| {
        std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::copy(db_file, tmp.join("db"))
            .map_err(|e| format!("{}: {e}", db_file.display()))?;
        let store =
            Store::open(&tmp, crate::cassette::Access::ReadOnly).map_err(|e| e.to_string())?;
        let mut names = store.cassette_names();
        names.sort();
        let mut out = Vec::new();
        for name in names {
            let cassette = store.cassette(&name).map_err(|e| e.to_string())?;
            out.extend(to_bytes(&export(&cassette).map_err(|e| e.to_string())?));
        }
        Ok(out)
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

#[cfg(test)]
mod order_tests {
    use super::*;

    #[test]
    fn recordings_are_ordered_by_instant_whatever_the_precision() {
        let at = |t: &str, path: &str| {
            let response = crate::interaction::RecordedResponse {
                status: 204,
                headers: Vec::new(),
                body: crate::interaction::Body::from_bytes(b""),
            };
            made_up("POST", path, "{}", response, t, &KeyOptions::default())
        };
        let mut list = vec![
            at("2026-12-02T10:00:00.123Z", "/v1.0/a/ms-older"),
            at("2026-12-02T10:00:00.123900Z", "/v1.0/b/us-later"),
            at("2026-12-02T10:00:00.123100Z", "/v1.0/c/us-earlier"),
            at("2026-12-02T10:00:00.122999Z", "/v1.0/d/us-first"),
        ];
        recording_order(&mut list);
        let paths: Vec<&str> = list.iter().map(|i| i.request.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/v1.0/d/us-first",
                "/v1.0/a/ms-older",
                "/v1.0/c/us-earlier",
                "/v1.0/b/us-later"
            ]
        );
    }
}

#[cfg(test)]
mod write_tests {
    use super::*;

    /// Replay's private import of exports (a scratch store: `Cassette::fill`) lands every
    /// record and the cassette's metadata, as the atomic import into a directory does.
    #[test]
    fn a_scratch_import_lands_every_record() -> Result<(), Box<dyn std::error::Error>> {
        let n = 2_000;
        let body = |i: usize| format!(r#"{{"assignments":[{{"id":"a-{i}"}}]}}"#);
        let tmp = tempfile::tempdir()?;
        let stores = [
            Store::open(
                &tmp.path().join("cassettes"),
                crate::cassette::Access::ReadWrite,
            )?,
            Store::private(Path::new("exports"))?,
        ];
        for store in &stores {
            let doc = synthetic("c", "/v1.0/deviceManagement/x/assign", n, body);
            let done = import(store, doc, None, false, "c.json")?;
            assert_eq!(done.interactions, n);
            let cassette = store.cassette(&CassetteName::new("c")?)?;
            let scratch = store.is_scratch();
            assert_eq!(
                cassette.iter().filter(|i| i.is_ok()).count(),
                n,
                "{scratch}"
            );
            assert!(cassette.meta().is_some(), "{scratch}");
        }
        Ok(())
    }
}
