//! Export format 2: a cassette as a person reviews it in a pull request.
//!
//! JSON bodies are JSON values (pretty-printed, members in the order sent), other text is
//! text and anything else base64; headers are one `name: value` line each; nothing derived is
//! written (the key, the action, the canonical body: import derives them, so a hand-edited
//! body is keyed as the proxy would key it). Interactions come in recording order.
//!
//! A body is written as JSON only when doing so loses nothing: when its compact
//! re-serialization is exactly the body without its insignificant whitespace. Anything JSON
//! would change (a number beyond f64, a duplicate member, an escape written another way) is
//! kept as text, byte for byte.

use crate::interaction::{Body, Interaction, RecordedRequest, RecordedResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One interaction in format 2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Which identical request this was: the nth gets the nth response on replay.
    pub position: u32,
    /// RFC 3339, UTC.
    pub recorded_at: String,
    /// The base URL the response came from.
    pub upstream: String,
    pub request: Request,
    pub response: Response,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub method: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(default)]
    pub headers: Vec<String>,
    #[serde(flatten)]
    pub body: BodyForm,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub status: u16,
    #[serde(default)]
    pub headers: Vec<String>,
    #[serde(flatten)]
    pub body: BodyForm,
}

/// A body as format 2 writes it: at most one of the three; none for an empty body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BodyForm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
}

impl BodyForm {
    fn of(body: &Body) -> Self {
        match body {
            Body::Empty => Self::default(),
            Body::Base64(b) => Self {
                base64: Some(b.clone()),
                ..Self::default()
            },
            Body::Text(t) => match lossless_json(t) {
                Some(v) => Self {
                    json: Some(v),
                    ..Self::default()
                },
                None => Self {
                    text: Some(t.clone()),
                    ..Self::default()
                },
            },
        }
    }

    fn to_body(&self) -> Result<Body, String> {
        match (&self.json, &self.text, &self.base64) {
            (None, None, None) => Ok(Body::Empty),
            (Some(v), None, None) => Ok(Body::Text(v.to_string())),
            (None, Some(t), None) => Ok(Body::from_bytes(t.as_bytes())),
            (None, None, Some(b)) => Ok(Body::Base64(b.clone())),
            _ => Err("a body has more than one of json, text and base64".into()),
        }
    }
}

/// `text` as a JSON value, when writing that value back (compactly) gives `text` exactly,
/// less its insignificant whitespace.
fn lossless_json(text: &str) -> Option<Value> {
    let value: Value = serde_json::from_str(text).ok()?;
    // Only objects and arrays: a bare string or number reads better as text.
    if !(value.is_object() || value.is_array()) {
        return None;
    }
    let compact = serde_json::to_string(&value).ok()?;
    (compact == minified(text)).then_some(value)
}

/// JSON text without whitespace outside strings.
fn minified(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

fn header_lines(headers: &[(String, String)]) -> Vec<String> {
    headers.iter().map(|(n, v)| format!("{n}: {v}")).collect()
}

fn header_pairs(lines: &[String]) -> Result<Vec<(String, String)>, String> {
    lines
        .iter()
        .map(|line| match line.split_once(':') {
            Some((n, v)) if !n.trim().is_empty() => {
                Ok((n.trim().to_ascii_lowercase(), v.trim().to_string()))
            }
            _ => Err(format!("header {line:?} is not \"name: value\"")),
        })
        .collect()
}

impl Entry {
    pub fn of(i: &Interaction) -> Self {
        Self {
            position: i.position,
            recorded_at: i.recorded_at.clone(),
            upstream: i.upstream.clone(),
            request: Request {
                method: i.request.method.clone(),
                path: i.request.path.clone(),
                query: i.request.query.clone(),
                headers: header_lines(&i.request.headers),
                body: BodyForm::of(&i.request.body),
            },
            response: Response {
                status: i.response.status,
                headers: header_lines(&i.response.headers),
                body: BodyForm::of(&i.response.body),
            },
        }
    }

    /// The stored record, less what import derives (key, action, canonical body).
    pub fn into_interaction(self) -> Result<Interaction, String> {
        let version = crate::classify::classify(&self.request.path, None)
            .version
            .map(|v| v.to_string());
        Ok(Interaction {
            format: crate::interaction::FORMAT,
            key: String::new(),
            position: self.position,
            action: String::new(),
            recorded_at: self.recorded_at,
            upstream: self.upstream,
            request: RecordedRequest {
                method: self.request.method,
                version,
                path: self.request.path,
                query: self.request.query,
                headers: header_pairs(&self.request.headers)?,
                body: self.request.body.to_body()?,
                canonical_body: None,
            },
            response: RecordedResponse {
                status: self.response.status,
                headers: header_pairs(&self.response.headers)?,
                body: self.response.body.to_body()?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_only_when_nothing_is_lost() {
        assert!(lossless_json(r#"{"a": [1, 2], "b": "x y"}"#).is_some());
        assert!(lossless_json("{\n  \"z\": 1,\n  \"a\": 2\n}").is_some());
        // A number beyond f64, a duplicate member, an escape serde writes otherwise, a scalar.
        for text in [
            r#"{"n":123456789012345678901234567890}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"s":"\u00e9"}"#,
            r#"{"s":"a\/b"}"#,
            r#""just a string""#,
            "not json",
        ] {
            assert!(lossless_json(text).is_none(), "{text}");
        }
    }

    #[test]
    fn members_keep_the_order_sent() {
        let v = lossless_json(r#"{"z":1,"a":2}"#).unwrap_or_default();
        assert_eq!(v.to_string(), r#"{"z":1,"a":2}"#);
    }

    #[test]
    fn headers_read_back() {
        let pairs = vec![("content-type".to_string(), "a: b".to_string())];
        assert_eq!(header_pairs(&header_lines(&pairs)), Ok(pairs));
        assert!(header_pairs(&["no colon".to_string()]).is_err());
    }
}
