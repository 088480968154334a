//! Rules: a team's own sanitizers, from the project config file (`[[sanitize]]` tables).
//!
//! Each rule picks values by one selector and either replaces them with a fixed value or
//! pseudonymises them (`aliases`):
//! - `json_pointer = "/assignments/*/target/groupId"`: a JSON pointer into request and
//!   response bodies, where `*` is every member or element;
//! - `field = "displayName"`: that member wherever it is, in any body (case-insensitive);
//! - `header = "x-ms-client-request-id"`: a header's value, in requests and responses;
//! - `query = "$filter"`: a query parameter's value;
//! - `regex = "contoso-[0-9]+"`: every match, in paths, queries, header values and bodies.
//!
//! A selected object or array is replaced whole by a fixed value; pseudonymised, each string
//! in it is.

use super::aliases::Aliaser;
use regex::bytes::{NoExpand, Regex};
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;

/// One `[[sanitize]]` table, as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub json_pointer: Option<String>,
    pub field: Option<String>,
    pub header: Option<String>,
    pub query: Option<String>,
    pub regex: Option<String>,
    /// The fixed value (default `REDACTED`).
    pub replace: Option<String>,
    /// Pseudonymise instead of replacing with a fixed value.
    #[serde(default)]
    pub pseudonymize: bool,
}

/// What a rule does to what it selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Replace(String),
    Pseudonymize,
}

#[derive(Debug, Clone)]
enum Selector {
    Pointer(Vec<String>),
    Field(String),
    Header(String),
    Query(String),
    Regex(Regex),
}

#[derive(Debug, Clone)]
pub struct Rule {
    selector: Selector,
    action: Action,
}

/// The compiled rules.
#[derive(Debug, Clone, Default)]
pub struct Rules(Vec<Rule>);

impl Rules {
    /// Compiles the `[[sanitize]]` tables; an error names the rule (from 1) and what is wrong.
    pub fn compile(specs: &[RuleSpec]) -> Result<Self, String> {
        specs
            .iter()
            .enumerate()
            .map(|(i, s)| Rule::compile(s).map_err(|e| format!("[[sanitize]] rule {}: {e}", i + 1)))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a rule pseudonymises (and so needs the pseudonym key).
    pub fn pseudonymizes(&self) -> bool {
        self.0.iter().any(|r| r.action == Action::Pseudonymize)
    }

    fn has_json(&self) -> bool {
        self.0
            .iter()
            .any(|r| matches!(r.selector, Selector::Pointer(_) | Selector::Field(_)))
    }

    /// Text (a path, a header value, a non-JSON body): the regex rules.
    pub fn text<'a>(&self, text: &'a [u8], aliaser: Option<&Aliaser>) -> Cow<'a, [u8]> {
        let mut out = Cow::Borrowed(text);
        for rule in &self.0 {
            if let Selector::Regex(re) = &rule.selector
                && let Some(new) = rule.apply_regex(re, &out, aliaser)
            {
                out = Cow::Owned(new);
            }
        }
        out
    }

    /// A body: the JSON rules when it is JSON, then the regex rules.
    pub fn body<'a>(&self, body: &'a [u8], aliaser: Option<&Aliaser>) -> Cow<'a, [u8]> {
        let mut out = Cow::Borrowed(body);
        if self.has_json()
            && let Ok(mut value) = serde_json::from_slice::<Value>(body)
        {
            let mut changed = false;
            for rule in &self.0 {
                changed |= rule.apply_json(&mut value, aliaser);
            }
            if changed {
                out = Cow::Owned(value.to_string().into_bytes());
            }
        }
        match self.text(&out, aliaser) {
            Cow::Borrowed(_) => out,
            Cow::Owned(new) => Cow::Owned(new),
        }
    }

    /// A header's value: its header rules, then the regex rules.
    pub fn header(&self, name: &str, value: &str, aliaser: Option<&Aliaser>) -> Option<String> {
        let mut out: Option<String> = None;
        for rule in &self.0 {
            if let Selector::Header(h) = &rule.selector
                && h.eq_ignore_ascii_case(name)
            {
                out = rule.value(out.as_deref().unwrap_or(value), aliaser);
            }
        }
        let current = out.as_deref().unwrap_or(value);
        match self.text(current.as_bytes(), aliaser) {
            Cow::Borrowed(_) => out,
            Cow::Owned(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        }
    }

    /// A query string: its parameter rules, then the regex rules.
    pub fn query<'a>(&self, query: &'a str, aliaser: Option<&Aliaser>) -> Cow<'a, str> {
        let mut params: Vec<String> = Vec::new();
        let mut changed = false;
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = crate::classify::query::decode(name);
            let mut new_value: Option<String> = None;
            for rule in &self.0 {
                if let Selector::Query(q) = &rule.selector
                    && q.eq_ignore_ascii_case(&decoded)
                {
                    new_value = rule
                        .value(new_value.as_deref().unwrap_or(value), aliaser)
                        .map(|v| encode_component(&v));
                }
            }
            match new_value {
                Some(v) => {
                    changed = true;
                    params.push(format!("{name}={v}"));
                }
                None => params.push(pair.to_string()),
            }
        }
        let joined: Cow<'a, str> = if changed {
            Cow::Owned(params.join("&"))
        } else {
            Cow::Borrowed(query)
        };
        match self.text(joined.as_bytes(), aliaser) {
            Cow::Borrowed(_) => joined,
            Cow::Owned(b) => Cow::Owned(String::from_utf8_lossy(&b).into_owned()),
        }
    }
}

