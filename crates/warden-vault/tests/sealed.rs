//! Tamper cases and random access for the sealed format.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers may panic"
)]

use proptest::prelude::*;
use std::io::Cursor;
use std::sync::OnceLock;
use warden_vault::Error;
use warden_vault::key::{DataKey, FileProvider, KeyProvider};
use warden_vault::sealed::{self, Binding, Header, SealOptions, SealedFile};

const SEG: u32 = sealed::MIN_SEGMENT;

fn sha256(b: &[u8]) -> [u8; 32] {
    let mut o = [0u8; 32];
    o.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b).as_ref());
    o
}

fn plaintext(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[1] ^ seed)
        .collect()
}

fn header(path: &str, pt: &[u8]) -> Header {
    Header {
        segment_size: SEG,
        plaintext_len: pt.len() as u64,
        salt: sealed::random_salt().unwrap(),
        plaintext_sha256: sha256(pt),
        manifest_digest: [7; 32],
        name: "smol".into(),
        version: "1.0".into(),
        path: path.into(),
        kek_id: "file:test".into(),
        data_key_id: "dk-test".into(),
        wrapped_key: vec![0xab; 40],
    }
}

fn binding(path: &str) -> Binding {
    Binding {
        name: "smol".into(),
        version: "1.0".into(),
        path: path.into(),
        manifest_digest: [7; 32],
    }
}

fn seal_bytes(key: &DataKey, h: &Header, pt: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    sealed::seal(
        key,
        h,
        pt,
        &mut out,
        SealOptions {
            verify_digest: true,
        },
        &|_| {},
    )
    .unwrap();
    out
}

fn unseal(key: &DataKey, path: &str, ct: &[u8]) -> Result<Vec<u8>, Error> {
    let mut f = SealedFile::open(Cursor::new(ct), "model.sealed", &binding(path), key)?;
    let mut out = Vec::new();
    f.unseal_to(&mut out, &|_| {})?;
    Ok(out)
}

/// Offset of segment `i` in a sealed file.
fn seg_at(ct: &[u8], i: usize) -> usize {
    let hl = u32::from_be_bytes(ct[10..14].try_into().unwrap()) as usize;
    hl + i * (SEG as usize + 16)
}

/// 2.5 segments: two full, one partial.
fn three_segments() -> (DataKey, Vec<u8>, Vec<u8>) {
    let key = DataKey::generate().unwrap();
    let pt = plaintext(SEG as usize * 5 / 2, 1);
    let ct = seal_bytes(&key, &header("weights.bin", &pt), &pt);
    (key, pt, ct)
}

#[test]
fn round_trip_at_segment_boundaries() {
    let key = DataKey::generate().unwrap();
    let s = SEG as usize;
    for len in [0, 1, s - 1, s, s + 1, 2 * s, 2 * s + 17] {
        let pt = plaintext(len, 3);
        let ct = seal_bytes(&key, &header("a", &pt), &pt);
        let segs = len.div_ceil(s).max(1);
        assert_eq!(ct.len(), seg_at(&ct, 0) + len + 16 * segs, "len {len}");
        assert_eq!(unseal(&key, "a", &ct).unwrap(), pt, "len {len}");
    }
}

#[test]
fn flipped_byte_in_each_segment() {
    let (key, _pt, ct) = three_segments();
    for i in 0..3 {
        for at in [
            seg_at(&ct, i),
            seg_at(&ct, i) + 1000,
            seg_at(&ct, i + 1) - 1,
        ] {
            let at = at.min(ct.len() - 1);
            let mut bad = ct.clone();
            bad[at] ^= 0x01;
            let err = unseal(&key, "weights.bin", &bad).unwrap_err();
            assert!(
                matches!(err, Error::SegmentTampered { index, .. } if index == i as u64),
                "segment {i} offset {at}: {err}"
            );
            assert_eq!(
                err.to_string(),
                format!(
                    "model.sealed: segment {i} failed authentication: modified, truncated, reordered, or swapped in from another file"
                )
            );
        }
    }
}

