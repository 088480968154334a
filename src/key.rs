//! Key: the cassette key of a request, from its normalized form.
//!
//! Two requests that mean the same call must get the same key, and any other difference must
//! not. The key is a SHA-256 digest over the method, the API version, the normalized path and
//! query (see `classify`) and the canonical body. The canonical body of JSON is the value
//! re-serialized with sorted keys and no insignificant whitespace, with `@odata.type` compared
//! without its leading `#`, an element `@odata.type` that only restates the declared element
//! type dropped, the assignments collection sorted (unless `--ordered-arrays`) and the
//! `--ignore-field` fields left out. A body that is not JSON is keyed by its bytes.

use crate::classify::Classified;
use crate::contract::Action;
use crate::json::Json;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fmt;

/// How bodies are normalized into keys. Recording and replaying must use the same options; the
/// cassette remembers them and a replay with other options warns.
#[derive(
    clap::Args, Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize,
)]
pub struct KeyOptions {
    /// Make the order of the assignments collection significant.
    ///
    /// By default `[A, B]` and `[B, A]` are the same call, as Intune treats them.
    #[arg(long, env = "GRAPH_VCR_ORDERED_ARRAYS")]
    pub ordered_arrays: bool,

    /// Leave a body field out of the key (repeatable, or comma-separated).
    ///
    /// A bare name (`id`) drops that field at any depth; a JSON pointer with `*` for any array
    /// index (`/enrollmentConfigurationAssignments/*/id`) drops exactly that field.
    /// Example: `--ignore-field id` for client-generated assignment ids.
    #[arg(
        long = "ignore-field",
        value_name = "FIELD",
        env = "GRAPH_VCR_IGNORE_FIELDS",
        value_delimiter = ','
    )]
    pub ignore_fields: Vec<String>,
}

impl KeyOptions {
    /// The options as flags, for messages: `--ordered-arrays --ignore-field id`, or `none`.
    pub fn describe(&self) -> String {
        let mut flags: Vec<String> = Vec::new();
        if self.ordered_arrays {
            flags.push("--ordered-arrays".into());
        }
        flags.extend(
            self.ignore_fields
                .iter()
                .map(|f| format!("--ignore-field {f}")),
        );
        if flags.is_empty() {
            "none".into()
        } else {
            flags.join(" ")
        }
    }

    /// The options as stored in a cassette's metadata, to compare on replay.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// The canonical form of a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CanonicalBody {
    /// Canonical JSON text.
    Json(String),
    /// Not JSON (or empty): keyed by its bytes.
    Bytes(Vec<u8>),
}

impl CanonicalBody {
    /// Canonicalizes `body` for a call whose collections are `sets` (an action's, which decides
    /// which collections are sets: `Option<&Action>`, `None` an unlisted assign action).
    pub fn of<'a>(body: &[u8], sets: impl Into<Sets<'a>>, opts: &KeyOptions) -> Self {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Self::Bytes(Vec::new());
        }
        match Json::parse(body) {
            Ok(value) => Self::from_json(value, sets, opts),
            Err(_) => Self::Bytes(body.to_vec()),
        }
    }

    /// Canonicalizes a body the caller has already parsed (the proxy parses each body once).
    pub fn from_json<'a>(
        mut value: Json<'_>,
        sets: impl Into<Sets<'a>>,
        opts: &KeyOptions,
    ) -> Self {
        let sets = sets.into();
        normalize(&mut value, sets, opts);
        let mut out = Vec::with_capacity(256);
        write_canonical_body(value, sets, opts, &mut out);
        // Only JSON text was written, which is UTF-8.
        Self::Json(String::from_utf8(out).unwrap_or_default())
    }

    fn tag_and_bytes(&self) -> (u8, &[u8]) {
        match self {
            Self::Json(s) => (b'j', s.as_bytes()),
            Self::Bytes(b) => (b'b', b),
        }
    }
}