impl Rule {
    fn compile(s: &RuleSpec) -> Result<Self, String> {
        let mut selectors = Vec::new();
        if let Some(p) = &s.json_pointer {
            selectors.push(Selector::Pointer(pointer_segments(p)?));
        }
        if let Some(f) = &s.field {
            selectors.push(Selector::Field(f.clone()));
        }
        if let Some(h) = &s.header {
            selectors.push(Selector::Header(h.clone()));
        }
        if let Some(q) = &s.query {
            selectors.push(Selector::Query(q.clone()));
        }
        if let Some(r) = &s.regex {
            let re = Regex::new(r).map_err(|e| format!("regex {r:?}: {e}"))?;
            selectors.push(Selector::Regex(re));
        }
        if selectors.len() != 1 {
            return Err(format!(
                "needs exactly one of json_pointer, field, header, query and regex ({} given)",
                selectors.len()
            ));
        }
        let action = match (&s.replace, s.pseudonymize) {
            (Some(_), true) => return Err("replace and pseudonymize exclude each other".into()),
            (Some(v), false) => Action::Replace(v.clone()),
            (None, true) => Action::Pseudonymize,
            (None, false) => Action::Replace(crate::redact::REDACTED.to_string()),
        };
        Ok(Self {
            selector: selectors.remove(0),
            action,
        })
    }

    /// A whole value replaced (`None` when pseudonymising without a key: left as it is).
    fn value(&self, value: &str, aliaser: Option<&Aliaser>) -> Option<String> {
        match &self.action {
            Action::Replace(v) => Some(v.clone()),
            Action::Pseudonymize => aliaser.map(|a| a.value(value)),
        }
    }

    fn apply_regex(&self, re: &Regex, text: &[u8], aliaser: Option<&Aliaser>) -> Option<Vec<u8>> {
        if !re.is_match(text) {
            return None;
        }
        let replaced = match &self.action {
            Action::Replace(v) => re.replace_all(text, NoExpand(v.as_bytes())),
            Action::Pseudonymize => {
                let aliaser = aliaser?;
                re.replace_all(text, |caps: &regex::bytes::Captures<'_>| {
                    aliaser
                        .value(&String::from_utf8_lossy(&caps[0]))
                        .into_bytes()
                })
            }
        };
        match replaced {
            Cow::Owned(b) => Some(b),
            Cow::Borrowed(_) => None,
        }
    }

    fn apply_json(&self, value: &mut Value, aliaser: Option<&Aliaser>) -> bool {
        match &self.selector {
            Selector::Pointer(segments) => self.at_pointer(value, segments, aliaser),
            Selector::Field(name) => self.at_field(value, name, aliaser),
            _ => false,
        }
    }

    fn at_pointer(
        &self,
        value: &mut Value,
        segments: &[String],
        aliaser: Option<&Aliaser>,
    ) -> bool {
        let Some((first, rest)) = segments.split_first() else {
            return self.replace_value(value, aliaser);
        };
        match value {
            Value::Object(map) if first == "*" => map
                .values_mut()
                .fold(false, |c, v| self.at_pointer(v, rest, aliaser) | c),
            Value::Array(items) if first == "*" => items
                .iter_mut()
                .fold(false, |c, v| self.at_pointer(v, rest, aliaser) | c),
            Value::Object(map) => map
                .get_mut(first.as_str())
                .is_some_and(|v| self.at_pointer(v, rest, aliaser)),
            Value::Array(items) => first
                .parse::<usize>()
                .ok()
                .and_then(|i| items.get_mut(i))
                .is_some_and(|v| self.at_pointer(v, rest, aliaser)),
            _ => false,
        }
    }

    fn at_field(&self, value: &mut Value, name: &str, aliaser: Option<&Aliaser>) -> bool {
        match value {
            Value::Object(map) => map.iter_mut().fold(false, |c, (k, v)| {
                let hit = if k.eq_ignore_ascii_case(name) {
                    self.replace_value(v, aliaser)
                } else {
                    self.at_field(v, name, aliaser)
                };
                hit | c
            }),
            Value::Array(items) => items
                .iter_mut()
                .fold(false, |c, v| self.at_field(v, name, aliaser) | c),
            _ => false,
        }
    }

    fn replace_value(&self, value: &mut Value, aliaser: Option<&Aliaser>) -> bool {
        match (&self.action, value) {
            (Action::Replace(fixed), v) => {
                let new = Value::String(fixed.clone());
                let changed = *v != new;
                *v = new;
                changed
            }
            (Action::Pseudonymize, Value::String(s)) => match aliaser {
                Some(a) => {
                    let alias = a.value(s);
                    let changed = alias != *s;
                    *s = alias;
                    changed
                }
                None => false,
            },
            (Action::Pseudonymize, Value::Array(items)) => items
                .iter_mut()
                .fold(false, |c, v| self.replace_value(v, aliaser) | c),
            (Action::Pseudonymize, Value::Object(map)) => map
                .values_mut()
                .fold(false, |c, v| self.replace_value(v, aliaser) | c),
            (Action::Pseudonymize, v @ (Value::Number(_) | Value::Bool(_))) => match aliaser {
                Some(a) => {
                    *v = Value::String(a.value(&v.to_string()));
                    true
                }
                None => false,
            },
            (Action::Pseudonymize, Value::Null) => false,
        }
    }
}

