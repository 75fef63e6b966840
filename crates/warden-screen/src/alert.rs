//! Typed alerts, what to do about them, and how they are rendered for sinks.
//!
//! The renderings are pure functions: [`webhook_json`] (the body POSTed to a webhook) and
//! [`syslog_rfc5424`] (one RFC 5424 message with structured data). Sending them over the
//! network is the gateway's job (only the gateway and the CLI do network I/O); the
//! [`AlertSink`] trait is the seam, with an in-memory sink and a JSON-lines sink over any
//! writer here.

use crate::Error;

/// What kind of behaviour raised the alert.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// Request rate far above the identity's own baseline.
    RateSpike,
    /// Many near-identical inputs in the window (oracle-style probing).
    NearDuplicates,
    /// Many inputs that differ by small edits from one another (systematic sweep).
    InputSweep,
    /// The same input with many distinct sampling parameters (parameter sweep).
    ParameterSweep,
    /// Total output volume above the window's budget (extraction).
    OutputVolume,
    /// Many refusals in the window (probing the guardrails).
    RepeatedRefusals,
    /// Screening blocked or flagged many inputs in the window.
    ScreeningHits,
    /// Input distribution drifted from the baseline (population stability index).
    Drift,
    /// An input at the block threshold was forwarded because the policy only flags.
    InputFlagged,
    /// A response was stopped by output screening (secret, canary: prompt leakage).
    OutputBlocked,
}

impl AlertKind {
    /// snake_case name (as serialised).
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::RateSpike => "rate_spike",
            AlertKind::NearDuplicates => "near_duplicates",
            AlertKind::InputSweep => "input_sweep",
            AlertKind::ParameterSweep => "parameter_sweep",
            AlertKind::OutputVolume => "output_volume",
            AlertKind::RepeatedRefusals => "repeated_refusals",
            AlertKind::ScreeningHits => "screening_hits",
            AlertKind::Drift => "drift",
            AlertKind::InputFlagged => "input_flagged",
            AlertKind::OutputBlocked => "output_blocked",
        }
    }
}

/// What the gateway does when the alert fires.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum AlertAction {
    /// Record and notify only.
    Alert,
    /// Slow the identity down (the gateway's rate limiter).
    Throttle,
    /// Block the identity through the kill switch.
    Block,
}

impl AlertAction {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertAction::Alert => "alert",
            AlertAction::Throttle => "throttle",
            AlertAction::Block => "block",
        }
    }
}

/// Severity (maps to syslog severity).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth a look.
    Warning,
    /// Act now.
    Critical,
}

/// One alert. Carries numbers, never prompt text (prompts are secrets where configured).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Alert {
    /// Milliseconds since the Unix epoch (injected clock).
    pub at_ms: u64,
    /// Identity the alert is about (`*` for population-wide alerts such as drift).
    pub identity: String,
    /// What happened.
    pub kind: AlertKind,
    /// How bad.
    pub severity: Severity,
    /// What the policy says to do.
    pub action: AlertAction,
    /// Observed value (rate, share, count, PSI...).
    pub value: f64,
    /// Threshold it crossed.
    pub threshold: f64,
    /// Window the value was measured over, in seconds.
    pub window_s: u64,
    /// Human summary (no prompt text).
    pub detail: String,
}

/// Where alerts go. Implementations must not block for long: the gateway calls `send`
/// from the request path through a queue.
pub trait AlertSink: Send + Sync {
    /// Delivers one alert.
    fn send(&self, alert: &Alert) -> Result<(), Error>;
}

/// Keeps alerts in memory (tests, `warden alerts` over a live gateway's buffer).
#[derive(Debug, Default)]
pub struct MemorySink {
    alerts: std::sync::Mutex<Vec<Alert>>,
}

