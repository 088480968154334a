//! Export: cassettes as deterministic, reviewable JSON, and back into sled.
//!
//! An export is the same bytes for the same cassette on every machine: interactions in key
//! order (the sled order), fields in declaration order, pretty-printed, newline-terminated, and
//! nothing volatile beyond what was recorded; every interaction passes the redaction gate on
//! the way out. Import checks the document, puts every interaction through the gate and then
//! `analyze`, exactly as a live request (so a hand-edited body still replays, and a secret in
//! it never lands), and writes durably. Replay can also read a directory of exports directly, which is the
//! recommended way to keep cassettes in git (see `docs/DECISIONS.md`).

use crate::cassette::{Cassette, CassetteName, Store, StoreError};
use crate::classify::classify;
use crate::interaction::{FORMAT, Interaction};
use crate::key::{CanonicalBody, Key, KeyOptions};
use crate::redact;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The `format` field of every export.
pub const FORMAT_NAME: &str = "graph-vcr-cassette";
/// The version of the export document (the record format inside has its own).
pub const DOCUMENT_VERSION: u32 = 1;

/// One exported cassette.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    pub format: String,
    pub version: u32,
    pub name: String,
    /// The key options the cassette was recorded with.
    pub key_options: KeyOptions,
    pub interactions: Vec<Interaction>,
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

/// The export of `cassette`.
pub fn export(cassette: &Cassette) -> Result<Document, StoreError> {
    let key_options = cassette
        .meta()
        .and_then(|m| serde_json::from_value(m.get("key_options")?.clone()).ok())
        .unwrap_or_default();
    Ok(Document {
        format: FORMAT_NAME.into(),
        version: DOCUMENT_VERSION,
        name: cassette.name().to_string(),
        key_options,
        interactions: cassette
            .iter()
            .map(|i| i.map(redact::gated))
            .collect::<Result<_, _>>()?,
    })
}

/// The bytes of an export: pretty JSON and a final newline.
pub fn to_bytes(doc: &Document) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(doc).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// Parses an export; `file` names it in errors.
pub fn parse(bytes: &[u8], file: &str) -> Result<Document, ImportError> {
    let invalid = |message: String| ImportError::Invalid {
        file: file.to_string(),
        message,
    };
    let doc: Document = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("not a graph-vcr export: {e}")))?;
    if doc.format != FORMAT_NAME || doc.version != DOCUMENT_VERSION {
        return Err(invalid(format!(
            "format {:?} version {} is not {FORMAT_NAME:?} version {DOCUMENT_VERSION}",
            doc.format, doc.version
        )));
    }
    Ok(doc)
}

/// Writes `doc` into `store` as cassette `name` (default: the document's own name).
pub fn import(
    store: &Store,
    mut doc: Document,
    name: Option<CassetteName>,
    replace: bool,
    file: &str,
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
        if key.to_hex() != interaction.key {
            rekeyed += 1;
            interaction.key = key.to_hex();
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
    cassette.replace_all(
        &serde_json::json!({"key_options": doc.key_options}),
        records,
    )?;
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
        version: DOCUMENT_VERSION,
        name: name.into(),
        key_options: opts,
        interactions,
    }
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