/// A JSON pointer's segments, unescaped (`~1` is `/`, `~0` is `~`).
fn pointer_segments(pointer: &str) -> Result<Vec<String>, String> {
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(format!("json_pointer {pointer:?} does not start with '/'"));
    };
    Ok(rest
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect())
}

/// A query value percent-encoded as far as a query needs it.
fn encode_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(toml_text: &str) -> Rules {
        #[derive(Deserialize)]
        struct File {
            sanitize: Vec<RuleSpec>,
        }
        let file: File = toml::from_str(toml_text).unwrap_or(File { sanitize: vec![] });
        Rules::compile(&file.sanitize).unwrap_or_default()
    }

    #[test]
    fn pointer_field_header_query_and_regex() {
        let r = rules(
            r#"
            [[sanitize]]
            json_pointer = "/assignments/*/target/groupId"
            replace = "GROUP"
            [[sanitize]]
            field = "displayName"
            [[sanitize]]
            header = "x-tenant"
            replace = "T"
            [[sanitize]]
            query = "$search"
            replace = "S S"
            [[sanitize]]
            regex = "contoso-[0-9]+"
            replace = "C"
            "#,
        );
        let body = br#"{"assignments":[{"target":{"groupId":"g1"}},{"target":{"groupId":"g2"}}],"x":{"DisplayName":"Finance"},"n":"contoso-42"}"#;
        let out = String::from_utf8_lossy(&r.body(body, None)).into_owned();
        assert_eq!(
            out,
            r#"{"assignments":[{"target":{"groupId":"GROUP"}},{"target":{"groupId":"GROUP"}}],"x":{"DisplayName":"REDACTED"},"n":"C"}"#
        );
        assert_eq!(r.header("X-Tenant", "abc", None).as_deref(), Some("T"));
        assert_eq!(r.header("other", "abc", None), None);
        assert_eq!(
            r.query("%24search=x&top=contoso-1", None),
            "%24search=S%20S&top=C"
        );
        assert_eq!(r.body(b"{}", None), Cow::Borrowed(b"{}".as_slice()));
    }

    #[test]
    fn pseudonymised_values_map_to_themselves() {
        let r = rules("[[sanitize]]\nfield = \"displayName\"\npseudonymize = true\n");
        let a = Aliaser::new(b"key");
        let once = r
            .body(br#"{"displayName":"Finance"}"#, Some(&a))
            .into_owned();
        assert_eq!(r.body(&once, Some(&a)), Cow::Borrowed(once.as_slice()));
        assert!(!String::from_utf8_lossy(&once).contains("Finance"));
    }

    #[test]
    fn bad_rules_are_named() {
        let bad = |text: &str| {
            #[derive(Deserialize)]
            struct File {
                sanitize: Vec<RuleSpec>,
            }
            let file: Result<File, _> = toml::from_str(text);
            match file {
                Ok(f) => Rules::compile(&f.sanitize).err().unwrap_or_default(),
                Err(e) => e.to_string(),
            }
        };
        assert!(bad("[[sanitize]]\nreplace = \"x\"\n").contains("rule 1: needs exactly one"));
        assert!(bad("[[sanitize]]\nregex = \"(\"\n").contains("rule 1: regex"));
        assert!(
            bad("[[sanitize]]\nfield = \"a\"\nreplace = \"x\"\npseudonymize = true\n")
                .contains("exclude")
        );
        assert!(bad("[[sanitize]]\nfeild = \"a\"\n").contains("feild"));
        assert!(bad("[[sanitize]]\njson_pointer = \"a\"\n").contains("start with '/'"));
    }
}
