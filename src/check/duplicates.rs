//! Duplicate member names: `{"assignments":[…],"assignments":[]}` parses (JSON allows it,
//! and every common parser keeps the last), so the list the user meant disappears and an
//! empty list goes out — for assign, the removal of every assignment. Found on the raw bytes,
//! since a parsed value has already lost the first.

use super::{Code, Deviation};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use std::collections::HashSet;
use std::fmt;

/// At most this many duplicates are reported per body (the check's cap applies after).
const MOST: usize = 16;

/// The duplicate member names of `raw` (if it is JSON), each as a deviation at its pointer.
pub fn check(raw: &[u8], out: &mut Vec<Deviation>) {
    let mut found = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(raw);
    // Not JSON, or too deep for serde: other checks say so.
    if (Walk {
        at: String::new(),
        found: &mut found,
    })
    .deserialize(&mut de)
    .is_err()
    {
        return;
    }
    for (at, name) in found {
        out.push(Deviation::new(
            Code::DuplicateMember,
            &at,
            format!(
                "member {name:?} appears more than once; the service reads only the last, so the earlier value is lost"
            ),
        ));
    }
}

struct Walk<'a> {
    at: String,
    found: &'a mut Vec<(String, String)>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            let at = format!("{}/{}", self.at, escape(&name));
            if !seen.insert(name.clone()) && self.found.len() < MOST {
                self.found.push((at.clone(), name));
            }
            map.next_value_seed(Walk {
                at,
                found: &mut *self.found,
            })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        while seq
            .next_element_seed(Walk {
                at: format!("{}/{i}", self.at),
                found: &mut *self.found,
            })?
            .is_some()
        {
            i += 1;
        }
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_at_any_depth() {
        let mut out = Vec::new();
        check(br#"{"assignments":[{"a":1}],"assignments":[]}"#, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(&*out[0].at, "/assignments");
        let mut out = Vec::new();
        check(
            br#"{"x":[{"target":{"groupId":"a","groupId":"b"}}]}"#,
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(&*out[0].at, "/x/0/target/groupId");
        let mut out = Vec::new();
        check(br#"{"a":1,"b":{"a":2}}"#, &mut out);
        check(b"not json", &mut out);
        assert!(out.is_empty(), "{out:?}");
    }
}
