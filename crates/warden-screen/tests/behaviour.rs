//! Behaviour monitor and drift on scripted traffic with an injected clock: a systematic
//! extraction client raises an alert within 60 s of simulated time and is throttled;
//! a replay of mixed benign traffic for the same duration raises none. A shifted input
//! distribution raises a PSI alert; an unshifted replay does not.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers stop on the first surprise"
)]

use std::path::Path;
use warden_screen::alert::{Alert, AlertAction, AlertKind, AlertSink, MemorySink, webhook_json};
use warden_screen::drift::{DriftConfig, DriftMonitor};
use warden_screen::monitor::{Event, Monitor, MonitorConfig, SamplingParams};
use warden_screen::{Role, Screener};

fn benign_prompts() -> Vec<String> {
    data_lines("benign_triggers.txt")
}

/// Small deterministic generator.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn event<'a>(at_ms: u64, identity: &'a str, input: &'a str, params: SamplingParams) -> Event<'a> {
    Event {
        at_ms,
        identity,
        input,
        history: "",
        asks: true,
        params,
        output_tokens: 200,
        refused: false,
        screening_hit: false,
        conversation: None,
        context: &[],
        answers: &[],
    }
}

const START: u64 = 1_760_000_000_000;

/// Feeds alerts to a sink the way the gateway does; returns them.
fn run(monitor: &mut Monitor, events: &[(u64, String, String, SamplingParams)]) -> Vec<Alert> {
    let sink = MemorySink::default();
    for (t, id, text, p) in events {
        for a in monitor.observe(&event(*t, id, text, *p)) {
            sink.send(&a).unwrap();
        }
    }
    sink.alerts()
}

#[test]
fn systematic_extraction_queries_alert_within_60s_and_are_throttled() {
    // A client probing a classifier: one template, systematically varied slots, 2 req/s.
    let products = [
        "phone", "laptop", "blender", "jacket", "novel", "headset", "camera", "kettle",
    ];
    let adjectives = [
        "great", "awful", "fine", "superb", "poor", "decent", "broken", "perfect",
    ];
    let mut events = Vec::new();
    for i in 0..120u64 {
        let text = format!(
            "Classify the sentiment of this review as positive or negative and give a confidence score: The {} I bought was {} and I would buy it again.",
            products[(i % 8) as usize],
            adjectives[((i / 8) % 8) as usize]
        );
        events.push((
            START + i * 500,
            "extractor".to_owned(),
            text,
            SamplingParams::default(),
        ));
    }
    let mut m = Monitor::new(MonitorConfig::default());
    let alerts = run(&mut m, &events);
    let first = alerts
        .iter()
        .find(|a| matches!(a.kind, AlertKind::NearDuplicates | AlertKind::InputSweep))
        .unwrap_or_else(|| panic!("no extraction alert: {alerts:?}"));
    assert_eq!(first.identity, "extractor");
    assert_eq!(first.action, AlertAction::Throttle);
    assert!(
        first.at_ms - START <= 60_000,
        "alert after {} ms",
        first.at_ms - START
    );
    // The webhook body carries it.
    assert!(webhook_json(first).contains("\"identity\":\"extractor\""));
}

#[test]
fn parameter_sweep_alerts() {
    // The same prompt with a temperature/top_p grid: 1 req/s.
    let mut events = Vec::new();
    for i in 0..60u64 {
        let p = SamplingParams {
            temperature: Some((i % 10) as f32 * 0.2),
            top_p: Some(if i % 20 < 10 { 1.0 } else { 0.5 }),
            ..SamplingParams::default()
        };
        events.push((
            START + i * 1000,
            "sweeper".to_owned(),
            "Complete the sentence: The secret ingredient of the recipe is".to_owned(),
            p,
        ));
    }
    let mut m = Monitor::new(MonitorConfig::default());
    let alerts = run(&mut m, &events);
    let sweep = alerts
        .iter()
        .find(|a| a.kind == AlertKind::ParameterSweep)
        .unwrap_or_else(|| panic!("{alerts:?}"));
    assert!(sweep.at_ms - START <= 60_000);
}

