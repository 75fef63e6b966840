//! Fuzz the audit log's journal decoder (read back after a crash, from a directory
//! others may write to). Raw inputs must not panic. Structured inputs build a genuine
//! two-frame journal, then cut it short or flip one byte: whatever decodes must be a
//! prefix of the genuine entries (the signature covers every frame's bundle), never
//! other entries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_tlog::{Signer, journal};

fuzz_target!(|data: &[u8]| {
    let signer = Signer::from_seed("fuzz.example/log", [3u8; 32]).unwrap();
    let v = signer.verifier();
    let _ = journal::decode(data, &v, "fuzz.example/log", "fuzz");
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let entries: Vec<Vec<u8>> = rest.chunks(7).map(<[u8]>::to_vec).collect();
    let (a, b) = entries.split_at(entries.len() / 2);
    let root = [5u8; 32];
    let mut j = journal::encode_frame(&signer, "fuzz.example/log", 4, &root, 4, a).unwrap();
    j.extend(journal::encode_frame(&signer, "fuzz.example/log", 4, &root, 4 + a.len() as u64, b).unwrap());
    let pos = usize::from(mode) * j.len() / 256;
    if mode % 2 == 0 {
        j.truncate(pos);
    } else if let Some(x) = j.get_mut(pos) {
        *x ^= 1 << (mode % 8);
    }
    if let Ok(Some(r)) = journal::decode(&j, &v, "fuzz.example/log", "fuzz") {
        assert!(r.entries.len() <= entries.len());
        assert_eq!(r.entries.as_slice(), &entries[..r.entries.len()]);
        assert_eq!((r.base_size, r.base_root), (4, root));
    }
});
