//! Diff: why a request missed, in words a developer reads at a glance.
//!
//! On a replay miss the proxy finds the nearest recorded request for the same action and shows
//! how the canonical bodies differ, one line per differing JSON pointer. The number of
//! differences is also the distance used to pick the nearest recording.

use crate::json::{Json, Object};
use std::cmp::Ordering;

/// At most this many lines are shown; the rest are counted.
const MAX_LINES: usize = 20;
/// Values are shortened to this many characters in a diff line.
const MAX_VALUE: usize = 80;

/// Differences between a recorded body and a request body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyDiff {
    /// `pointer: recorded X, request Y` lines, at most [`MAX_LINES`].
    pub lines: Vec<String>,
    /// Total number of differences (the distance).
    pub count: usize,
}

/// A request's canonical body (JSON text, or anything else as opaque text), read once to be
/// compared with several recordings.
pub struct Probe<'a> {
    text: &'a str,
    json: Option<Json<'a>>,
}

impl<'a> Probe<'a> {
    pub fn new(text: &'a str) -> Self {
        Self {
            text,
            json: Json::parse(text.as_bytes()).ok(),
        }
    }

    /// How `recorded` differs from the request.
    pub fn diff(&self, recorded: &str) -> BodyDiff {
        let mut d = BodyDiff::default();
        match (Json::parse(recorded.as_bytes()), &self.json) {
            (Ok(a), Some(b)) => walk("", &a, b, &mut d),
            _ if recorded == self.text => {}
            _ => push(
                &mut d,
                format!(
                    "body (not JSON): recorded {} bytes, request {} bytes",
                    recorded.len(),
                    self.text.len()
                ),
            ),
        }
        d
    }
}

fn push(d: &mut BodyDiff, line: String) {
    d.count += 1;
    if d.lines.len() < MAX_LINES {
        d.lines.push(line);
    }
}

fn show(v: &Json<'_>) -> String {
    let s = serde_json::to_string(v).unwrap_or_default();
    if s.chars().count() > MAX_VALUE {
        let cut: String = s.chars().take(MAX_VALUE).collect();
        format!("{cut}…")
    } else {
        s
    }
}

fn pointer(base: &str, token: &str) -> String {
    format!("{base}/{}", token.replace('~', "~0").replace('/', "~1"))
}

fn by_name<'o, 'a>(o: &'o Object<'a>) -> Vec<(&'o str, &'o Json<'a>)> {
    let mut members: Vec<(&str, &Json<'a>)> = o.iter().collect();
    members.sort_by(|m, n| m.0.cmp(n.0));
    members
}

fn walk(at: &str, a: &Json<'_>, b: &Json<'_>, d: &mut BodyDiff) {
    match (a, b) {
        (Json::Object(x), Json::Object(y)) => {
            // Both sides in name order, merged: an object of many members costs linear time,
            // not a lookup per member.
            let (x, y) = (by_name(x), by_name(y));
            let (mut i, mut j) = (0, 0);
            while i < x.len() || j < y.len() {
                let order = match (x.get(i), y.get(j)) {
                    (Some(m), Some(n)) => m.0.cmp(n.0),
                    (Some(_), None) => Ordering::Less,
                    _ => Ordering::Greater,
                };
                match order {
                    Ordering::Equal => {
                        walk(&pointer(at, x[i].0), x[i].1, y[j].1, d);
                        (i, j) = (i + 1, j + 1);
                    }
                    Ordering::Less => {
                        let p = pointer(at, x[i].0);
                        push(d, format!("{p}: only in recording: {}", show(x[i].1)));
                        i += 1;
                    }
                    Ordering::Greater => {
                        let p = pointer(at, y[j].0);
                        push(d, format!("{p}: only in request: {}", show(y[j].1)));
                        j += 1;
                    }
                }
            }
        }
        (Json::Array(x), Json::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                let p = format!("{at}/{i}");
                match (x.get(i), y.get(i)) {
                    (Some(va), Some(vb)) => walk(&p, va, vb, d),
                    (Some(va), None) => push(d, format!("{p}: only in recording: {}", show(va))),
                    (None, Some(vb)) => push(d, format!("{p}: only in request: {}", show(vb))),
                    (None, None) => {}
                }
            }
        }
        _ if a == b => {}
        _ => {
            let p = if at.is_empty() { "/" } else { at };
            push(d, format!("{p}: recorded {}, request {}", show(a), show(b)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diff_bodies(recorded: &str, request: &str) -> BodyDiff {
        Probe::new(request).diff(recorded)
    }

    #[test]
    fn names_each_differing_pointer() {
        let d = diff_bodies(
            r#"{"a":[{"t":{"collectionId":"x"}}],"k":1}"#,
            r#"{"a":[{"t":{"collectionId":"y"}}],"n":true}"#,
        );
        assert_eq!(
            d.lines,
            vec![
                r#"/a/0/t/collectionId: recorded "x", request "y""#,
                "/k: only in recording: 1",
                "/n: only in request: true",
            ]
        );
        assert_eq!(d.count, 3);
    }

    #[test]
    fn equal_bodies_have_no_difference() {
        assert_eq!(diff_bodies(r#"{"a":1}"#, r#"{"a":1}"#), BodyDiff::default());
        assert_eq!(diff_bodies("", "").count, 0);
        assert_eq!(diff_bodies("abc", "abd").count, 1);
    }

    #[test]
    fn long_diffs_are_capped_but_counted() {
        let a: Vec<u32> = (0..50).collect();
        let b: Vec<u32> = (100..150).collect();
        let d = diff_bodies(
            &serde_json::json!(a).to_string(),
            &serde_json::json!(b).to_string(),
        );
        assert_eq!((d.lines.len(), d.count), (MAX_LINES, 50));
    }
}