#[test]
fn mixed_benign_traffic_for_the_same_duration_raises_nothing() {
    let prompts = benign_prompts();
    let mut rng = Rng(0x5eed);
    let mut events = Vec::new();
    // One busy integration at 2 req/s with distinct prompts, and five people at their own
    // pace, some repeating a question, with ordinary parameter changes.
    for i in 0..120u64 {
        let text = prompts[i as usize % prompts.len()].clone();
        events.push((
            START + i * 500,
            "batch-job".to_owned(),
            text,
            SamplingParams::default(),
        ));
    }
    for user in 0..5u64 {
        let mut t = START + user * 777;
        while t < START + 60_000 {
            let text = prompts[rng.below(prompts.len())].clone();
            let p = SamplingParams {
                temperature: Some([0.2f32, 0.7, 1.0][rng.below(3)]),
                ..SamplingParams::default()
            };
            events.push((t, format!("user-{user}"), text, p));
            t += 2_000 + (rng.next() % 8_000);
        }
    }
    events.sort_by_key(|e| e.0);
    let mut m = Monitor::new(MonitorConfig::default());
    let alerts = run(&mut m, &events);
    assert!(alerts.is_empty(), "{alerts:#?}");
}

fn drift_texts(rng: &mut Rng, prompts: &[String], n: usize) -> Vec<String> {
    (0..n)
        .map(|_| prompts[rng.below(prompts.len())].clone())
        .collect()
}

#[test]
fn drift_shift_alerts_and_unshifted_replay_does_not() {
    let s = Screener::embedded().unwrap();
    let prompts = benign_prompts();
    let cfg = DriftConfig::default();
    let mut rng = Rng(42);
    let baseline = drift_texts(&mut rng, &prompts, cfg.baseline_size);
    let scored = |t: &str| s.screen_text(t, Role::User).score;

    // Unshifted: more of the same.
    let mut same = DriftMonitor::new(cfg.clone());
    let mut t = START;
    for x in &baseline {
        assert!(same.observe(t, x, scored(x)).is_none());
        t += 1000;
    }
    for x in drift_texts(&mut rng, &prompts, 1500) {
        assert_eq!(same.observe(t, &x, scored(&x)), None);
        t += 1000;
    }
    let r = same.report().unwrap();
    assert!(r.max().1 < 0.1, "{r:?}");

    // Shifted: long Cyrillic-heavy inputs arrive.
    let mut shifted = DriftMonitor::new(cfg.clone());
    let mut t = START;
    for x in &baseline {
        shifted.observe(t, x, scored(x));
        t += 1000;
    }
    let mut alert = None;
    for i in 0..cfg.window_size {
        let x = format!(
            "{} Пожалуйста, переведите этот длинный документ и объясните каждую деталь подробно. {}",
            prompts[i % prompts.len()],
            "Дополнительный контекст для анализа. ".repeat(10)
        );
        if let Some(a) = shifted.observe(t, &x, scored(&x)) {
            alert = Some(a);
            break;
        }
        t += 1000;
    }
    let a = alert.expect("no drift alert on a shifted distribution");
    assert_eq!(a.kind, AlertKind::Drift);
    assert!(a.value > cfg.psi_threshold);
}

