//! Properties of the key, for random JSON bodies: canonicalization is idempotent, and bodies
//! that differ only in key order, whitespace, `@odata.type` spelling (`#`) or assignment order
//! get the same key.

use graph_vcr::classify::classify;
use graph_vcr::key::{CanonicalBody, Key, KeyOptions};
use proptest::prelude::*;
use serde_json::{Map, Value};

const SEED_PATH: &str = "/v1.0/deviceManagement/deviceEnrollmentConfigurations/c-1/assign";

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[a-zA-Z0-9 é\"\\\\/.#-]{0,12}".prop_map(Value::String),
        "#?microsoft\\.graph\\.[a-zA-Z]{1,12}".prop_map(Value::String),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    "[a-zA-Z]{1,8}".prop_map(String::from),
                    Just("@odata.type".to_string())
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

/// Serializes `v` with object keys rotated by `salt`, `#` toggled on `@odata.type` values when
/// `toggle_hash`, and whitespace sprinkled by `salt`: a different text for the same call.
fn respell(v: &Value, salt: usize, toggle_hash: bool, out: &mut String) {
    let ws = [" ", "\n", "\t ", ""][salt % 4];
    match v {
        Value::Object(m) => {
            out.push('{');
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            if !entries.is_empty() {
                let k = salt % entries.len();
                entries.rotate_left(k);
            }
            for (i, (k, val)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(ws);
                out.push_str(&Value::String(k.clone()).to_string());
                out.push_str(ws);
                out.push(':');
                match (k.as_str(), val, toggle_hash) {
                    ("@odata.type", Value::String(t), true) => {
                        let flipped = match t.strip_prefix('#') {
                            Some(rest) => rest.to_string(),
                            None => format!("#{t}"),
                        };
                        out.push_str(&Value::String(flipped).to_string());
                    }
                    _ => respell(val, salt.wrapping_mul(31).wrapping_add(7), toggle_hash, out),
                }
            }
            out.push_str(ws);
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                    out.push_str(ws);
                }
                respell(item, salt.wrapping_add(i), toggle_hash, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn key_of(body: &str) -> Key {
    let c = classify(SEED_PATH, None);
    Key::compute(
        "POST",
        &c,
        &CanonicalBody::of(body.as_bytes(), c.action, &KeyOptions::default()),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn canonicalization_is_idempotent(v in json()) {
        let c = classify(SEED_PATH, None);
        let opts = KeyOptions::default();
        let once = CanonicalBody::of(v.to_string().as_bytes(), c.action, &opts);
        let CanonicalBody::Json(text) = &once else { return Err(TestCaseError::fail("JSON not canonical JSON")) };
        prop_assert_eq!(CanonicalBody::of(text.as_bytes(), c.action, &opts), once.clone());
    }

    #[test]
    fn respelled_bodies_share_a_key(v in json(), salt in 0usize..1000, toggle in any::<bool>()) {
        let mut respelled = String::new();
        respell(&v, salt, toggle, &mut respelled);
        prop_assert_eq!(key_of(&v.to_string()), key_of(&respelled), "{} vs {}", v, respelled);
    }

    #[test]
    fn assignment_order_does_not_change_the_key(items in prop::collection::vec(json(), 0..6), rot in 0usize..6) {
        let body = serde_json::json!({"enrollmentConfigurationAssignments": items});
        let mut rotated = items.clone();
        if !rotated.is_empty() {
            let k = rot % rotated.len();
            rotated.rotate_left(k);
        }
        let other = serde_json::json!({"enrollmentConfigurationAssignments": rotated});
        prop_assert_eq!(key_of(&body.to_string()), key_of(&other.to_string()));
    }

    #[test]
    fn a_changed_leaf_changes_the_key(v in json(), extra in "[a-z]{1,8}") {
        // Adding a field is a real difference.
        let mut changed = serde_json::json!({"enrollmentConfigurationAssignments": [v.clone()]});
        let original = changed.to_string();
        changed["zz-added"] = Value::String(extra);
        prop_assert_ne!(key_of(&original), key_of(&changed.to_string()));
    }
}
