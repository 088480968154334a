//! Redaction: no panic, and no JWT survives redact::bytes.
#![no_main]

use graph_vcr::redact::{self, Secrets};
use libfuzzer_sys::fuzz_target;

fn has_jwt(b: &[u8]) -> bool {
    // A JWT is eyJ + 8 base64url, '.', 8 base64url, '.'.
    let ok = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
    (0..b.len()).any(|i| {
        let s = &b[i..];
        if !s.starts_with(b"eyJ") {
            return false;
        }
        let first = s.iter().take_while(|c| ok(**c)).count();
        if first < 8 || s.get(first) != Some(&b'.') {
            return false;
        }
        let second = s[first + 1..].iter().take_while(|c| ok(**c)).count();
        second >= 8 && s.get(first + 1 + second) == Some(&b'.')
    })
}

fuzz_target!(|data: &[u8]| {
    let out = redact::bytes(data);
    assert!(!has_jwt(&out), "a JWT survived redaction");
    let _ = redact::body(data, &mut Secrets::default());
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = redact::query(text, &mut Secrets::default());
    }
});
