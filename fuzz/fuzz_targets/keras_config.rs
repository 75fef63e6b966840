//! Fuzz the Keras config checker (`config.json` / `metadata.json` members of a `.keras`
//! zip) on arbitrary bytes: it must never panic or recurse without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_scan::formats::keras;
use warden_scan::{Context, Location, ScanOptions};

fuzz_target!(|data: &[u8]| {
    let opts = ScanOptions::default();
    for name in ["config.json", "metadata.json"] {
        let mut findings = Vec::new();
        let mut cx = Context {
            location: Location::file("fuzz.keras"),
            options: &opts,
            findings: &mut findings,
            depth: 1,
        };
        let _ = keras::scan_archive_member(name, data, &mut cx);
    }
});
