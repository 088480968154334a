//! The body canonicalizer and the key: no panic, no hang, and canonical JSON is a fixed point.
#![no_main]

use graph_vcr::classify::classify;
use graph_vcr::key::{CanonicalBody, Key, KeyOptions, json_depth_exceeds};
use libfuzzer_sys::fuzz_target;

const PATH: &str = "/v1.0/deviceManagement/deviceEnrollmentConfigurations/c/assign";

fuzz_target!(|data: &[u8]| {
    // The proxy refuses deeper bodies before any JSON walk; mirror that bound.
    if json_depth_exceeds(data, 64) {
        return;
    }
    let c = classify(PATH, None);
    for opts in [
        KeyOptions::default(),
        KeyOptions { ordered_arrays: true, ignore_fields: vec!["id".into(), "/enrollmentConfigurationAssignments/*/target".into()] },
    ] {
        let canonical = CanonicalBody::of(data, c.action, &opts);
        let _ = Key::compute("POST", &c, &canonical);
        if let CanonicalBody::Json(text) = &canonical {
            assert_eq!(&CanonicalBody::of(text.as_bytes(), c.action, &opts), &canonical, "not idempotent");
        }
    }
});