impl MemorySink {
    /// A copy of what was sent.
    pub fn alerts(&self) -> Vec<Alert> {
        self.alerts.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

impl AlertSink for MemorySink {
    fn send(&self, alert: &Alert) -> Result<(), Error> {
        self.alerts
            .lock()
            .map_err(|_| Error::Sink("memory sink poisoned".into()))?
            .push(alert.clone());
        Ok(())
    }
}

/// Appends one JSON object per line to a writer (the `<home>/alerts.jsonl` format read
/// by `warden alerts`).
#[derive(Debug)]
pub struct JsonLinesSink<W: std::io::Write + Send> {
    out: std::sync::Mutex<W>,
}

impl<W: std::io::Write + Send> JsonLinesSink<W> {
    /// Wraps a writer (the caller opens the file in append mode).
    pub fn new(out: W) -> Self {
        Self {
            out: std::sync::Mutex::new(out),
        }
    }
}

impl<W: std::io::Write + Send> AlertSink for JsonLinesSink<W> {
    fn send(&self, alert: &Alert) -> Result<(), Error> {
        let mut line =
            serde_json::to_string(alert).map_err(|e| Error::Sink(format!("encode: {e}")))?;
        line.push('\n');
        let mut w = self
            .out
            .lock()
            .map_err(|_| Error::Sink("json lines sink poisoned".into()))?;
        w.write_all(line.as_bytes())
            .and_then(|()| w.flush())
            .map_err(|e| Error::Sink(format!("write: {e}")))
    }
}

/// The JSON body for a webhook.
pub fn webhook_json(alert: &Alert) -> String {
    let v = serde_json::json!({
        "source": "warden",
        "type": "warden.alert",
        "alert": alert,
    });
    v.to_string()
}

/// RFC 3339 UTC timestamp with milliseconds for `at_ms`.
/// Outside the years 0000-9999, which RFC 3339 cannot express: `@<ms>ms`.
pub fn rfc3339_ms(at_ms: u64) -> String {
    let ms = i64::try_from(at_ms).unwrap_or(i64::MAX);
    let (secs, milli) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    ::time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|d| {
            d.format(&::time::format_description::well_known::Rfc3339)
                .ok()
        })
        .map_or_else(
            || format!("@{ms}ms"),
            |s| format!("{}.{milli:03}Z", s.trim_end_matches('Z')),
        )
}

/// `c`, or U+FFFD when it is a control character or a Unicode line/paragraph separator:
/// text from outside (identity names) must not break a line-oriented log record or drive
/// a terminal.
fn inert(c: char) -> char {
    if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
        '\u{FFFD}'
    } else {
        c
    }
}

/// `s` for one line of a log or a terminal: control characters and line separators
/// replaced by U+FFFD (borrowed when there are none).
pub fn one_line(s: &str) -> std::borrow::Cow<'_, str> {
    if s.chars().all(|c| inert(c) == c) {
        std::borrow::Cow::Borrowed(s)
    } else {
        std::borrow::Cow::Owned(s.chars().map(inert).collect())
    }
}

