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
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/benign_triggers.txt");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
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
