//! A JSON body as a tree borrowed from its bytes: what redact, check and key walk.
//!
//! `serde_json::Value` owns every string and gives every object a hash table: a 16 MiB body
//! of small assignments took a gigabyte as a `Value` (issue 13). [`Json`] borrows each string
//! that has no escapes straight from the body and keeps an object's members in a vector (an
//! assignment element has two or three), so the tree is a small multiple of the body.
//!
//! It is read by `serde_json`'s own parser and written by its serializer, so what is accepted,
//! how numbers are read and how text is written (the stored body, the canonical form) is byte
//! for byte what `Value` gave. A member name sent twice keeps its first place and its last
//! value, as `Value` (with `preserve_order`) did.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Number;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

/// One JSON value, its strings borrowed from the text it was read from where they can be.
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Object<'a>),
}

/// An object's members in the order sent, each name once.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Object<'a>(Vec<(Cow<'a, str>, Json<'a>)>);

impl<'a> Json<'a> {
    /// Reads `raw` as one JSON text, as `serde_json::from_slice` does.
    pub fn parse(raw: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(raw)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Self::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }

    pub fn is_string(&self) -> bool {
        matches!(self, Self::String(_))
    }

    pub fn is_boolean(&self) -> bool {
        matches!(self, Self::Bool(_))
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Self::Object(_))
    }

    /// A member of an object (`None` for anything else).
    pub fn get(&self, name: &str) -> Option<&Json<'a>> {
        match self {
            Self::Object(o) => o.get(name),
            _ => None,
        }
    }

    /// What kind of value this is, as a message names it ("an array").
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "a boolean",
            Self::Number(_) => "a number",
            Self::String(_) => "a string",
            Self::Array(_) => "an array",
            Self::Object(_) => "an object",
        }
    }
}

impl<'a> Object<'a> {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    // Lookups are linear: objects in assign bodies have a handful of members, and a hostile
    // object with many is looked up a constant number of times per object.
    pub fn get(&self, name: &str) -> Option<&Json<'a>> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Json<'a>> {
        self.0.iter_mut().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Takes a member out; the others keep their order.
    pub fn remove(&mut self, name: &str) -> Option<Json<'a>> {
        let at = self.0.iter().position(|(k, _)| k == name)?;
        Some(self.0.remove(at).1)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_ref())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Json<'a>)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut Json<'a>)> {
        self.0.iter_mut().map(|(k, v)| (&**k, v))
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Json<'a>> {
        self.0.iter_mut().map(|(_, v)| v)
    }
}

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Null => s.serialize_unit(),
            Self::Bool(b) => s.serialize_bool(*b),
            Self::Number(n) => n.serialize(s),
            Self::String(t) => s.serialize_str(t),
            Self::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Self::Object(o) => o.serialize(s),
        }
    }
}

impl Serialize for Object<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k.as_ref(), v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Json<'de>, E> {
        // As `Value` does: a non-finite float (which JSON text cannot hold) is null.
        Ok(Number::from_f64(n).map_or(Json::Null, Json::Number))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(s)))
    }

    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json<'de>, D::Error> {
        Json::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        items.shrink_to_fit();
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        // Most objects of an assign body have one or two members: room for one to start with,
        // and the slack of a grown vector given back, so small objects cost what they hold.
        let mut members: Vec<(Cow<'de, str>, Json<'de>)> = Vec::with_capacity(1);
        // Past this many members, repeated names are found through a table rather than by
        // scanning: a hostile object with many members must not take quadratic time.
        const SCAN: usize = 16;
        let mut index: Option<HashMap<String, usize>> = None;
        while let Some(name) = map.next_key_seed(Name)? {
            let value: Json<'de> = map.next_value()?;
            let earlier = match &mut index {
                Some(index) => index.get(name.as_ref()).copied(),
                None => members.iter().position(|(k, _)| *k == name),
            };
            if let Some(at) = earlier {
                members[at].1 = value;
                continue;
            }
            if let Some(index) = &mut index {
                index.insert(name.to_string(), members.len());
            }
            members.push((name, value));
            if index.is_none() && members.len() == SCAN {
                index = Some(
                    members
                        .iter()
                        .enumerate()
                        .map(|(i, (k, _))| (k.to_string(), i))
                        .collect(),
                );
            }
        }
        members.shrink_to_fit();
        Ok(Json::Object(Object(members)))
    }
}

/// A member name, borrowed when it has no escapes.
struct Name;

impl<'de> DeserializeSeed<'de> for Name {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Name {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// What `Value` would have written: the stored body and canonical forms depend on it.
    fn same_as_value(text: &str) {
        let ours = Json::parse(text.as_bytes()).map(|j| serde_json::to_string(&j).ok());
        let theirs = serde_json::from_str::<Value>(text).map(|v| serde_json::to_string(&v).ok());
        match (ours, theirs) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
            (Err(_), Err(_)) => {}
            (a, b) => panic!("{text}: ours {a:?}, Value's {b:?}"),
        }
    }

    #[test]
    fn reads_and_writes_as_value_does() {
        for text in [
            r#"{"a":1,"b":[true,false,null],"c":{"d":"e"}}"#,
            r#"{"n":[0,-1,18446744073709551615,-9223372036854775808,1.5,1e400,1.0,2.50,1e-7]}"#,
            r#"{"s":"esc\"aped\\ \u00e9 \ud83d\ude00 \n","k\"ey":"v"}"#,
            r#"{"a":1,"b":2,"a":3}"#,
            r#"  [1, 2 , {"x" : "y"} ]  "#,
            r#"{"a":1} trailing"#,
            r#"{"a":"#,
            r#""just a string""#,
            "12",
            "",
        ] {
            same_as_value(text);
        }
    }

    #[test]
    fn a_repeated_name_keeps_its_place_and_its_last_value() {
        // Past the scanning threshold too.
        let mut members: Vec<String> = (0..40).map(|i| format!("\"m{i}\":{i}")).collect();
        members.push(r#""m3":"last""#.into());
        members.push(r#""m30":"last""#.into());
        let text = format!("{{{}}}", members.join(","));
        same_as_value(&text);
        let json = Json::parse(text.as_bytes()).ok();
        let Some(Json::Object(o)) = json else {
            panic!("not an object")
        };
        assert_eq!(o.len(), 40);
        assert_eq!(o.get("m3").and_then(Json::as_str), Some("last"));
        assert_eq!(o.keys().nth(3), Some("m3"));
        assert_eq!(o.get("m30").and_then(Json::as_str), Some("last"));
    }

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let text = br#"{"plain":"value","esc\u0061ped":"a\tb"}"#;
        let Ok(Json::Object(o)) = Json::parse(text) else {
            panic!("not an object")
        };
        let (k0, v0) = &o.0[0];
        assert!(matches!(k0, Cow::Borrowed(_)) && matches!(v0, Json::String(Cow::Borrowed(_))));
        let (k1, v1) = &o.0[1];
        assert_eq!(k1, "escaped");
        assert!(matches!(v1, Json::String(Cow::Owned(s)) if s == "a\tb"));
    }
}
