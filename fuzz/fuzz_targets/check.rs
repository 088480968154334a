//! The contract checker, on arbitrary bodies for every registered action: no panic, no hang.
#![no_main]

use graph_vcr::check::check_offline;
use graph_vcr::contract::registry;
use graph_vcr::key::json_depth_exceeds;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() || json_depth_exceeds(data, 64) {
        return;
    }
    // The first byte picks the action, the rest is the body.
    let actions: Vec<String> = registry().actions().map(|a| format!("/{}{}", a.version, a.path)).collect();
    let action = &actions[data[0] as usize % actions.len()];
    let _ = check_offline(action, &data[1..]);
});
