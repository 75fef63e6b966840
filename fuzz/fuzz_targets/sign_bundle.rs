//! Fuzz the OpenSSF Model Signing bundle and statement parsers: arbitrary bytes as a
//! signature file, and as a DSSE payload (the signed statement). Neither may panic;
//! whatever parses must name only safe, canonical paths.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_sign::bundle::{PAYLOAD_TYPE, parse_bundle, parse_statement};

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = parse_bundle(data) {
        let _ = parse_statement(&b.payload_type, &b.payload);
    }
    if let Ok(m) = parse_statement(PAYLOAD_TYPE, data) {
        for e in m.entries() {
            let p = e.path();
            assert!(!p.starts_with('/'), "absolute path accepted: {p:?}");
            assert!(p == "." || !p.split('/').any(|c| c == ".." || c == "." || c.is_empty()), "unsafe path accepted: {p:?}");
            if let Some((s, end)) = e.range() {
                assert!(s < end, "empty shard accepted");
            }
        }
        let _ = m.digest();
    }
});