/// Escapes a structured-data parameter value (RFC 5424 §6.3.3: `"`, `\` and `]`), with
/// control characters and line separators replaced (see [`one_line`]).
fn sd_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars().map(inert) {
        if matches!(c, '"' | '\\' | ']') {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

/// PRINTUSASCII without spaces, at most `max` characters, `-` when empty (header fields).
fn header_field(s: &str, max: usize) -> String {
    let f: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if f.is_empty() { "-".into() } else { f }
}

/// One RFC 5424 syslog message (without transport framing): facility 10 (authpriv,
/// security/authorization), severity warning (4) or critical (2), MSGID the alert kind.
/// The structured-data element `warden@32473` (32473 is the documentation enterprise
/// number of RFC 5612) carries the alert's fields; the free-form message is the detail.
pub fn syslog_rfc5424(alert: &Alert, hostname: &str, app_name: &str, procid: u32) -> String {
    let facility = 10u32;
    let sev = match alert.severity {
        Severity::Warning => 4u32,
        Severity::Critical => 2u32,
    };
    let mut ts = rfc3339_ms(alert.at_ms);
    if ts.starts_with('@') {
        // Not expressible as an RFC 3339 TIMESTAMP: the NILVALUE.
        ts = "-".into();
    }
    format!(
        "<{}>1 {} {} {} {} {} [warden@32473 kind=\"{}\" identity=\"{}\" action=\"{}\" value=\"{}\" threshold=\"{}\" window_s=\"{}\"] {}",
        facility * 8 + sev,
        ts,
        header_field(hostname, 255),
        header_field(app_name, 48),
        procid,
        header_field(alert.kind.as_str(), 32),
        alert.kind.as_str(),
        sd_escape(&alert.identity),
        alert.action.as_str(),
        alert.value,
        alert.threshold,
        alert.window_s,
        one_line(&alert.detail),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Alert {
        Alert {
            at_ms: 1_700_000_000_123,
            identity: "team\"a]".into(),
            kind: AlertKind::NearDuplicates,
            severity: Severity::Critical,
            action: AlertAction::Block,
            value: 0.9,
            threshold: 0.5,
            window_s: 60,
            detail: "45 of 50 requests near-identical".into(),
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn syslog_format() {
        let s = syslog_rfc5424(&sample(), "gw-1", "warden", 42);
        assert_eq!(
            s,
            "<82>1 2023-11-14T22:13:20.123Z gw-1 warden 42 near_duplicates [warden@32473 kind=\"near_duplicates\" identity=\"team\\\"a\\]\" action=\"block\" value=\"0.9\" threshold=\"0.5\" window_s=\"60\"] 45 of 50 requests near-identical"
        );
        let empty = syslog_rfc5424(&sample(), "", "my app", 1);
        assert!(empty.contains(" - myapp 1 "), "{empty}");
    }

    /// An identity name (a JWT `sub`, a key label) or a detail carrying line breaks or
    /// control characters must not split the message or forge a second record at a
    /// collector that stores one line per message, nor reach a terminal as escapes.
    #[test]
    fn syslog_has_no_line_breaks_or_control_characters() {
        let mut a = sample();
        a.identity = "eve\n<82>1 2023-11-14T22:13:20.123Z gw-1 warden 42 forged [x] \r\u{1b}[2J\u{0}\u{85}\u{2028}\u{2029}".into();
        a.detail = "line one\u{2028}<82>1 forged\u{85}x\u{0}\u{1b}[31m\tend".into();
        let s = syslog_rfc5424(&a, "gw-1", "warden", 42);
        let bad: Vec<char> = s
            .chars()
            .filter(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
            .collect();
        assert!(bad.is_empty(), "{bad:?} in {s:?}");
        // Still one SD element, and the identity is still recognisable.
        assert_eq!(s.matches("[warden@32473 ").count(), 1, "{s}");
        assert!(s.contains("identity=\"eve"), "{s}");
    }

    /// A time RFC 3339 cannot express (a clock gone wild) is the NILVALUE in the
    /// header, not a token a collector rejects as a malformed TIMESTAMP.
    #[test]
    fn syslog_timestamp_out_of_range_is_nil() {
        let mut a = sample();
        a.at_ms = u64::MAX;
        let s = syslog_rfc5424(&a, "gw-1", "warden", 42);
        assert!(s.starts_with("<82>1 - gw-1 warden 42 "), "{s}");
    }

    #[test]
    fn webhook_round_trips() {
        let body = webhook_json(&sample());
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["type"], "warden.alert");
        let back: Alert = serde_json::from_value(v["alert"].clone()).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn json_lines_sink_writes_lines() {
        let sink = JsonLinesSink::new(Vec::new());
        sink.send(&sample()).unwrap();
        sink.send(&sample()).unwrap();
        let buf = sink.out.into_inner().unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(text.lines().count(), 2);
        let a: Alert = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(a.kind, AlertKind::NearDuplicates);
    }
}
