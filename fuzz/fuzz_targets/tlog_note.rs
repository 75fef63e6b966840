//! Fuzz the parsers of untrusted log text: signed notes, checkpoints, receipts, verifier
//! keys, entry bundles. None may panic; whatever parses must re-serialize to the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_tlog::{Checkpoint, Note, Receipt, Verifier, tiles};

fuzz_target!(|data: &[u8]| {
    if let Ok(n) = Note::parse(data, "fuzz") {
        assert_eq!(n.to_bytes(), data, "note must round-trip");
        if let Ok(cp) = Checkpoint::parse_text(&n.text, "fuzz") {
            assert_eq!(cp.to_text(), n.text, "checkpoint must round-trip");
        }
    }
    let _ = Receipt::parse(data, "fuzz");
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = Verifier::parse(s);
        let _ = Checkpoint::parse_text(s, "fuzz");
    }
    if let Ok(entries) = tiles::parse_bundle(data, "fuzz") {
        let mut b = Vec::new();
        for e in entries {
            tiles::push_entry(&mut b, e).unwrap();
        }
        assert_eq!(b, data, "bundle must round-trip");
    }
});
