//! Known-answer tests: every inclusion and consistency vector from transparency-dev/merkle
//! under `shared/data/merkle/` (next to the repository), including the corrupted proofs
//! that must fail. Also checks that our proof *generation* reproduces every happy-path
//! proof from the same tree.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use std::path::{Path, PathBuf};
use warden_tlog::merkle::{self, MemoryTree};

/// `shared/data/merkle` beside the repository (`../../../shared` from this crate, as
/// CI lays it out), else in the nearest ancestor directory that has one.
fn vectors_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let primary = manifest.join("../../../shared/data/merkle");
    if primary.is_dir() {
        return primary;
    }
    for a in manifest.ancestors() {
        let d = a.join("shared/data/merkle");
        if d.is_dir() {
            return d;
        }
    }
    panic!(
        "{}: the shared Merkle test vectors are missing (CI places shared/ beside the repository)",
        primary.display()
    );
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn b64(v: &serde_json::Value) -> Vec<u8> {
    B64.decode(v.as_str().unwrap_or("")).unwrap()
}

fn proof(v: &serde_json::Value) -> Vec<Vec<u8>> {
    v.as_array()
        .map(|a| a.iter().map(b64).collect())
        .unwrap_or_default()
}

#[test]
fn inclusion_vectors() {
    let all = files(&vectors_dir().join("inclusion"));
    assert!(all.len() > 50, "only {} inclusion vectors found", all.len());
    let (mut ok, mut bad) = (0, 0);
    for f in all {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        let r = merkle::verify_inclusion(
            &b64(&v["leafHash"]),
            v["leafIdx"].as_u64().unwrap(),
            v["treeSize"].as_u64().unwrap(),
            &proof(&v["proof"]),
            &b64(&v["root"]),
        );
        let want_err = v["wantErr"].as_bool().unwrap();
        assert_eq!(r.is_err(), want_err, "{}: {:?}", f.display(), r);
        if want_err { bad += 1 } else { ok += 1 }
    }
    assert!(ok >= 5 && bad >= 50, "ok={ok} bad={bad}");
}

#[test]
fn consistency_vectors() {
    let all = files(&vectors_dir().join("consistency"));
    assert!(
        all.len() > 50,
        "only {} consistency vectors found",
        all.len()
    );
    let (mut ok, mut bad) = (0, 0);
    for f in all {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        let r = merkle::verify_consistency(
            v["size1"].as_u64().unwrap(),
            v["size2"].as_u64().unwrap(),
            &proof(&v["proof"]),
            &b64(&v["root1"]),
            &b64(&v["root2"]),
        );
        let want_err = v["wantErr"].as_bool().unwrap();
        assert_eq!(r.is_err(), want_err, "{}: {:?}", f.display(), r);
        if want_err { bad += 1 } else { ok += 1 }
    }
    assert!(ok >= 5 && bad >= 50, "ok={ok} bad={bad}");
}

/// The vectors' tree is the 8-entry tree of RFC 6962's reference tests; its leaves are
/// known (transparency-dev/merkle `testonly`): "", 0x00, 0x10, 0x2021, 0x3031, 0x40414243,
/// 0x5051525354555657, 0x606162636465666768696a6b6c6d6e6f. Regenerate every happy-path
/// proof from it and compare byte for byte.
#[test]
fn generated_proofs_match_the_happy_paths() {
    let leaves: [&[u8]; 8] = [
        b"",
        &[0x00],
        &[0x10],
        &[0x20, 0x21],
        &[0x30, 0x31],
        &[0x40, 0x41, 0x42, 0x43],
        &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
        &[
            0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d,
            0x6e, 0x6f,
        ],
    ];
    let mut t = MemoryTree::new();
    for l in leaves {
        t.push(l);
    }
    let dir = vectors_dir();
    let mut checked = 0;
    for f in files(&dir.join("inclusion")) {
        if !f.ends_with("happy-path.json") {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        let (i, n) = (
            v["leafIdx"].as_u64().unwrap(),
            v["treeSize"].as_u64().unwrap(),
        );
        if n > 8 {
            continue;
        }
        assert_eq!(
            t.root_at(n).unwrap().to_vec(),
            b64(&v["root"]),
            "{}",
            f.display()
        );
        let got: Vec<Vec<u8>> = merkle::inclusion_proof(&mut t, i, n)
            .unwrap()
            .iter()
            .map(|h| h.to_vec())
            .collect();
        assert_eq!(got, proof(&v["proof"]), "{}", f.display());
        checked += 1;
    }
    for f in files(&dir.join("consistency")) {
        if !f.ends_with("happy-path.json") {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        let (a, b) = (v["size1"].as_u64().unwrap(), v["size2"].as_u64().unwrap());
        if b > 8 {
            continue;
        }
        let got: Vec<Vec<u8>> = merkle::consistency_proof(&mut t, a, b)
            .unwrap()
            .iter()
            .map(|h| h.to_vec())
            .collect();
        assert_eq!(got, proof(&v["proof"]), "{}", f.display());
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} happy paths regenerated");
}