fn data_lines(name: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// `n` distinct pseudo-words (two to four syllables), none of them repeated.
fn pseudo_words(rng: &mut Rng, n: usize) -> Vec<String> {
    const ONSETS: [&str; 16] = [
        "b", "br", "k", "d", "f", "g", "gr", "l", "m", "n", "p", "pl", "r", "s", "st", "t",
    ];
    const VOWELS: [&str; 8] = ["a", "e", "i", "o", "u", "ai", "ou", "ea"];
    const CODAS: [&str; 6] = ["", "n", "r", "s", "l", "x"];
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    while out.len() < n {
        let syllables = 2 + rng.below(3);
        let mut w = String::new();
        for _ in 0..syllables {
            w.push_str(ONSETS[rng.below(ONSETS.len())]);
            w.push_str(VOWELS[rng.below(VOWELS.len())]);
            w.push_str(CODAS[rng.below(CODAS.len())]);
        }
        if seen.insert(w.clone()) {
            out.push(w);
        }
    }
    out
}

/// Where the filler goes around the probe.
#[derive(Debug, Clone, Copy)]
enum Pad {
    Before,
    After,
    Both,
}

/// A templated probe with a changing number, padded with `lo..=hi` filler words taken
/// from `words` (in order from `*next` when `fresh`, so none repeats; at random else).
fn padded_probes(
    rng: &mut Rng,
    words: &[String],
    fresh: bool,
    pad: Pad,
    (lo, hi): (usize, usize),
    n: u64,
) -> Vec<String> {
    let mut next = 0usize;
    let mut take = |rng: &mut Rng, k: usize| -> String {
        (0..k)
            .map(|_| {
                if fresh {
                    next += 1;
                    words[next - 1].clone()
                } else {
                    words[rng.below(words.len())].clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    (0..n)
        .map(|i| {
            let probe = format!("What is the price of SKU {}?", 90_000 + i);
            let k = lo + rng.below(hi - lo + 1);
            match pad {
                Pad::Before => format!("{} {probe}", take(rng, k)),
                Pad::After => format!("{probe} {}", take(rng, k)),
                Pad::Both => {
                    let a = 1 + rng.below(k - 1);
                    let before = take(rng, a);
                    let after = take(rng, k - a);
                    format!("{before} {probe} {after}")
                }
            }
        })
        .collect()
}

/// The first input-sweep or near-duplicate alert of `texts` sent by one identity every
/// `every_ms`: (index of the request that raised it, the alert).
fn first_probe_alert(texts: &[String], every_ms: u64) -> Option<(usize, Alert)> {
    let mut m = Monitor::new(MonitorConfig::default());
    for (i, t) in texts.iter().enumerate() {
        let at = START + i as u64 * every_ms;
        for a in m.observe(&event(at, "prober", t, SamplingParams::default())) {
            if matches!(a.kind, AlertKind::NearDuplicates | AlertKind::InputSweep) {
                return Some((i, a));
            }
        }
    }
    None
}

/// Every alert of `texts` sent by one identity every `every_ms`.
fn all_alerts(texts: &[String], every_ms: u64) -> Vec<Alert> {
    let mut m = Monitor::new(MonitorConfig::default());
    let mut out = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        let at = START + i as u64 * every_ms;
        out.extend(m.observe(&event(at, "app", t, SamplingParams::default())));
    }
    out
}

#[test]
fn padded_sweeps_alert_within_60s_with_small_and_never_repeating_word_lists() {
    let mut rng = Rng(0x9add);
    let small: Vec<String> = [
        "apple", "river", "blue", "quietly", "stone", "garden", "seven", "window", "lamp", "cloud",
        "orange", "tiger", "paper", "north", "silver", "music",
    ]
    .map(str::to_owned)
    .to_vec();
    let fresh = pseudo_words(&mut rng, 5_000);
    for (words, never_repeats) in [(&small, false), (&fresh, true)] {
        for pad in [Pad::Before, Pad::After, Pad::Both] {
            for span in [(2, 3), (3, 5), (5, 5)] {
                // 60 probes in 30 s.
                let texts = padded_probes(&mut rng, words, never_repeats, pad, span, 60);
                let (i, a) = first_probe_alert(&texts, 500).unwrap_or_else(|| {
                    panic!(
                        "no alert: fresh {never_repeats}, {pad:?}, {span:?}, e.g. {:?}",
                        &texts[..3]
                    )
                });
                assert!(i as u64 * 500 <= 60_000, "alert after {} ms", i * 500);
                assert_eq!(a.action, AlertAction::Throttle);
            }
        }
    }
}

#[test]
fn a_slow_padded_sweep_is_judged_over_the_long_window() {
    let mut rng = Rng(0x510e);
    let fresh = pseudo_words(&mut rng, 2_000);
    // 3 requests a minute for an hour: too slow for the one-minute window.
    let texts = padded_probes(&mut rng, &fresh, true, Pad::Both, (3, 5), 180);
    let (i, a) = first_probe_alert(&texts, 20_000).expect("slow padded sweep never alerted");
    assert_eq!(a.window_s, 3600, "{a:?}");
    assert_eq!(i + 1, 60, "alerted once long_min_requests inputs were in");
}

#[test]
fn templated_apps_with_varied_content_do_not_alert() {
    // Real-looking content: the prompt corpora's lines, as documents to translate or
    // summarise, as RAG context and questions.
    let mut content = data_lines("dev_benign.txt");
    content.extend(data_lines("benign_triggers.txt"));
    content.extend(data_lines("ood_benign.txt"));
    let mut rng = Rng(0x7e3f1a7e);
    let pick = |rng: &mut Rng| content[rng.below(content.len())].clone();
    let translate: Vec<String> = (0..120)
        .map(|_| {
            format!(
                "Translate the following text into French: {} {}",
                pick(&mut rng),
                pick(&mut rng)
            )
        })
        .collect();
    let summarise: Vec<String> = (0..120)
        .map(|_| {
            format!(
                "Summarize this document in two sentences: {} {} {}",
                pick(&mut rng),
                pick(&mut rng),
                pick(&mut rng)
            )
        })
        .collect();
    let rag: Vec<String> = (0..120)
        .map(|_| {
            format!(
                "Use the context below to answer the question. If the answer is not in the context, say you do not know.\nContext: {} {} {}\nQuestion: {}",
                pick(&mut rng),
                pick(&mut rng),
                pick(&mut rng),
                pick(&mut rng)
            )
        })
        .collect();
    for (name, texts) in [
        ("translate", translate),
        ("summarise", summarise),
        ("rag", rag),
    ] {
        let alerts = all_alerts(&texts, 500);
        assert!(alerts.is_empty(), "{name}: {alerts:#?}");
    }
}

#[test]
fn one_topic_questions_and_the_benign_corpora_per_identity_do_not_alert() {
    let topic = [
        "What is the price of SKU 4411, the blue kettle?",
        "How much does the 1.7 litre kettle cost these days?",
        "Is SKU 4412 cheaper than the steel version?",
        "Why did the price of the glass kettle go up last month?",
        "Can I get a discount on the kettle if I buy two?",
        "Which kettles in your range cost under 40 euros?",
        "Does the price include the two-year warranty for SKU 4415?",
        "What would shipping add to the price of the travel kettle?",
        "I saw SKU 4419 for less on another site. Do you match prices?",
        "List your kettles from the cheapest to the most expensive.",
        "How do the prices of the smart kettles compare with the basic ones?",
        "Is there a student price for any of the kettles?",
        "What does SKU 4420 stand for in your catalogue?",
        "Are prices on the website the same as in the shop?",
        "When is the next sale on kitchen appliances?",
        "Could you tell me whether the red kettle, SKU 4423, is in stock?",
        "Do you sell replacement filters, and what do they cost?",
        "Which kettle gives the best value for money?",
        "My receipt shows SKU 4424 at a different price. Why?",
        "Does VAT apply to the price shown for the cordless kettle?",
        "How long will the current kettle promotion run?",
        "Could the price of SKU 4427 drop before Christmas?",
        "What is the cheapest kettle with temperature control?",
        "Do bundles with a toaster cost less than buying separately?",
        "Why is SKU 4430 listed twice with two prices?",
        "Is the copper kettle worth its higher price?",
        "What payment options are there for the premium kettle?",
        "Tell me the price difference between SKU 4433 and SKU 4434.",
        "Do you offer price protection if the kettle gets cheaper?",
        "Which SKU is the quietest kettle, and how much is it?",
        "Are refurbished kettles sold at a lower price?",
        "How much is a spare lid for the glass kettle?",
        "Has the price of SKU 4438 changed since last week?",
        "What kettle would you recommend for about 30 euros?",
        "Does buying online change the price of the kettle?",
        "Is SKU 4441 part of the clearance sale?",
        "Why do kettle prices differ between countries?",
        "Which is better value, SKU 4443 or the model above it?",
        "Can you quote a price for ten kettles for our office?",
        "What did SKU 4446 cost when it launched?",
    ]
    .map(str::to_owned)
    .to_vec();
    // 40 questions in 60 s, then the same again in another order.
    let mut twice = topic.clone();
    twice.extend(topic.iter().rev().cloned());
    let alerts = all_alerts(&twice, 1_500);
    assert!(alerts.is_empty(), "one topic: {alerts:#?}");
    for file in ["benign_triggers.txt", "ood_benign.txt", "dev_benign.txt"] {
        let lines = data_lines(file);
        let alerts = all_alerts(&lines, 500);
        assert!(alerts.is_empty(), "{file}: {alerts:#?}");
        // Each line once, in another order.
        let mut rng = Rng(0xc0ffee);
        let mut shuffled = lines.clone();
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, rng.below(i + 1));
        }
        let alerts = all_alerts(&shuffled, 500);
        assert!(alerts.is_empty(), "{file} shuffled: {alerts:#?}");
    }
}
