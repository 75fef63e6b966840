//! Fuzz the Jinja chat-template checker on arbitrary text: it must never panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_scan::formats::gguf;
use warden_scan::{Context, Location, ScanOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let opts = ScanOptions::default();
    let mut findings = Vec::new();
    let mut cx = Context {
        location: Location::file("fuzz"),
        options: &opts,
        findings: &mut findings,
        depth: 0,
    };
    gguf::check_chat_template("tokenizer.chat_template", s, 0, &mut cx);
});
