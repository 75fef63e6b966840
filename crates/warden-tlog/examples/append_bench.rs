//! Durable append throughput and time-to-acknowledge of the log, measured on the
//! library (no CLI in the way): `WRITERS` threads append 1 KiB entries with the
//! blocking [`Log::append`], spread over `LOGS` open `Log`s on the same directory
//! (`LOGS` = 1: a single writer, the cheap path; 2 or more: writers that share the log,
//! each batch catching up with the others').
//!
//! `cargo run --release -p warden-tlog --example append_bench -- DIR ENTRIES WRITERS [LOGS]`

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden_tlog::{Log, LogOptions, PosixStorage, Signer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, entries, writers, rest @ ..] = args.as_slice() else {
        return Err("usage: append_bench DIR ENTRIES WRITERS [LOGS]".into());
    };
    let entries: usize = entries.parse()?;
    let writers: usize = writers.parse::<usize>()?.max(1);
    let logs: usize = rest.first().map_or(Ok(1), |s| s.parse())?;
    let signer = Signer::generate("bench.example/audit")?;
    let opened = (0..logs.max(1))
        .map(|_| {
            Log::open(
                Arc::new(PosixStorage::new(dir)),
                Signer::parse(&signer.to_key_string())?,
                "bench.example/audit",
                LogOptions::default(),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let pad = "x".repeat(1000);
    let start = Instant::now();
    let per = entries / writers;
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let log = opened[w % opened.len()].clone();
            let pad = pad.clone();
            std::thread::spawn(move || -> Result<Vec<Duration>, warden_tlog::Error> {
                let mut acks = Vec::with_capacity(per);
                for i in 0..per {
                    let t = Instant::now();
                    log.append(format!("{{\"w\":{w},\"i\":{i},\"pad\":\"{pad}\"}}").into_bytes())?;
                    acks.push(t.elapsed());
                }
                Ok(acks)
            })
        })
        .collect();
    let mut acks = Vec::new();
    for h in handles {
        acks.extend(h.join().map_err(|_| "writer thread panicked")??);
    }
    let secs = start.elapsed().as_secs_f64();
    acks.sort_unstable();
    let pct = |p: f64| {
        let i = ((acks.len() as f64 * p) as usize).min(acks.len().saturating_sub(1));
        acks.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let commits: u64 = opened.iter().map(Log::commits).sum();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "logs={} writers={writers} appends={} commits={commits} seconds={secs:.3} appends_per_s={:.0} p50_ms={:.2} p99_ms={:.2}",
        opened.len(),
        acks.len(),
        acks.len() as f64 / secs,
        pct(0.5),
        pct(0.99)
    )?;
    Ok(())
}
