//! The behaviour monitor reads every input, history and system text a client sends:
//! any sequence of texts (split from the input at NUL bytes), identities and clock
//! steps (forwards and back) must never panic, keep alert values finite, and keep its
//! bounded memory (a handful of identities, a small event cap, so evictions and window
//! expiry run often).
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_screen::monitor::{ContextText, Event, Monitor, MonitorConfig, SamplingParams};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let cfg = MonitorConfig {
        window_ms: 10_000,
        min_requests: 3,
        long_window_ms: if ctl & 1 == 0 { 60_000 } else { 0 },
        long_min_requests: 6,
        max_events: 16,
        max_identities: 3,
        judge_context: ctl & 2 != 0,
        ..MonitorConfig::default()
    };
    let mut m = Monitor::new(cfg);
    let mut now: u64 = 1_760_000_000_000;
    for (i, piece) in rest.split(|b| *b == 0).enumerate() {
        let text = String::from_utf8_lossy(piece);
        let step = piece.first().copied().unwrap_or(0);
        // Mostly forwards by up to 2.5 s; now and then a step back.
        if step == 0xff {
            now = now.saturating_sub(30_000);
        } else {
            now += u64::from(step) * 10;
        }
        let identity = ["a", "b", "c", "d"][i % (usize::from(ctl >> 4) % 4 + 1)];
        let (history, context) = if ctl & 4 != 0 && i % 3 == 1 {
            (
                text.as_ref(),
                vec![ContextText {
                    text: text.as_ref(),
                    key: u64::from(step),
                    assistant: step & 32 != 0,
                }],
            )
        } else {
            ("", Vec::new())
        };
        let ev = Event {
            at_ms: now,
            identity,
            input: &text,
            history,
            asks: step & 1 == 0,
            params: SamplingParams {
                temperature: (step & 2 != 0).then_some(f32::from(step) / 100.0),
                seed: (step & 4 != 0).then_some(u64::from(step)),
                ..SamplingParams::default()
            },
            output_tokens: u64::from(step) * 50,
            refused: step & 8 != 0,
            screening_hit: step & 16 != 0,
            conversation: None,
            context: &context,
            answers: &[],
        };
        for a in m.observe(&ev) {
            assert!(a.value.is_finite() && a.threshold.is_finite(), "{a:?}");
        }
    }
});
