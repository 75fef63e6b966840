//! Fuzz the gateway's streaming output screen (`SseScreen`) the way the gateway drives
//! it: untrusted upstream SSE bytes go through the minimiser, in arbitrary chunkings,
//! and what it emits is fed to the screen, once written and once as events (the two must
//! agree), and once more without the minimiser's reuse of repeated text events (the
//! same again). It must never panic, must fail closed (after
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
    let policy = ResponsePolicy {
        endpoint,
        keep_logprobs: false,
    };
    let step = usize::from(ctl >> 5) + 1;
    // Both hand-offs: written bytes (`feed`) and the minimiser's events as they are
    // (`feed_events`, the gateway's); they must let out the same bytes and end the same.
    let run = |parsed: bool, reuse: bool| -> (Vec<u8>, bool) {
        let m = SseMinimizer::new(policy, ctl & 0x10 != 0, 4096);
        let mut m = if reuse { m } else { m.without_reuse() };
        let mut s = SseScreen::standalone(Arc::clone(rules), endpoint);
        let mut out = Vec::new();
        let mut failed = false;
        let mut step_once = |m: &mut SseMinimizer, s: &mut SseScreen, chunk: Option<&[u8]>| {
            let r = if parsed {
                let evs = match chunk {
                    Some(c) => m.feed_events(c).ok(),
                    None => Some(m.finish_events()),
                };
                evs.map(|e| s.feed_events(e))
            } else {
                let b = match chunk {
                    Some(c) => m.feed(c).ok(),
                    None => Some(m.finish()),
                };
                b.map(|b| s.feed(&b))
            };
            match r {
                None => false,
                Some(Ok(b)) => {
                    assert!(!failed, "a blocked stream released more bytes");
                    out.extend_from_slice(&b);
                    true
                }
                Some(Err(_)) => {
                    failed = true;
                    true
                }
            }
        };
        for chunk in rest.chunks(step) {
            if !step_once(&mut m, &mut s, Some(chunk)) {
                return (out, true);
            }
        }
        step_once(&mut m, &mut s, None);
        match s.finish() {
            Ok(b) => {
                assert!(!failed, "a blocked stream finished cleanly");
                out.extend_from_slice(&b);
            }
            Err(_) => {
                failed = true;
                assert!(s.feed(b"data: {}\n\n").is_err(), "not fail-closed");
            }
        }
        (out, failed)
    };
    let (bytes, parsed) = (run(false, true), run(true, true));
    assert_eq!(bytes, parsed, "the two hand-offs differ");
    assert_eq!(parsed, run(true, false), "reusing text events changed the output");
    assert_eq!(bytes, run(false, false), "reusing text events changed the bytes");
    // The canary may not leave the screen, whatever the event shapes or chunking.
    let text = String::from_utf8_lossy(&parsed.0);
    assert!(!text.contains(CANARY), "canary released: {text}");
});