#[test]
fn every_header_byte_is_protected() {
    let (key, _pt, ct) = three_segments();
    let hl = seg_at(&ct, 0);
    for at in 0..hl {
        let mut bad = ct.clone();
        bad[at] ^= 0x80;
        let err = SealedFile::open(
            Cursor::new(&bad),
            "model.sealed",
            &binding("weights.bin"),
            &key,
        )
        .expect_err(&format!("flip at header byte {at} was not detected"));
        let msg = err.to_string();
        assert!(msg.starts_with("model.sealed: "), "{msg}");
    }
    // A field edit that keeps the header well-formed is caught by authentication.
    let mut bad = ct.clone();
    bad[30] ^= 0x01; // inside the salt
    let err = SealedFile::open(
        Cursor::new(&bad),
        "model.sealed",
        &binding("weights.bin"),
        &key,
    )
    .unwrap_err();
    assert!(matches!(err, Error::HeaderTampered { .. }), "{err}");
}

#[test]
fn truncated_and_extended_files() {
    let (key, _pt, ct) = three_segments();
    for cut in [1, 16, ct.len() - seg_at(&ct, 2), ct.len() - seg_at(&ct, 1)] {
        let err = unseal(&key, "weights.bin", &ct[..ct.len() - cut]).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Length {
                    what: "truncated",
                    ..
                }
            ),
            "cut {cut}: {err}"
        );
        assert!(err.to_string().contains("(truncated)"), "{err}");
    }
    // Cut inside the header.
    let err = unseal(&key, "weights.bin", &ct[..40]).unwrap_err();
    assert!(
        err.to_string().contains("truncated inside the header"),
        "{err}"
    );
    let mut long = ct.clone();
    long.extend_from_slice(&[0; 5]);
    let err = unseal(&key, "weights.bin", &long).unwrap_err();
    assert!(err.to_string().contains("trailing data"), "{err}");
}

#[test]
fn swapped_segments_are_detected() {
    let (key, _pt, ct) = three_segments();
    let (a, b) = (seg_at(&ct, 0), seg_at(&ct, 1));
    let n = SEG as usize + 16;
    let mut bad = ct.clone();
    let s0 = ct[a..a + n].to_vec();
    let s1 = ct[b..b + n].to_vec();
    bad[a..a + n].copy_from_slice(&s1);
    bad[b..b + n].copy_from_slice(&s0);
    let err = unseal(&key, "weights.bin", &bad).unwrap_err();
    assert!(
        matches!(err, Error::SegmentTampered { index: 0, .. }),
        "{err}"
    );
}

#[test]
fn a_full_segment_moved_into_the_last_position_is_detected() {
    // Same size as the last segment only if the plaintext is a multiple of the segment
    // size: then segment 0 (flag "not last") placed last must fail on the flag alone.
    let key = DataKey::generate().unwrap();
    let pt = plaintext(SEG as usize * 2, 9);
    let ct = seal_bytes(&key, &header("w", &pt), &pt);
    let n = SEG as usize + 16;
    let (a, b) = (seg_at(&ct, 0), seg_at(&ct, 1));
    let mut bad = ct.clone();
    let s0 = ct[a..a + n].to_vec();
    bad[b..b + n].copy_from_slice(&s0);
    let mut f = SealedFile::open(Cursor::new(&bad), "m", &binding("w"), &key).unwrap();
    assert_eq!(f.read_range(0, 10).unwrap(), pt[..10]);
    let err = f.read_range(SEG as u64, 10).unwrap_err();
    assert!(
        matches!(err, Error::SegmentTampered { index: 1, .. }),
        "{err}"
    );
}

#[test]
fn swapped_files_are_detected() {
    let key = DataKey::generate().unwrap();
    let pa = plaintext(SEG as usize + 5, 1);
    let pb = plaintext(SEG as usize + 5, 2);
    let ca = seal_bytes(&key, &header("a.safetensors", &pa), &pa);
    let cb = seal_bytes(&key, &header("b.safetensors", &pb), &pb);
    // Whole file B stored where A is expected: the binding says so.
    let err = unseal(&key, "a.safetensors", &cb).unwrap_err();
    assert_eq!(
        err.to_string(),
        "model.sealed: sealed file is bound to file path \"b.safetensors\", expected \"a.safetensors\""
    );
    // A's header with B's segments (same data key, same release): per-file keys differ.
    let mut spliced = ca[..seg_at(&ca, 0)].to_vec();
    spliced.extend_from_slice(&cb[seg_at(&cb, 0)..]);
    let err = unseal(&key, "a.safetensors", &spliced).unwrap_err();
    assert!(
        matches!(err, Error::SegmentTampered { index: 0, .. }),
        "{err}"
    );
    // Another release's file (different model version) is refused by its binding.
    let mut other = header("a.safetensors", &pa);
    other.version = "2.0".into();
    let c2 = seal_bytes(&key, &other, &pa);
    let err = unseal(&key, "a.safetensors", &c2).unwrap_err();
    assert!(
        err.to_string().contains("bound to version \"2.0\""),
        "{err}"
    );
}

