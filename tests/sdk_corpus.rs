//! The SDK corpus: bodies made with the real msgraph-sdk models and serialized as its request
//! builders serialize them (`contracts/sdk_corpus.py`, output committed in
//! `tests/data/sdk_corpus.json`). Not one may get an `error`: a false alarm here is a valid
//! call that `--on-deviation reject` would block and every record run would fail on.

use graph_vcr::check::{self, Severity};
use graph_vcr::classify::classify;
use http::{HeaderMap, HeaderValue, Method};
use serde_json::Value;

const CORPUS: &str = include_str!("data/sdk_corpus.json");

/// The headers msgraph-sdk sends with a JSON body.
fn sdk_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        (
            "authorization",
            "Bearer eyJ0eXAiOiJKV1QifQ.eyJhdWQiOiJzZGsifQ.c2ln",
        ),
        ("content-type", "application/json"),
        ("accept", "application/json"),
        ("client-request-id", "7c1c7d1a-0000-4000-8000-000000000001"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    h
}

#[test]
fn no_sdk_body_gets_an_error() -> Result<(), Box<dyn std::error::Error>> {
    let corpus: Value = serde_json::from_str(CORPUS)?;
    let bodies = corpus["bodies"].as_array().ok_or("no bodies")?;
    assert!(
        bodies.len() >= 50,
        "the corpus is too small: {}",
        bodies.len()
    );
    let mut failures = Vec::new();
    for b in bodies {
        let path = b["path"].as_str().unwrap_or_default();
        let body = b["body"].as_str().unwrap_or_default();
        let classified = classify(path, None);
        assert!(classified.action.is_some(), "{path} has no contract");
        let found =
            check::check_request(&Method::POST, &classified, &sdk_headers(), body.as_bytes());
        let errors: Vec<String> = found
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| format!("{} at {}: {}", d.code, d.at, d.message))
            .collect();
        if !errors.is_empty() {
            failures.push(format!("{path} ({}): {errors:?}", b["made_with"]));
        }
    }
    assert!(
        failures.is_empty(),
        "{} false alarms:\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}

/// Every action graph-vcr knows has bodies in the corpus, but those the SDK has no builder
/// for (managedAppPolicies' assign and its alternate paths, absent from msgraph-sdk 1.65.0).
#[test]
fn the_corpus_covers_every_assign_builder() -> Result<(), Box<dyn std::error::Error>> {
    let corpus: Value = serde_json::from_str(CORPUS)?;
    let bodies = corpus["bodies"].as_array().ok_or("no bodies")?;
    let covered: Vec<String> = bodies
        .iter()
        .filter_map(|b| classify(b["path"].as_str()?, None).action)
        .map(|a| format!("{} {}", a.version, a.path))
        .collect();
    let missing: Vec<String> = graph_vcr::contract::registry()
        .actions()
        .map(|a| format!("{} {}", a.version, a.path))
        .filter(|label| !covered.contains(label))
        .filter(|label| {
            !label.contains("managedAppPolicies") && !label.contains("managedAppRegistrations")
        })
        .collect();
    assert!(missing.is_empty(), "no SDK bodies for: {missing:#?}");
    Ok(())
}
