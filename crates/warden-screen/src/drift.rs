//! Input drift: population stability index (PSI) of input features against a baseline.
//!
//! Features per input: length (log2 bins), script mix (share of non-ASCII letters, binned)
//! and the screening score (deciles). The first `baseline_size` inputs form the baseline;
//! after that, a sliding window of the most recent `window_size` inputs is compared with
//! it every `check_every` inputs. `PSI = Σ (a - e) · ln(a / e)` over bins, with a small
//! floor on empty bins; a PSI above the threshold (0.25 is the usual "significant shift")
//! raises a [`AlertKind::Drift`] alert, at most once per cooldown.

use crate::alert::{Alert, AlertAction, AlertKind, Severity};
use std::collections::VecDeque;

const LEN_BINS: usize = 12;
const SCRIPT_BINS: usize = 5;
const SCORE_BINS: usize = 10;
const FLOOR: f64 = 1e-4;

/// Drift settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DriftConfig {
    /// Inputs that form the baseline.
    pub baseline_size: usize,
    /// Inputs in the sliding comparison window.
    pub window_size: usize,
    /// Compare every this many inputs once the window is full.
    pub check_every: usize,
    /// Alert when any feature's PSI exceeds this.
    pub psi_threshold: f64,
    /// At most one drift alert per this many milliseconds.
    pub cooldown_ms: u64,
    /// What to do.
    pub action: AlertAction,
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self {
            baseline_size: 1000,
            window_size: 500,
            check_every: 50,
            psi_threshold: 0.25,
            cooldown_ms: 3_600_000,
            action: AlertAction::Alert,
        }
    }
}

/// Binned features of one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputFeatures {
    len_bin: usize,
    script_bin: usize,
    score_bin: usize,
}

