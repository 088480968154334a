//! Diff: why a request missed, in words a developer reads at a glance.
//!
//! On a replay miss the proxy finds the nearest recorded request for the same action and shows
//! how the canonical bodies differ, one line per differing JSON pointer. The number of
//! differences is also the distance used to pick the nearest recording.

use serde_json::Value;

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

/// Compares two canonical bodies (JSON text, or anything else as opaque text).
pub fn diff_bodies(recorded: &str, request: &str) -> BodyDiff {
    let mut d = BodyDiff::default();
    match (
        serde_json::from_str::<Value>(recorded),
        serde_json::from_str::<Value>(request),
    ) {
        (Ok(a), Ok(b)) => walk("", &a, &b, &mut d),
        _ if recorded == request => {}
        _ => push(
            &mut d,
            format!(
                "body (not JSON): recorded {} bytes, request {} bytes",
                recorded.len(),
                request.len()
            ),
        ),
    }
    d
}

fn push(d: &mut BodyDiff, line: String) {
    d.count += 1;
    if d.lines.len() < MAX_LINES {
        d.lines.push(line);
    }
}

fn show(v: &Value) -> String {
    let s = v.to_string();
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

fn walk(at: &str, a: &Value, b: &Value, d: &mut BodyDiff) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = pointer(at, k);
                match (x.get(k), y.get(k)) {
                    (Some(va), Some(vb)) => walk(&p, va, vb, d),
                    (Some(va), None) => push(d, format!("{p}: only in recording: {}", show(va))),
                    (None, Some(vb)) => push(d, format!("{p}: only in request: {}", show(vb))),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
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
