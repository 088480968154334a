//! Inspect: cassettes as a person reads them (`cassette list`, `cassette show`), and the
//! age check behind `replay --max-age`.

use crate::cassette::{Cassette, Store, StoreError};
use crate::interaction::{Body, Interaction};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Read;
use std::time::{Duration, SystemTime};

/// One line per cassette: name, interactions, actions, first and last recording time; then
/// what is damaged (records that do not decode, fewer recordings than the manifest promises,
/// cassettes gone), which the caller turns into a failing exit status.
pub fn list(store: &Store) -> Result<(String, Vec<String>), StoreError> {
    let mut out = String::from("NAME\tINTERACTIONS\tACTIONS\tRECORDED\n");
    let mut damaged = store.missing();
    let mut names = store.cassette_names();
    names.sort();
    for name in names {
        let cassette = store.cassette(&name)?;
        let mut actions = BTreeSet::new();
        let (mut first, mut last, mut n, mut present) = (String::new(), String::new(), 0, 0);
        for i in cassette.iter() {
            present += 1;
            let i = match i {
                Ok(i) => i,
                Err(e @ StoreError::Corrupt { .. }) => {
                    damaged.push(e.to_string());
                    continue;
                }
                Err(e) => return Err(e),
            };
            n += 1;
            actions.insert(i.action.clone());
            if first.is_empty() || i.recorded_at < first {
                first.clone_from(&i.recorded_at);
            }
            if i.recorded_at > last {
                last.clone_from(&i.recorded_at);
            }
        }
        damaged.extend(crate::cassette::manifest::shortfall(
            store.expected(),
            name.as_str(),
            present,
        ));
        let recorded = if first == last {
            first
        } else {
            format!("{first} .. {last}")
        };
        let actions: Vec<String> = actions.into_iter().collect();
        let _ = writeln!(out, "{name}\t{n}\t{}\t{recorded}", actions.join(", "));
    }
    Ok((out, damaged))
}

/// Every interaction of `cassette`, readable: request and response, bodies decoded and
/// pretty-printed when they are JSON.
pub fn show(cassette: &Cassette) -> Result<String, StoreError> {
    let mut out = String::new();
    for (n, i) in cassette.iter().enumerate() {
        // What an older version stored, or a hand edit put there, passes the gate too.
        let i = crate::redact::gated(i?);
        if n > 0 {
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "# {} — key {} #{} — recorded {} from {}",
            i.action,
            &i.key[..16.min(i.key.len())],
            i.position,
            i.recorded_at,
            i.upstream
        );
        let query = i
            .request
            .query
            .as_deref()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        let _ = writeln!(out, "> {} {}{query}", i.request.method, i.request.path);
        for (k, v) in &i.request.headers {
            let _ = writeln!(out, "> {k}: {v}");
        }
        out.push_str(&body_text(&i.request.body, &i.request.headers, ">"));
        let _ = writeln!(out, "< {}", i.response.status);
        for (k, v) in &i.response.headers {
            let _ = writeln!(out, "< {k}: {v}");
        }
        out.push_str(&body_text(&i.response.body, &i.response.headers, "<"));
    }
    Ok(out)
}

fn body_text(body: &Body, headers: &[(String, String)], prefix: &str) -> String {
    let Some(raw) = body.to_bytes() else {
        return format!("{prefix} (body: invalid base64)\n");
    };
    if raw.is_empty() {
        return String::new();
    }
    let encoding = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-encoding"))
        .map(|(_, v)| v.trim());
    let (bytes, note) = match encoding {
        Some(e) if e.eq_ignore_ascii_case("gzip") => {
            decode(flate2::read::GzDecoder::new(&raw[..]), e)
        }
        Some(e) if e.eq_ignore_ascii_case("deflate") => {
            decode(flate2::read::ZlibDecoder::new(&raw[..]), e)
        }
        Some(e) if !e.eq_ignore_ascii_case("identity") => {
            return format!("{prefix} ({} bytes, {e}-encoded; not decoded)\n", raw.len());
        }
        _ => (raw, String::new()),
    };
    let text = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
        Err(_) => String::from_utf8_lossy(&bytes).into_owned(),
    };
    let mut out = String::new();
    if !note.is_empty() {
        let _ = writeln!(out, "{prefix} ({note})");
    }
    out.push_str(&format!("{prefix}\n"));
    for line in text.lines() {
        let _ = writeln!(out, "{prefix} {line}");
    }
    out
}

fn decode(mut reader: impl Read, encoding: &str) -> (Vec<u8>, String) {
    let mut out = Vec::new();
    match reader.read_to_end(&mut out) {
        Ok(_) => (out, format!("{encoding}-encoded, shown decoded")),
        Err(e) => (
            Vec::new(),
            format!("{encoding}-encoded, cannot decode: {e}"),
        ),
    }
}

/// Recordings older than `max_age`, in every cassette of `store`.
pub fn stale(store: &Store, max_age: Duration) -> Result<Vec<(String, Interaction)>, StoreError> {
    let now = SystemTime::now();
    let mut out = Vec::new();
    for name in store.cassette_names() {
        for i in store.cassette(&name)?.iter() {
            let i = i?;
            let old = humantime::parse_rfc3339_weak(&i.recorded_at)
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_none_or(|age| age > max_age);
            if old {
                out.push((name.to_string(), i));
            }
        }
    }
    Ok(out)
}
