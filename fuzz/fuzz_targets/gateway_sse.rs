//! Fuzz the gateway's SSE response minimiser with untrusted upstream bytes, fed in
//! arbitrary chunkings. It must never panic, never emit more than it bounds, emit the
//! same bytes however the input is chunked, and every `data:` line it emits must be
//! valid JSON (or `[DONE]`) without logprob data, the only data line of its event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_gateway::minimize::{ResponsePolicy, SseMinimizer};
use warden_gateway::validate::Endpoint;

fn has_logprobs(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Object(o) => o.iter().any(|(k, x)| {
            ((k == "logprobs" || k == "top_logprobs") && !x.is_null()) || has_logprobs(x)
        }),
        serde_json::Value::Array(a) => a.iter().any(has_logprobs),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let endpoint = match ctl % 3 {
        0 => Endpoint::Chat,
        1 => Endpoint::Completions,
        _ => Endpoint::Responses,
    };
    let policy = ResponsePolicy {
        endpoint,
        keep_logprobs: false,
    };
    let mut m = SseMinimizer::new(policy, ctl & 0x10 != 0, 4096);
    let step = usize::from(ctl >> 5) + 1;
    let mut out = Vec::new();
    for chunk in rest.chunks(step) {
        match m.feed(chunk) {
            Ok(b) => out.extend_from_slice(&b),
            Err(_) => return,
        }
    }
    out.extend_from_slice(&m.finish());
    // Chunking changes nothing (line ends split across chunks, a byte-order mark in
    // pieces): the same bytes fed at once give the same output, unless that one
    // buffer outgrows the event limit.
    let mut whole = SseMinimizer::new(policy, ctl & 0x10 != 0, 4096);
    if let Ok(b) = whole.feed(rest) {
        let mut at_once = b.to_vec();
        at_once.extend_from_slice(&whole.finish());
        assert_eq!(at_once, out, "chunks of {step} differ from one feed");
    }
    for line in out.split(|b| *b == b'\n') {
        if let Some(d) = line.strip_prefix(b"data: ") {
            if d == b"[DONE]" {
                continue;
            }
            let v: serde_json::Value = serde_json::from_slice(d).expect("emitted event is JSON");
            assert!(!has_logprobs(&v), "logprob data leaked: {v}");
        }
    }
    // Every emitted event is one payload, as a client joins it: one data line, at most
    // one name before it, then the blank line.
    for event in out
        .split(|b| *b == b'\n')
        .collect::<Vec<_>>()
        .split(|l| l.is_empty())
    {
        let data = event.iter().filter(|l| l.starts_with(b"data: ")).count();
        assert!(
            event.is_empty()
                || (data == 1
                    && event.len() <= 2
                    && event.last().is_some_and(|l| l.starts_with(b"data: "))),
            "event not one payload: {event:?}"
        );
    }
});
