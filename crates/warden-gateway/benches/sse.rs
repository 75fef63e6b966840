//! The SSE minimiser on upstream streams: a chat answer of 200 events as an engine
//! sends it (LF and CRLF line ends), and one large event dripping in small chunks (what
//! a slow or hostile upstream can send: the event-end search must not rescan the
//! buffer for every chunk).
//!
//! `cargo bench -p warden-gateway --bench sse`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use warden_gateway::minimize::{ResponsePolicy, SseMinimizer};
use warden_gateway::validate::Endpoint;

const CHAT: ResponsePolicy = ResponsePolicy {
    endpoint: Endpoint::Chat,
    keep_logprobs: false,
};

fn chat_stream(nl: &str) -> Vec<u8> {
    let mut s = String::new();
    for i in 0..200 {
        s.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\
             \"model\":\"m\",\"system_fingerprint\":\"b1\",\"choices\":[{{\"index\":0,\
             \"delta\":{{\"content\":\" word{i}\"}},\"logprobs\":null,\"finish_reason\":null}}]}}{nl}{nl}"
        ));
    }
    s.push_str(&format!("data: [DONE]{nl}{nl}"));
    s.into_bytes()
}

fn run(input: &[u8], chunk: usize) -> usize {
    let mut m = SseMinimizer::new(CHAT, false, 1 << 20);
    let mut n = 0;
    for c in input.chunks(chunk) {
        n += m.feed(c).map(|b| b.len()).unwrap_or(0);
    }
    n + m.finish().len()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("sse_minimize");
    for (name, nl) in [
        ("chat_200_events_lf", "\n"),
        ("chat_200_events_crlf", "\r\n"),
    ] {
        let input = chat_stream(nl);
        g.throughput(Throughput::Bytes(input.len() as u64));
        // Engines flush an event at a time, often split across reads.
        g.bench_function(name, |b| b.iter(|| run(black_box(&input), 97)));
    }
    // One 256 KiB event arriving 64 bytes at a time.
    let mut big = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"".to_vec();
    big.extend(std::iter::repeat_n(b'x', 256 * 1024));
    big.extend_from_slice(b"\"}}]}\n\n");
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.sample_size(10);
    g.bench_function("one_256KiB_event_in_64B_chunks", |b| {
        b.iter(|| run(black_box(&big), 64))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
