//! Cassette import: arbitrary documents are parsed, validated, re-keyed and written, or refused
//! with an error; never a panic.
#![no_main]

use graph_vcr::cassette::{Access, Store};
use graph_vcr::export;
use graph_vcr::key::json_depth_exceeds;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

struct Scratch {
    _dir: tempfile::TempDir,
    store: Store,
}

fn scratch() -> Option<&'static Scratch> {
    static S: OnceLock<Option<Scratch>> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::tempdir().ok()?;
        let store = Store::open(&dir.path().join("c"), Access::ReadWrite).ok()?;
        Some(Scratch { _dir: dir, store })
    })
    .as_ref()
}

fuzz_target!(|data: &[u8]| {
    if json_depth_exceeds(data, 64) {
        return;
    }
    let Ok(doc) = export::parse(data, "fuzz") else { return };
    if let Some(s) = scratch() {
        let _ = export::import(&s.store, doc, None, true, "fuzz");
    }
});
