//! Fuzz the container side: content detection, the zip reader, tar, gzip/zlib, NumPy and
//! nested archives, through the same entry point the CLI uses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_scan::ScanOptions;

fuzz_target!(|data: &[u8]| {
    let options = ScanOptions {
        max_pickle_ops: 1_000_000,
        max_uncompressed_bytes: 64 << 20,
        ..ScanOptions::default()
    };
    let mut c = std::io::Cursor::new(data);
    let _ = warden_scan::scan_reader(&mut c, data.len() as u64, "fuzz.bin", &options);
});
