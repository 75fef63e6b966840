//! Fuzz the pickle machine directly: any bytes, default limits, no panic, bounded time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_scan::{Context, Location, ScanOptions};

fuzz_target!(|data: &[u8]| {
    let options = ScanOptions {
        max_pickle_ops: 1_000_000,
        profiles: vec!["sklearn".to_owned()],
        ..ScanOptions::default()
    };
    let mut findings = Vec::new();
    let mut cx = Context {
        location: Location::file("fuzz.pkl"),
        options: &options,
        findings: &mut findings,
        depth: 0,
    };
    let mut r = data;
    let _ = warden_scan::formats::pickle::scan_stream(&mut r, 0, &mut cx);
});
