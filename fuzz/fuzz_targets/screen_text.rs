//! Screening untrusted text: normalisation, decoding, rules, model, the screening of
//! parts joined around their seams, and the streaming
//! output screen must never panic, and the hold-back screen must release exactly the
//! input when nothing matches (for inputs whose tokens fit the window).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use warden_screen::output::{OutputPolicy, OutputRules, OutputScreen, Push};
use warden_screen::{Role, Screener};

static SCREENER: OnceLock<Option<Screener>> = OnceLock::new();
static RULES: OnceLock<Option<OutputRules>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(s) = SCREENER.get_or_init(|| Screener::embedded().ok()) {
        let v = s.screen_text(&text, Role::User);
        assert!((0.0..=1.0).contains(&v.score));
        // The same text cut into 2 to 6 parts at character boundaries: the joined
        // screening around the seams must not panic either, and a verdict is always given.
        let cuts = data.get(1).map_or(2, |b| usize::from(*b % 5) + 2);
        let step = (text.len() / cuts).max(1);
        let mut parts = Vec::new();
        let mut start = 0;
        while start < text.len() {
            let mut end = (start + step).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            parts.push((Role::User, &text[start..end]));
            start = end;
        }
        if !parts.is_empty() {
            let (_, v) = s.screen_parts(parts, s.default_policy()).expect("a verdict");
            assert!((0.0..=1.0).contains(&v.score));
        }
    }
    if let Some(r) = RULES.get_or_init(|| OutputRules::new(OutputPolicy::default()).ok()) {
        let split = data.first().map_or(1, |b| usize::from(*b % 17) + 1);
        let mut o = OutputScreen::new(r);
        let mut out = String::new();
        let chars: Vec<char> = text.chars().collect();
        for c in chars.chunks(split) {
            let c: String = c.iter().collect();
            if let Push::Released(x) = o.push(&c) {
                out.push_str(&x);
            }
        }
        if let Push::Released(x) = o.finish() {
            out.push_str(&x);
        }
        // Tokens longer than the hold-back window may be cut mid-token (then the stream
        // is only more conservative), so the equality is asserted for shorter tokens.
        let short_tokens = text.split_whitespace().all(|t| t.len() < 200);
        if short_tokens && !o.is_blocked() && r.screen_full(&text).as_deref() == Ok(text.as_ref()) {
            assert_eq!(out, text);
        }
    }
});