impl InputFeatures {
    /// Features of `text` with its screening `score`.
    pub fn of(text: &str, score: f64) -> Self {
        let len = text.chars().count();
        let len_bin = (usize::BITS - len.leading_zeros()) as usize;
        let (mut letters, mut non_ascii) = (0usize, 0usize);
        for c in text.chars().filter(|c| c.is_alphabetic()) {
            letters += 1;
            if !c.is_ascii() {
                non_ascii += 1;
            }
        }
        let share = if letters == 0 {
            0.0
        } else {
            non_ascii as f64 / letters as f64
        };
        let script_bin = match share {
            s if s <= 0.0 => 0,
            s if s < 0.1 => 1,
            s if s < 0.5 => 2,
            s if s < 0.9 => 3,
            _ => 4,
        };
        let score_bin = ((score.clamp(0.0, 1.0) * SCORE_BINS as f64) as usize).min(SCORE_BINS - 1);
        Self {
            len_bin: len_bin.min(LEN_BINS - 1),
            script_bin,
            score_bin,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Hist {
    len: [u64; LEN_BINS],
    script: [u64; SCRIPT_BINS],
    score: [u64; SCORE_BINS],
    n: u64,
}

impl Hist {
    fn add(&mut self, f: InputFeatures, delta: i64) {
        let bump = |x: &mut u64| *x = x.saturating_add_signed(delta);
        if let Some(x) = self.len.get_mut(f.len_bin) {
            bump(x);
        }
        if let Some(x) = self.script.get_mut(f.script_bin) {
            bump(x);
        }
        if let Some(x) = self.score.get_mut(f.score_bin) {
            bump(x);
        }
        bump(&mut self.n);
    }
}

/// PSI of `actual` against `expected` counts.
pub fn psi(expected: &[u64], actual: &[u64]) -> f64 {
    let te: u64 = expected.iter().sum();
    let ta: u64 = actual.iter().sum();
    if te == 0 || ta == 0 {
        return 0.0;
    }
    expected
        .iter()
        .zip(actual)
        .map(|(&e, &a)| {
            let e = (e as f64 / te as f64).max(FLOOR);
            let a = (a as f64 / ta as f64).max(FLOOR);
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// PSI per feature of the current window.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct DriftReport {
    /// Length PSI.
    pub length: f64,
    /// Script-mix PSI.
    pub script: f64,
    /// Screening-score PSI.
    pub score: f64,
}

impl DriftReport {
    /// Largest of the three, with its feature name.
    pub fn max(&self) -> (&'static str, f64) {
        [
            ("length", self.length),
            ("script", self.script),
            ("score", self.score),
        ]
        .into_iter()
        .fold(("length", f64::MIN), |a, b| if b.1 > a.1 { b } else { a })
    }
}

/// Population-wide drift monitor. Time is injected.
#[derive(Debug, Clone)]
pub struct DriftMonitor {
    cfg: DriftConfig,
    baseline: Hist,
    window: VecDeque<InputFeatures>,
    current: Hist,
    since_check: usize,
    last_alert_ms: Option<u64>,
}

impl DriftMonitor {
    /// A monitor with an empty baseline.
    pub fn new(cfg: DriftConfig) -> Self {
        Self {
            cfg,
            baseline: Hist::default(),
            window: VecDeque::new(),
            current: Hist::default(),
            since_check: 0,
            last_alert_ms: None,
        }
    }

    /// PSI of the current window against the baseline (None until both are full).
    pub fn report(&self) -> Option<DriftReport> {
        if (self.baseline.n as usize) < self.cfg.baseline_size
            || self.window.len() < self.cfg.window_size
        {
            return None;
        }
        Some(DriftReport {
            length: psi(&self.baseline.len, &self.current.len),
            script: psi(&self.baseline.script, &self.current.script),
            score: psi(&self.baseline.score, &self.current.score),
        })
    }

    /// Records one input seen at `now_ms`; returns a drift alert when one fires.
    pub fn observe(&mut self, now_ms: u64, text: &str, score: f64) -> Option<Alert> {
        let f = InputFeatures::of(text, score);
        if (self.baseline.n as usize) < self.cfg.baseline_size {
            self.baseline.add(f, 1);
            return None;
        }
        self.window.push_back(f);
        self.current.add(f, 1);
        while self.window.len() > self.cfg.window_size {
            if let Some(old) = self.window.pop_front() {
                self.current.add(old, -1);
            }
        }
        self.since_check += 1;
        if self.window.len() < self.cfg.window_size || self.since_check < self.cfg.check_every {
            return None;
        }
        self.since_check = 0;
        let report = self.report()?;
        let (feature, value) = report.max();
        if value <= self.cfg.psi_threshold {
            return None;
        }
        // A clock that stepped back restarts the cooldown from now (instead of holding
        // alerts until it is back where it was).
        if let Some(last) = &mut self.last_alert_ms {
            *last = (*last).min(now_ms);
        }
        if let Some(last) = self.last_alert_ms
            && now_ms.saturating_sub(last) < self.cfg.cooldown_ms
        {
            return None;
        }
        self.last_alert_ms = Some(now_ms);
        Some(Alert {
            at_ms: now_ms,
            identity: "*".into(),
            kind: AlertKind::Drift,
            severity: Severity::Warning,
            action: self.cfg.action,
            value,
            threshold: self.cfg.psi_threshold,
            window_s: 0,
            detail: format!(
                "input {feature} distribution drifted (PSI {value:.3}; length {:.3}, script {:.3}, score {:.3}) over the last {} inputs",
                report.length, report.script, report.score, self.cfg.window_size
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_of_identical_is_zero_and_of_shift_is_large() {
        assert!(psi(&[10, 20, 30], &[1, 2, 3]).abs() < 1e-12);
        assert!(psi(&[100, 0, 0], &[0, 0, 100]) > 1.0);
    }

    #[test]
    fn a_clock_stepping_back_does_not_silence_drift() {
        let mut d = DriftMonitor::new(DriftConfig {
            baseline_size: 100,
            window_size: 50,
            check_every: 10,
            cooldown_ms: 60_000,
            ..DriftConfig::default()
        });
        let long = "a long document about many things ".repeat(40);
        let t0 = 10 * 3_600_000u64;
        for i in 0..100u64 {
            assert!(d.observe(t0 + i, "short question?", 0.0).is_none());
        }
        let mut first = 0;
        for i in 0..100u64 {
            first += usize::from(d.observe(t0 + 1000 + i * 100, &long, 0.0).is_some());
        }
        assert_eq!(first, 1);
        // One hour back; three minutes (three cooldowns) of the shifted traffic.
        let back = t0 - 3_600_000;
        let mut after = 0;
        for i in 0..180u64 {
            after += usize::from(d.observe(back + i * 1000, &long, 0.0).is_some());
        }
        assert!(after >= 1, "no drift alert after the clock stepped back");
    }

    #[test]
    fn features_bin_script_mix() {
        assert_eq!(InputFeatures::of("hello", 0.0).script_bin, 0);
        assert_eq!(InputFeatures::of("привет мир", 0.0).script_bin, 4);
        assert_eq!(InputFeatures::of("x", 1.0).score_bin, SCORE_BINS - 1);
    }
}