#[test]
fn wrong_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = FileProvider::new(dir.path()).unwrap();
    let kek1 = p.create("one").unwrap();
    let kek2 = p.create("two").unwrap();
    let key = DataKey::generate().unwrap();
    let wrapped = kek1.wrap(&key).unwrap();
    assert_eq!(wrapped.len(), 40);
    let err = kek2.unwrap(&wrapped).unwrap_err();
    assert_eq!(
        err.to_string(),
        "key-encryption key file:two: cannot unwrap the data key: wrong key-encryption key or modified wrapped key"
    );
    assert_eq!(
        p.open("file:one")
            .unwrap()
            .unwrap(&wrapped)
            .unwrap()
            .as_bytes(),
        key.as_bytes()
    );
    let mut w2 = wrapped.clone();
    w2[5] ^= 1;
    assert!(kek1.unwrap(&w2).is_err());

    // Wrong data key: the header tag does not verify.
    let (_k, _pt, ct) = three_segments();
    let err = unseal(&key, "weights.bin", &ct).unwrap_err();
    assert!(matches!(err, Error::HeaderTampered { .. }), "{err}");

    // Destroyed KEK: cannot be opened any more.
    kek1.destroy().unwrap();
    let err = p.open("file:one").unwrap_err();
    assert!(
        err.to_string().contains("key file not found (destroyed?)"),
        "{err}"
    );
    assert!(p.posture().development_only);
}

#[test]
fn file_kek_refuses_loose_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let p = FileProvider::new(dir.path()).unwrap();
    p.create("k").unwrap();
    let f = dir.path().join("kek-k.key");
    assert_eq!(
        std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = p.open("file:k").unwrap_err();
    assert!(
        err.to_string().contains("readable by group or others"),
        "{err}"
    );
    assert!(p.create("../x").is_err());
}

#[test]
fn not_sealed_and_bad_bounds() {
    let key = DataKey::generate().unwrap();
    let err = unseal(&key, "a", b"PK\x03\x04 this is a zip").unwrap_err();
    assert_eq!(
        err.to_string(),
        "model.sealed: not a warden sealed file (bad magic)"
    );
    let mut huge = b"WARDSEAL\x00\x01".to_vec();
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    let err = unseal(&key, "a", &huge).unwrap_err();
    assert!(err.to_string().contains("header length"), "{err}");
    let mut v2 = b"WARDSEAL\x00\x02".to_vec();
    v2.extend_from_slice(&[0; 200]);
    let err = unseal(&key, "a", &v2).unwrap_err();
    assert!(
        err.to_string()
            .contains("unsupported sealed format version 2"),
        "{err}"
    );
    // A segment size outside 1..=4 MiB is refused before any allocation.
    let pt = plaintext(10, 0);
    let mut h = header("a", &pt);
    h.segment_size = 1 << 30;
    let mut out = Vec::new();
    assert!(sealed::seal(&key, &h, &pt[..], &mut out, SealOptions::default(), &|_| {}).is_err());
}

#[test]
fn seal_checks_input_length_and_digest() {
    let key = DataKey::generate().unwrap();
    let pt = plaintext(100, 0);
    let h = header("a", &pt);
    let mut out = Vec::new();
    let err = sealed::seal(
        &key,
        &h,
        &pt[..50],
        &mut out,
        SealOptions::default(),
        &|_| {},
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("input ended after 50 bytes"),
        "{err}"
    );
    let mut changed = pt.clone();
    changed[3] ^= 1;
    let err = sealed::seal(
        &key,
        &h,
        &changed[..],
        &mut Vec::new(),
        SealOptions {
            verify_digest: true,
        },
        &|_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("sha-256 changed"), "{err}");
}

