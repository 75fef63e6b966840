//! Fuzz the gateway's streaming output screen (`SseScreen`) the way the gateway drives
//! it: untrusted upstream SSE bytes go through the minimiser, in arbitrary chunkings,
//! and what it emits is fed to the screen. It must never panic, must fail closed (after
//! an `Err`, every later call errs), and must never release a planted canary.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use warden_gateway::minimize::{ResponsePolicy, SseMinimizer};
use warden_gateway::screening::SseScreen;
use warden_gateway::validate::Endpoint;
use warden_screen::output::{OutputPolicy, OutputRules};

const CANARY: &str = "CANARY-7f3a9c2e1b4d5a60";
static RULES: OnceLock<Option<Arc<OutputRules>>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some(rules) = RULES.get_or_init(|| {
        OutputRules::new(OutputPolicy {
            canaries: vec![CANARY.into()],
            ..OutputPolicy::default()
        })
        .ok()
        .map(Arc::new)
    }) else {
        return;
    };
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let endpoint = match ctl % 3 {
        0 => Endpoint::Chat,
        1 => Endpoint::Completions,
        _ => Endpoint::Responses,
    };
    let mut m = SseMinimizer::new(
        ResponsePolicy {
            endpoint,
            keep_logprobs: false,
        },
        ctl & 0x10 != 0,
        4096,
    );
    let mut s = SseScreen::standalone(Arc::clone(rules), endpoint);
    let step = usize::from(ctl >> 5) + 1;
    let mut out = Vec::new();
    let mut failed = false;
    let mut feed = |bytes: &[u8], s: &mut SseScreen, out: &mut Vec<u8>| match s.feed(bytes) {
        Ok(b) => {
            assert!(!failed, "a blocked stream released more bytes");
            out.extend_from_slice(&b);
        }
        Err(_) => failed = true,
    };
    for chunk in rest.chunks(step) {
        let Ok(b) = m.feed(chunk) else {
            return;
        };
        feed(&b, &mut s, &mut out);
    }
    let tail = m.finish();
    feed(&tail, &mut s, &mut out);
    match s.finish() {
        Ok(b) => {
            assert!(!failed, "a blocked stream finished cleanly");
            out.extend_from_slice(&b);
        }
        Err(_) => assert!(s.feed(b"data: {}\n\n").is_err(), "not fail-closed"),
    }
    // The canary may not leave the screen, whatever the event shapes or chunking.
    let text = String::from_utf8_lossy(&out);
    assert!(!text.contains(CANARY), "canary released: {text}");
});
