//! Nearest: which recordings a miss is compared with, in a cassette of any size.
//!
//! A miss explains itself with the nearest recording of the same action and method (`respond`),
//! by an exact JSON diff. Diffing every recording made a miss cost a scan of the cassette (18
//! misses a second on 40,000 recordings) and, capped at 10,000, missed the nearest past it.
//! Instead each recording is summarised once, on a cassette's first miss, as a sorted set of
//! 64-bit hashes: its normalized path, each query pair, and each JSON leaf of its canonical body
//! with its pointer. The size of the symmetric difference of two such sets tracks the diff's
//! count (a changed leaf is one hash on each side, a missing one a hash on one side), so the
//! [`CANDIDATES`] closest by it are diffed exactly and the best of those is shown.
//!
//! Memory: a recording's set keeps at most [`MAX_TOKENS`] hashes — the smallest, a bottom-k
//! sample that keeps the same leaves in every summary, so large bodies still compare — about
//! 100 bytes for a typical assign body; built only when a cassette first misses.

use crate::classify;
use crate::key::{CanonicalBody, Key};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// How many recordings, closest by token distance, are diffed exactly.
pub const CANDIDATES: usize = 16;
/// Most hashes kept per recording.
const MAX_TOKENS: usize = 64;

/// What a request or recording is summarised as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The action and method: only recordings of the same group are compared.
    pub group: u64,
    /// Sorted, distinct.
    pub tokens: Box<[u64]>,
}

impl Summary {
    /// The summary of a call: `action` its label, `canonical` its canonical body.
    pub fn of(
        action: &str,
        method: &str,
        path: &str,
        query: Option<&str>,
        canonical: &CanonicalBody,
    ) -> Self {
        let group = fnv(&[
            action.as_bytes(),
            b"\0",
            method.to_ascii_uppercase().as_bytes(),
        ]);
        let classified = classify::classify(path, query);
        let mut tokens = vec![fnv(&[b"p\0", classified.normalized_path.as_bytes()])];
        for pair in classified
            .normalized_query
            .split('&')
            .filter(|p| !p.is_empty())
        {
            tokens.push(fnv(&[b"q\0", pair.as_bytes()]));
        }
        match canonical {
            CanonicalBody::Json(text) => {
                if !leaves(text, &mut tokens) {
                    tokens.push(fnv(&[b"b\0", text.as_bytes()]));
                }
            }
            CanonicalBody::Bytes(b) => tokens.push(fnv(&[b"b\0", b])),
        }
        tokens.sort_unstable();
        tokens.dedup();
        tokens.truncate(MAX_TOKENS);
        Self {
            group,
            tokens: tokens.into_boxed_slice(),
        }
    }

    /// How many hashes one of the two has and the other has not.
    pub fn distance(&self, other: &Summary) -> usize {
        let (a, b) = (&self.tokens, &other.tokens);
        let (mut i, mut j, mut shared) = (0, 0, 0);
        while i < a.len() && j < b.len() {
            match a[i].cmp(&b[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    shared += 1;
                    i += 1;
                    j += 1;
                }
            }
        }
        a.len() + b.len() - 2 * shared
    }
}

/// Every recording of one cassette, summarised.
#[derive(Debug, Default)]
pub struct Candidates {
    entries: Vec<(Key, u32, Summary)>,
}

impl Candidates {
    pub fn push(&mut self, key: Key, position: u32, summary: Summary) {
        self.entries.push((key, position, summary));
    }

