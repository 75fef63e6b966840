//! Throughput of the pickle machine on the two shapes that dominate real files: a dense
//! list of floats (one opcode per value) and a dict of large byte payloads (skipped, not
//! read). Run: `cargo bench -p warden-scan --bench pickle`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use warden_scan::{Context, Location, ScanOptions};

/// `pickle.dumps([float(i) for i in range(n)], protocol=4)` as CPython writes it:
/// EMPTY_LIST, MEMOIZE, then MARK + 1000 BINFLOATs + APPENDS batches.
fn dense_floats(n: usize) -> Vec<u8> {
    let mut p = vec![0x80, 4, b']', 0x94];
    let mut i = 0;
    while i < n {
        p.push(b'(');
        for _ in 0..1000.min(n - i) {
            p.push(b'G');
            p.extend_from_slice(&(i as f64).to_be_bytes());
            i += 1;
        }
        p.push(b'e');
    }
    p.push(b'.');
    p
}

/// A dict of `n` NumPy-like entries: short keys and 1 MiB BINBYTES payloads.
fn payload_dict(n: usize) -> Vec<u8> {
    let mut p = vec![0x80, 4, b'}', 0x94, b'('];
    for i in 0..n {
        let key = format!("layer{i}.weight");
        p.push(0x8c);
        p.push(key.len() as u8);
        p.extend_from_slice(key.as_bytes());
        p.push(0x94);
        p.push(b'B');
        p.extend_from_slice(&(1u32 << 20).to_le_bytes());
        p.extend(std::iter::repeat_n(0u8, 1 << 20));
        p.push(0x94);
    }
    p.extend_from_slice(b"u.");
    p
}

fn scan(bytes: &[u8], options: &ScanOptions) -> usize {
    let mut findings = Vec::new();
    let mut cx = Context {
        location: Location::file("bench.pkl"),
        options,
        findings: &mut findings,
        depth: 0,
    };
    let mut r = bytes;
    let _ = warden_scan::formats::pickle::scan_stream(&mut r, 0, &mut cx);
    findings.len()
}

fn bench(c: &mut Criterion) {
    let options = ScanOptions::default();
    let mut g = c.benchmark_group("pickle");
    let dense = dense_floats(1_000_000);
    g.throughput(Throughput::Bytes(dense.len() as u64));
    g.bench_function("dense_floats_9MB", |b| {
        b.iter(|| scan(black_box(&dense), &options))
    });
    let dict = payload_dict(32);
    g.throughput(Throughput::Bytes(dict.len() as u64));
    g.bench_function("payload_dict_32MB", |b| {
        b.iter(|| scan(black_box(&dict), &options))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