/// Whether `body`, read as JSON, nests arrays and objects deeper than `max`. Scans bytes, so
/// it is linear and bounded whatever the input; strings (and escapes in them) are skipped.
pub fn json_depth_exceeds(body: &[u8], max: usize) -> bool {
    // Only what could be JSON is JSON: other bodies are keyed by bytes and never walked.
    if !matches!(
        body.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    ) {
        return false;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Which top-level collections of a body are sets, whose order does not change the call.
#[derive(Debug, Clone, Copy)]
pub enum Sets<'a> {
    /// A listed assign action: the collections it declares.
    Action(&'a Action),
    /// An assign action the registry does not list: every top-level collection (each
    /// documented one takes collections only).
    UnlistedAssign,
    /// Any other call: none; the order of an array in a PATCH or a create is the client's.
    None,
}

impl<'a> Sets<'a> {
    /// The sets of a classified call.
    pub fn of(classified: &'a Classified) -> Self {
        match (
            classified.action,
            classified.is_assign || classified.assign_shaped,
        ) {
            (Some(a), _) => Self::Action(a),
            (None, true) => Self::UnlistedAssign,
            (None, false) => Self::None,
        }
    }
}

impl<'a> From<Option<&'a Action>> for Sets<'a> {
    fn from(action: Option<&'a Action>) -> Self {
        action.map_or(Self::UnlistedAssign, Self::Action)
    }
}

/// Normalizes a parsed JSON body in place, all but the order of the sets (which
/// [`write_canonical_body`] sorts as it writes them).
fn normalize(value: &mut Json<'_>, sets: Sets<'_>, opts: &KeyOptions) {
    for field in &opts.ignore_fields {
        if field.starts_with('/') {
            let parts: Vec<&str> = field.split('/').skip(1).collect();
            remove_pointer(value, &parts);
        } else {
            remove_named(value, field);
        }
    }
    strip_odata_hash(value);
    let action = match sets {
        Sets::Action(a) => a,
        Sets::None | Sets::UnlistedAssign => return,
    };
    let Json::Object(top) = value else { return };
    for (name, param) in top.iter_mut() {
        let Json::Array(items) = param else { continue };
        let Some(declared) = action.parameter(name).map(|p| p.element_type.as_str()) else {
            continue;
        };
        for item in items.iter_mut() {
            if let Json::Object(obj) = item {
                let restates = obj
                    .get("@odata.type")
                    .and_then(Json::as_str)
                    .is_some_and(|t| t.eq_ignore_ascii_case(declared));
                if restates {
                    obj.remove("@odata.type");
                }
            }
        }
    }
}

/// Whether the top-level member `name` is a collection whose order does not count.
fn is_set(name: &str, sets: Sets<'_>, opts: &KeyOptions) -> bool {
    if opts.ordered_arrays {
        return false;
    }
    match sets {
        Sets::None => false,
        Sets::Action(a) => a.parameter(name).is_some(),
        // An unlisted assign action is assumed to take collections only, which every
        // documented one does.
        Sets::UnlistedAssign => true,
    }
}

fn strip_odata_hash(value: &mut Json<'_>) {
    match value {
        Json::Object(map) => {
            for (k, v) in map.iter_mut() {
                match v {
                    Json::String(s) if k == "@odata.type" => {
                        // Every leading '#': "##x" must not become "#x", which would canonicalize
                        // again to "x" (canonical form must be a fixed point).
                        if s.starts_with('#') {
                            *s = Cow::Owned(s.trim_start_matches('#').to_string());
                        }
                    }
                    // A non-string @odata.type is malformed, but what it holds is still body.
                    _ => strip_odata_hash(v),
                }
            }
        }
        Json::Array(items) => items.iter_mut().for_each(strip_odata_hash),
        _ => {}
    }
}

fn remove_named(value: &mut Json<'_>, name: &str) {
    match value {
        Json::Object(map) => {
            map.remove(name);
            map.values_mut().for_each(|v| remove_named(v, name));
        }
        Json::Array(items) => items.iter_mut().for_each(|v| remove_named(v, name)),
        _ => {}
    }
}

fn remove_pointer(value: &mut Json<'_>, parts: &[&str]) {
    let [head, rest @ ..] = parts else { return };
    // JSON pointer escapes: ~1 is '/', ~0 is '~'.
    let head = head.replace("~1", "/").replace("~0", "~");
    match value {
        Json::Object(map) if rest.is_empty() => {
            map.remove(&head);
        }
        Json::Object(map) => {
            if let Some(child) = map.get_mut(&head) {
                remove_pointer(child, rest);
            }
        }
        Json::Array(items) if head == "*" => {
            if rest.is_empty() {
                items.clear();
            } else {
                items.iter_mut().for_each(|v| remove_pointer(v, rest));
            }
        }
        Json::Array(items) => {
            if let Ok(i) = head.parse::<usize>() {
                if rest.is_empty() {
                    if i < items.len() {
                        items.remove(i);
                    }
                } else if let Some(child) = items.get_mut(i) {
                    remove_pointer(child, rest);
                }
            }
        }
        _ => {}
    }
}

/// Serializes with object keys in byte order and no whitespace, independent of the order the
/// members were sent in.
pub fn to_canonical_string(value: &Json<'_>) -> String {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out);
    // Only JSON text was written, which is UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// A normalized body as canonical text: each set's elements sorted by their own canonical
/// text, which is written once into one buffer and sorted as slices of it (not a string per
/// element: a body of half a million small elements would double its cost in headers). The
/// elements leave the tree as soon as their text is written, so the tree and the text of a
/// large body are not both held at once.
fn write_canonical_body(mut value: Json<'_>, sets: Sets<'_>, opts: &KeyOptions, out: &mut Vec<u8>) {
    let Json::Object(top) = &mut value else {
        return write_canonical(&value, out);
    };
    let mut sorted: Vec<(usize, SortedText)> = Vec::new();
    for (n, (name, member)) in top.iter_mut().enumerate() {
        if let Json::Array(items) = member
            && is_set(name, sets, opts)
        {
            sorted.push((n, SortedText::of(std::mem::take(items))));
        }
    }
    let mut entries: Vec<(usize, &str, &Json<'_>)> = top
        .iter()
        .enumerate()
        .map(|(n, (k, v))| (n, k, v))
        .collect();
    entries.sort_unstable_by(|a, b| a.1.cmp(b.1));
    out.push(b'{');
    for (i, (n, k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut *out, k);
        out.push(b':');
        match sorted.iter().find(|(m, _)| *m == n) {
            Some((_, text)) => text.write(out),
            None => write_canonical(v, out),
        }
    }
    out.push(b'}');
}

/// A set's elements as canonical text, in sorted order.
struct SortedText {
    texts: Vec<u8>,
    spans: Vec<std::ops::Range<usize>>,
}

impl SortedText {
    fn of(items: Vec<Json<'_>>) -> Self {
        let mut texts = Vec::new();
        let mut spans: Vec<std::ops::Range<usize>> = Vec::with_capacity(items.len());
        for item in &items {
            let from = texts.len();
            write_canonical(item, &mut texts);
            spans.push(from..texts.len());
        }
        drop(items);
        spans.sort_unstable_by(|a, b| texts[a.clone()].cmp(&texts[b.clone()]));
        Self { texts, spans }
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.reserve(self.texts.len() + self.spans.len() + 2);
        out.push(b'[');
        for (i, span) in self.spans.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&self.texts[span.clone()]);
        }
        out.push(b']');
    }
}

fn write_canonical(value: &Json<'_>, out: &mut Vec<u8>) {
    match value {
        Json::Object(map) => {
            let mut entries: Vec<(&str, &Json<'_>)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let _ = serde_json::to_writer(&mut *out, k);
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Json::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        scalar => {
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

/// A hasher for keys that are already uniformly distributed hashes (cassette keys, the
/// memo's digests): hashing them again with SipHash is wasted work on every request.
#[derive(Debug, Default, Clone, Copy)]
pub struct Prehashed(u64);

impl std::hash::Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(7) ^ u64::from_le_bytes(b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 ^= n as u64;
    }
}

/// The hash-map state for [`Prehashed`] keys.
pub type PrehashedState = std::hash::BuildHasherDefault<Prehashed>;

/// A cassette key: SHA-256 of the normalized request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub [u8; 32]);

impl Key {
    /// Computes the key of a classified request with canonical body `body`.
    pub fn compute(method: &str, classified: &Classified, body: &CanonicalBody) -> Self {
        let mut h = Sha256::new();
        let version = classified.version.map_or("", |v| v.as_str());
        let (tag, bytes) = body.tag_and_bytes();
        // Length-prefix every field so that no two different requests frame the same bytes.
        for field in [
            b"graph-vcr-key-v1".as_slice(),
            method_upper(method, &mut [0u8; 16]),
            version.as_bytes(),
            classified.normalized_path.as_bytes(),
            classified.normalized_query.as_bytes(),
            &[tag],
            bytes,
        ] {
            h.update((field.len() as u64).to_be_bytes());
            h.update(field);
        }
        Self(h.finalize().into())
    }

    pub fn to_hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for b in self.0 {
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
        out
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(out))
    }
}

/// The method upper-cased without allocating (methods are short; a long one is used as is).
fn method_upper<'a>(method: &'a str, buf: &'a mut [u8; 16]) -> &'a [u8] {
    let bytes = method.as_bytes();
    if bytes.len() > buf.len() {
        return bytes;
    }
    for (o, b) in buf.iter_mut().zip(bytes) {
        *o = b.to_ascii_uppercase();
    }
    &buf[..bytes.len()]
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::classify;

    const SEED_PATH: &str = "/v1.0/deviceManagement/deviceEnrollmentConfigurations/cfg-1/assign";

    use crate::contract::SEED_EXAMPLE_BODY as SEED_BODY;

    fn key(path: &str, body: &str, opts: &KeyOptions) -> Key {
        let c = classify(path, None);
        Key::compute(
            "POST",
            &c,
            &CanonicalBody::of(body.as_bytes(), c.action, opts),
        )
    }

    #[test]
    fn sdk_spelling_of_the_seed_call_has_the_seed_key() {
        // As msgraph-sdk emits it: no element @odata.type, '#' on the target type, its own order.
        let sdk = r##"{"enrollmentConfigurationAssignments":[{"id":"705b021c-021c-705b-1c02-5b701c025b70","target":{"@odata.type":"#microsoft.graph.configurationManagerCollectionAssignmentTarget","collectionId":"Collection Id value"}}]}"##;
        let o = KeyOptions::default();
        assert_eq!(key(SEED_PATH, SEED_BODY, &o), key(SEED_PATH, sdk, &o));
    }

    #[test]
    fn a_real_difference_changes_the_key() {
        let other = SEED_BODY.replace("Collection Id value", "Another collection");
        let o = KeyOptions::default();
        assert_ne!(key(SEED_PATH, SEED_BODY, &o), key(SEED_PATH, &other, &o));
        let group = SEED_BODY.replace(
            "configurationManagerCollectionAssignmentTarget",
            "groupAssignmentTarget",
        );
        assert_ne!(key(SEED_PATH, SEED_BODY, &o), key(SEED_PATH, &group, &o));
        // The method and the version are part of the key too.
        let c = classify(SEED_PATH, None);
        let b = CanonicalBody::of(SEED_BODY.as_bytes(), c.action, &o);
        assert_ne!(Key::compute("POST", &c, &b), Key::compute("PUT", &c, &b));
        assert_ne!(
            key(SEED_PATH, SEED_BODY, &o),
            key(&SEED_PATH.replace("v1.0", "beta"), SEED_BODY, &o)
        );
    }

    #[test]
    fn assignment_order_is_ignored_unless_asked() {
        let ab = r##"{"enrollmentConfigurationAssignments":[{"target":{"@odata.type":"#microsoft.graph.groupAssignmentTarget","groupId":"a"}},{"target":{"@odata.type":"#microsoft.graph.groupAssignmentTarget","groupId":"b"}}]}"##;
        let ba = r##"{"enrollmentConfigurationAssignments":[{"target":{"@odata.type":"#microsoft.graph.groupAssignmentTarget","groupId":"b"}},{"target":{"@odata.type":"#microsoft.graph.groupAssignmentTarget","groupId":"a"}}]}"##;
        let unordered = KeyOptions::default();
        assert_eq!(
            key(SEED_PATH, ab, &unordered),
            key(SEED_PATH, ba, &unordered)
        );
        let ordered = KeyOptions {
            ordered_arrays: true,
            ..KeyOptions::default()
        };
        assert_ne!(key(SEED_PATH, ab, &ordered), key(SEED_PATH, ba, &ordered));
    }

    #[test]
    fn nested_arrays_keep_their_order() {
        // Only the action's collection is a set; other arrays are data.
        let a = r#"{"enrollmentConfigurationAssignments":[{"x":[1,2]}]}"#;
        let b = r#"{"enrollmentConfigurationAssignments":[{"x":[2,1]}]}"#;
        let o = KeyOptions::default();
        assert_ne!(key(SEED_PATH, a, &o), key(SEED_PATH, b, &o));
    }

    #[test]
    fn ignored_fields_by_name_and_by_pointer() {
        let other_id = SEED_BODY.replace("705b021c-021c-705b-1c02-5b701c025b70", "client-made-id");
        let o = KeyOptions::default();
        assert_ne!(key(SEED_PATH, SEED_BODY, &o), key(SEED_PATH, &other_id, &o));
        for field in ["id", "/enrollmentConfigurationAssignments/*/id"] {
            let o = KeyOptions {
                ignore_fields: vec![field.into()],
                ..KeyOptions::default()
            };
            assert_eq!(
                key(SEED_PATH, SEED_BODY, &o),
                key(SEED_PATH, &other_id, &o),
                "{field}"
            );
        }
        // A pointer drops only what it names: a target property is still significant.
        let o = KeyOptions {
            ignore_fields: vec!["/enrollmentConfigurationAssignments/*/id".into()],
            ..KeyOptions::default()
        };
        let other_collection = SEED_BODY.replace("Collection Id value", "x");
        assert_ne!(
            key(SEED_PATH, SEED_BODY, &o),
            key(SEED_PATH, &other_collection, &o)
        );
    }

    #[test]
    fn a_target_type_that_restates_nothing_is_kept() {
        // The target's declared type is abstract, so its @odata.type always carries meaning.
        let without = r#"{"enrollmentConfigurationAssignments":[{"target":{"collectionId":"c"}}]}"#;
        let with = r#"{"enrollmentConfigurationAssignments":[{"target":{"@odata.type":"microsoft.graph.configurationManagerCollectionAssignmentTarget","collectionId":"c"}}]}"#;
        let o = KeyOptions::default();
        assert_ne!(key(SEED_PATH, without, &o), key(SEED_PATH, with, &o));
    }

    #[test]
    fn non_json_is_keyed_by_bytes() {
        let o = KeyOptions::default();
        assert_eq!(
            CanonicalBody::of(b"not json {", None, &o),
            CanonicalBody::Bytes(b"not json {".to_vec())
        );
        assert_ne!(
            key(SEED_PATH, "not json", &o),
            key(SEED_PATH, "not json ", &o)
        );
        // A JSON string and the same bytes not parsed as JSON must not collide.
        assert_ne!(key(SEED_PATH, "\"x\"", &o), key(SEED_PATH, "\"x", &o));
    }

    #[test]
    fn canonical_text_sorts_keys_and_strips_whitespace() {
        let text = "{ \"b\" : 1, \"a\" : { \"d\":[true, null], \"c\":\"é\" } }";
        let v = Json::parse(text.as_bytes()).unwrap_or(Json::Null);
        assert_eq!(
            to_canonical_string(&v),
            r#"{"a":{"c":"é","d":[true,null]},"b":1}"#
        );
    }

    #[test]
    fn odata_type_inside_a_malformed_odata_type_is_normalized_too() {
        // Found by the property test: a non-string @odata.type was not descended into.
        let o = KeyOptions::default();
        let a = r##"{"@odata.type":{"@odata.type":"#x"}}"##;
        let b = r##"{"@odata.type":{"@odata.type":"x"}}"##;
        assert_eq!(key(SEED_PATH, a, &o), key(SEED_PATH, b, &o));
    }

    #[test]
    fn canonical_numbers_are_a_fixed_point() {
        // Found by the canonical_key fuzz target: without exact float parsing, printing and
        // parsing again drifted in the last digit, so a canonical body was not canonical.
        let o = KeyOptions::default();
        let once = CanonicalBody::of(b"2221111111722222222222", None, &o);
        let CanonicalBody::Json(text) = &once else {
            panic!("a number is JSON")
        };
        assert_eq!(CanonicalBody::of(text.as_bytes(), None, &o), once);
    }

    #[test]
    fn repeated_hashes_canonicalize_in_one_step() {
        // Found by the canonical_key fuzz target.
        let o = KeyOptions::default();
        let once = CanonicalBody::of(br###"{"@odata.type":"##x"}"###, None, &o);
        assert_eq!(once, CanonicalBody::Json(r#"{"@odata.type":"x"}"#.into()));
    }

    #[test]
    fn json_depth() {
        assert!(!json_depth_exceeds(SEED_BODY.as_bytes(), 4));
        assert!(json_depth_exceeds(SEED_BODY.as_bytes(), 3));
        assert!(!json_depth_exceeds(br#"{"a":"[[[[[[\"{{{{"}"#, 1));
        let deep = "[".repeat(100_000);
        assert!(json_depth_exceeds(deep.as_bytes(), 64));
    }

    #[test]
    fn hex_round_trip() {
        let k = key(SEED_PATH, SEED_BODY, &KeyOptions::default());
        assert_eq!(Key::from_hex(&k.to_hex()), Some(k));
        assert_eq!(Key::from_hex("zz"), None);
    }
}