    /// The recordings of `probe`'s group closest to it, closest first (ties in key order).
    pub fn closest(&self, probe: &Summary) -> Vec<(Key, u32)> {
        let mut scored: Vec<(usize, Key, u32)> = self
            .entries
            .iter()
            .filter(|(_, _, s)| s.group == probe.group)
            .map(|(k, p, s)| (s.distance(probe), *k, *p))
            .collect();
        let n = CANDIDATES.min(scored.len());
        if n == 0 {
            return Vec::new();
        }
        scored.select_nth_unstable(n - 1);
        scored.truncate(n);
        scored.sort_unstable();
        scored.into_iter().map(|(_, k, p)| (k, p)).collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A hash per leaf of `text`, with its JSON pointer (indices included, as the diff compares
/// them), into `out`, until `out` holds enough: the text is walked as it is read, never built
/// into a tree, and the walk stops there, so a summary costs the same for any body size.
/// Whether `text` was JSON (as far as it was read).
fn leaves(text: &str, out: &mut Vec<u64>) -> bool {
    let mut walk = Leaves {
        out,
        full: false,
        at: String::new(),
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let read = (&mut walk).deserialize(&mut de).and_then(|()| de.end());
    read.is_ok() || walk.full
}

/// Most leaves hashed per summary (the smallest [`MAX_TOKENS`] of them are kept).
const MAX_LEAVES: usize = 4 * MAX_TOKENS;

struct Leaves<'o> {
    out: &'o mut Vec<u64>,
    /// Enough leaves were read: the walk stopped on purpose.
    full: bool,
    /// The pointer of the value being read.
    at: String,
}

impl Leaves<'_> {
    fn leaf<E: de::Error>(&mut self, text: &str) -> Result<(), E> {
        self.out
            .push(fnv(&[b"j\0", self.at.as_bytes(), b"\0", text.as_bytes()]));
        Ok(())
    }

    /// Reads the next value at `at` + `/token`.
    fn child<F, E>(&mut self, token: &str, read: F) -> Result<bool, E>
    where
        F: FnOnce(&mut Self) -> Result<bool, E>,
        E: de::Error,
    {
        if self.out.len() > MAX_LEAVES {
            self.full = true;
            return Err(E::custom("enough leaves"));
        }
        let len = self.at.len();
        self.at.push('/');
        self.at.push_str(token);
        let more = read(self);
        self.at.truncate(len);
        more
    }
}

impl<'de> DeserializeSeed<'de> for &mut Leaves<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for &mut Leaves<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(name) = map.next_key::<Cow<'de, str>>()? {
            self.child(&name, |w| map.next_value_seed(&mut *w).map(|()| true))?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        while self.child(&i.to_string(), |w| {
            seq.next_element_seed(&mut *w).map(|o| o.is_some())
        })? {
            i += 1;
        }
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<(), E> {
        self.leaf(if b { "true" } else { "false" })
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<(), E> {
        self.leaf(&n.to_string())
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<(), E> {
        self.leaf(&n.to_string())
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<(), E> {
        // As the number is written in JSON (a `Value` would print it so).
        let text = serde_json::Number::from_f64(n).map_or_else(|| "null".into(), |n| n.to_string());
        self.leaf(&text)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        let text = serde_json::to_string(s).map_err(E::custom)?;
        self.leaf(&text)
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.leaf("null")
    }
}

/// FNV-1a: fast, and the same on every machine (the summaries never leave the process, but a
/// run is repeatable).
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(body: &str) -> Summary {
        Summary::of(
            "a",
            "POST",
            "/v1.0/x/1/assign",
            None,
            &CanonicalBody::Json(body.into()),
        )
    }

    #[test]
    fn the_closest_body_is_first_and_other_groups_are_not_compared() {
        let mut c = Candidates::default();
        for i in 0..100u8 {
            let body = format!(r#"{{"a":[{{"t":"{i}"}}],"b":{i}}}"#);
            c.push(Key([i; 32]), 0, summary(&body));
        }
        let other = Summary::of(
            "other",
            "POST",
            "/v1.0/x/1/assign",
            None,
            &CanonicalBody::Json(r#"{"a":[{"t":"57"}],"b":57}"#.into()),
        );
        c.push(Key([200; 32]), 0, other);
        let probe = summary(r#"{"a":[{"t":"57"}],"b":58}"#);
        let closest = c.closest(&probe);
        assert_eq!(closest.len(), CANDIDATES);
        assert!(
            closest.iter().take(2).any(|(k, _)| *k == Key([57; 32])),
            "{closest:?}"
        );
        assert!(!closest.iter().any(|(k, _)| *k == Key([200; 32])));
    }
}
