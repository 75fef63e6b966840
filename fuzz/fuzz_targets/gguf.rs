//! Fuzz the gguf structural validator on arbitrary bytes: it must never panic, hang or
//! allocate beyond its bounds; every outcome is a finding or a typed error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_scan::formats::gguf;

fuzz_target!(|data: &[u8]| warden_fuzz::structural(data, gguf::sniff, gguf::scan));
