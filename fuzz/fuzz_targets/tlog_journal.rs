//! Fuzz the audit log's journal decoder (read back after a crash, from a directory
//! others may write to). Raw inputs must not panic. Structured inputs build a genuine
//! two-frame journal, then cut it short or flip one bit: a cut or a flip in the last
//! frame (what a torn append can do) must decode to exactly the entries of the frames
//! before it; a flip in the first frame (synced before the second was written) must be
//! refused, never decoded to other entries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_tlog::{Signer, journal};

const ORIGIN: &str = "fuzz.example/log";

fuzz_target!(|data: &[u8]| {
    let signer = Signer::from_seed(ORIGIN, [3u8; 32]).unwrap();
    let v = signer.verifier();
    let _ = journal::decode(data, &v, ORIGIN, "fuzz");
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let entries: Vec<Vec<u8>> = rest.chunks(7).map(<[u8]>::to_vec).collect();
    let (a, b) = entries.split_at(entries.len() / 2);
    let root = [5u8; 32];
    let mut j = journal::encode_frame(&signer, ORIGIN, 4, &root, 4, a).unwrap();
    let one = j.len();
    j.extend(journal::encode_frame(&signer, ORIGIN, 4, &root, 4 + a.len() as u64, b).unwrap());
    let total = j.len();
    let pos = usize::from(mode) * total / 256;
    let want = if mode % 2 == 0 {
        j.truncate(pos);
        Some(if pos < one { 0 } else { a.len() })
    } else {
        j[pos] ^= 1 << (mode % 8);
        (pos >= one).then_some(a.len())
    };
    let got = journal::decode(&j, &v, ORIGIN, "fuzz");
    match want {
        Some(n) => {
            let r = got.expect("a torn last frame must decode");
            let e = r.map(|r| r.entries).unwrap_or_default();
            assert_eq!(e.as_slice(), &entries[..n]);
        }
        None => assert!(got.is_err(), "damage to a synced frame accepted: {got:?}"),
    }
});
