//! One test over every input the fuzzers found a problem with (`tests/regressions/`,
//! named `<target>-<kind>-<hash>`): each must scan without a panic, in bounded time,
//! and produce a report. The leaks these inputs exposed (reference cycles between
//! placeholders) are pinned down precisely by unit tests in `formats/pickle.rs`.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failure should stop the test"
)]

use std::path::Path;
use std::time::{Duration, Instant};
use warden_scan::ScanOptions;

#[test]
fn fuzz_regressions_scan_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let start = Instant::now();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let report = if name.starts_with("pickle-") {
            let options = ScanOptions::default();
            let mut findings = Vec::new();
            let mut cx = warden_scan::Context {
                location: warden_scan::Location::file(name.clone()),
                options: &options,
                findings: &mut findings,
                depth: 0,
            };
            let mut r = &data[..];
            let _ = warden_scan::formats::pickle::scan_stream(&mut r, 0, &mut cx);
            findings.len()
        } else {
            let mut c = std::io::Cursor::new(&data);
            let r =
                warden_scan::scan_reader(&mut c, data.len() as u64, &name, &ScanOptions::default());
            r.findings.len() + r.errors.len()
        };
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{name} took too long"
        );
        // Every regression input is hostile or malformed: it must not pass silently.
        assert!(report > 0, "{name}: no finding and no error");
        n += 1;
    }
    assert!(n >= 2, "regression inputs missing");
}
