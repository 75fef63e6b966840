//! Fuzz the safetensors structural validator on arbitrary bytes: it must never panic, hang or
//! allocate beyond its bounds; every outcome is a finding or a typed error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_scan::formats::safetensors;
use warden_scan::{Context, Location, ScanOptions};

fuzz_target!(|data: &[u8]| {
    for deep in [false, true] {
        let opts = ScanOptions {
            deep,
            max_header_bytes: 1 << 20,
            ..ScanOptions::default()
        };
        let mut findings = Vec::new();
        let mut cx = Context {
            location: Location::file("fuzz"),
            options: &opts,
            findings: &mut findings,
            depth: 0,
        };
        let _ = safetensors::sniff(data);
        let _ = safetensors::scan(&mut std::io::Cursor::new(data), data.len() as u64, &mut cx);
    }
});
