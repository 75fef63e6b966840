//! HDF5 reader tests over files written by h5py (see `tests/corpus/make_formats_corpus.py`).

use super::*;
use crate::{Finding, Location, ScanOptions};
use std::io::Cursor;

const SEQ: &[u8] = include_bytes!("../../../tests/corpus/benign/h5/keras2-sequential.h5");
const VLEN: &[u8] = include_bytes!("../../../tests/corpus/benign/h5/keras2-vlen-latest.h5");
const USERBLOCK: &[u8] = include_bytes!("../../../tests/corpus/benign/h5/keras2-userblock.h5");
const LARGE: &[u8] = include_bytes!("../../../tests/corpus/benign/h5/keras2-large-config.h5");
const LAMBDA: &[u8] = include_bytes!("../../../tests/corpus/malicious/h5/ws701-lambda-bytecode.h5");
const LAMBDA_VLEN: &[u8] =
    include_bytes!("../../../tests/corpus/malicious/h5/ws701-lambda-vlen-latest.h5");
const DENSE: &[u8] = include_bytes!("../../../tests/data/h5-dense-attributes.h5");

fn run(b: &[u8]) -> (Result<(), Error>, Vec<Finding>) {
    let opts = ScanOptions::default();
    let mut out = Vec::new();
    let mut cx = Context {
        location: Location::file("m.h5"),
        options: &opts,
        findings: &mut out,
        depth: 0,
    };
    let r = scan(&mut Cursor::new(b), b.len() as u64, &mut cx);
    (r, out)
}

#[test]
fn benign_files_are_clean() {
    for b in [SEQ, VLEN, USERBLOCK, LARGE] {
        let (r, f) = run(b);
        r.unwrap();
        assert!(f.is_empty(), "{f:?}");
    }
    assert!(sniff(SEQ) && sniff(VLEN) && sniff(USERBLOCK) && !sniff(&USERBLOCK[..512]));
}

#[test]
fn model_config_is_found_and_checked() {
    for b in [LAMBDA, LAMBDA_VLEN] {
        let (r, f) = run(b);
        r.unwrap();
        let w = f.iter().find(|f| f.rule == "WS701").expect("lambda found");
        assert_eq!(w.severity, Severity::Critical);
        // the offset points at the attribute value inside the file
        let off = w.location.offset.unwrap() as usize;
        assert_eq!(
            b.get(off),
            Some(&b'{'),
            "offset {off} is not the JSON start"
        );
        assert!(w.message.contains("model_config"));
    }
}

#[test]
fn dense_attribute_storage_fails_closed() {
    let (r, _) = run(DENSE);
    assert!(matches!(r, Err(Error::Unsupported { .. })), "{r:?}");
}

#[test]
fn corrupt_addresses_are_findings() {
    // superblock v0: root object header address at byte 64
    let mut b = SEQ.to_vec();
    b[64..72].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let (r, f) = run(&b);
    r.unwrap();
    assert_eq!(f.iter().map(|f| f.rule).collect::<Vec<_>>(), vec!["WS710"]);
    let mut b = SEQ.to_vec();
    b[13] = 3; // size of offsets 3: unsupported
    assert!(matches!(run(&b).0, Err(Error::Unsupported { .. })));
    assert_eq!(run(b"\x89HDF\r\n\x1a\n").1[0].rule, "WS710");
    assert_eq!(run(b"nothing here").1[0].rule, "WS710");
    let mut b = SEQ.to_vec();
    b.extend_from_slice(b"trailing");
    assert_eq!(run(&b).1[0].rule, "WS711");
}

#[test]
fn duplicate_config_attribute_is_a_finding() {
    // Turn the `training_config` attribute's name into a second `model_config`.
    let mut b = SEQ.to_vec();
    let at = b
        .windows(16)
        .position(|w| w == b"training_config\0")
        .unwrap();
    b[at..at + 16].copy_from_slice(b"model_config\0\0\0\0");
    // name size field (2 bytes, 4 bytes before the padded name in a v1 attribute) = 13
    b[at - 6..at - 4].copy_from_slice(&13u16.to_le_bytes());
    let (r, f) = run(&b);
    r.unwrap();
    assert!(
        f.iter()
            .any(|f| f.rule == "WS710" && f.message.contains("twice")),
        "{f:?}"
    );
}

#[test]
fn every_truncation_and_byte_flip_is_safe() {
    for src in [SEQ, VLEN] {
        for n in (0..src.len()).step_by(7) {
            let _ = run(&src[..n]);
        }
        for i in 0..src.len().min(3000) {
            let mut b = src.to_vec();
            b[i] ^= 0xff;
            let _ = run(&b);
        }
    }
}