fn shared() -> &'static (DataKey, Vec<u8>, Vec<u8>) {
    static S: OnceLock<(DataKey, Vec<u8>, Vec<u8>)> = OnceLock::new();
    S.get_or_init(|| {
        let key = DataKey::generate().unwrap();
        let pt = plaintext(SEG as usize * 3 + 12_345, 5);
        let ct = seal_bytes(&key, &header("weights.bin", &pt), &pt);
        (key, pt, ct)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_ranges_match_plaintext(a in 0u64..(3 * SEG as u64 + 12_345), l in 0u64..(2 * SEG as u64 + 100)) {
        let (key, pt, ct) = shared();
        let len = l.min(pt.len() as u64 - a);
        let mut f = SealedFile::open(Cursor::new(ct), "m", &binding("weights.bin"), key).unwrap();
        let got = f.read_range(a, len).unwrap();
        prop_assert_eq!(&got[..], &pt[a as usize..(a + len) as usize]);
        // Past the end is an error, not a short read.
        prop_assert!(f.read_range(a, pt.len() as u64 - a + 1).is_err());
    }
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

/// One segment at a time (one thread) and three batches in flight (several threads)
/// write the same bytes, read each other's output, and report progress in order.
#[test]
fn pipeline_agrees_across_thread_counts() {
    let key = DataKey::generate().unwrap();
    // 2 threads → batches of 8 segments, 3 → 12: this spans several batches of each;
    // 1 thread goes one segment at a time.
    let pt = plaintext(27 * SEG as usize + 1234, 9);
    let h = header("w.bin", &pt);
    let mut sealed_by = Vec::new();
    for threads in [1, 2, 3] {
        let seen = std::sync::Mutex::new(Vec::new());
        let ct = pool(threads).install(|| {
            let mut out = Vec::new();
            sealed::seal(
                &key,
                &h,
                &pt[..],
                &mut out,
                SealOptions {
                    verify_digest: true,
                },
                &|done| seen.lock().unwrap().push(done),
            )
            .unwrap();
            out
        });
        let seen = seen.into_inner().unwrap();
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        assert_eq!(seen.last().copied(), Some(pt.len() as u64));
        sealed_by.push(ct);
    }
    assert!(sealed_by.windows(2).all(|w| w[0] == w[1]));
    for threads in [1, 2, 3] {
        let got = pool(threads).install(|| unseal(&key, "w.bin", &sealed_by[0]).unwrap());
        assert!(got == pt, "{threads} threads");
    }
    // A tampered segment in a later batch: an error, and what was written before it is
    // a prefix of the plaintext made of whole, authenticated segments.
    let mut bad = sealed_by[0].clone();
    let at = seg_at(&bad, 20) + 5;
    bad[at] ^= 1;
    for threads in [1, 3] {
        let mut out = Vec::new();
        let err = pool(threads).install(|| {
            let mut f =
                SealedFile::open(Cursor::new(&bad[..]), "m.sealed", &binding("w.bin"), &key)
                    .unwrap();
            f.unseal_to(&mut out, &|_| {}).unwrap_err()
        });
        assert!(
            matches!(err, Error::SegmentTampered { index: 20, .. }),
            "{err}"
        );
        assert!(out.len() <= 20 * SEG as usize, "{threads}: {}", out.len());
        assert_eq!(out.len() % SEG as usize, 0);
        assert!(out[..] == pt[..out.len()]);
    }
    // Input that ends early or goes on too long is refused with either engine.
    for threads in [1, 3] {
        pool(threads).install(|| {
            let mut out = Vec::new();
            let err = sealed::seal(
                &key,
                &h,
                &pt[..pt.len() - 1],
                &mut out,
                SealOptions::default(),
                &|_| {},
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("input ended after"), "{err}");
            let mut long = pt.clone();
            long.push(0);
            let err = sealed::seal(
                &key,
                &h,
                &long[..],
                &mut out,
                SealOptions::default(),
                &|_| {},
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("input is longer than"), "{err}");
        });
    }
}
