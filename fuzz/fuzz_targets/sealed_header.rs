//! Sealed-file reader on arbitrary bytes: header parsing, bounds, length checks and
//! authentication must reject garbage with an error, never panic or over-allocate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::Cursor;
use warden_vault::key::DataKey;
use warden_vault::sealed::{Binding, SealedFile, read_header};

fuzz_target!(|data: &[u8]| {
    let _ = read_header(data, "fuzz");
    let Ok(key) = DataKey::from_bytes(&[7; 32]) else {
        return;
    };
    let binding = Binding {
        name: "m".into(),
        version: "1".into(),
        path: "f".into(),
        manifest_digest: [0; 32],
    };
    if let Ok(mut f) = SealedFile::open(Cursor::new(data), "fuzz", &binding, &key) {
        let n = f.header().plaintext_len.min(4096);
        let _ = f.read_range(0, n);
    }
});
