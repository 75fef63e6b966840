//! Behaviour monitor per identity: sliding windows over what each caller does, compared
//! with fixed limits and with the caller's own history. Pure: the caller passes the time
//! (`at_ms`) with every event, so tests replay minutes of traffic in microseconds.
//!
//! Signals, each over the last `window_ms`:
//! - request rate against the identity's own baseline (an exponentially weighted mean of
//!   its past per-window counts), with an absolute ceiling before a baseline exists;
//! - near-duplicate share (also over `long_window_ms`, for slow probing): inputs whose
//!   64-bit SimHash (byte 3-gram shingles of the
//!   normalised text: invisible characters, odd spaces, full-width and look-alike letters
//!   do not make a repeat look new) is within `dup_hamming` bits of an earlier input in
//!   the window (oracle-style probing);
//! - input sweep share: inputs within `sweep_hamming` bits of an earlier one (many inputs
//!   differing by small edits), or a template covered by word runs of the window's
//!   inputs with only a few filler words around it ([`RunIndex::padded`]: random words
//!   padding a probe dilute its SimHash, not its runs);
//! - parameter sweep: distinct sampling-parameter tuples (temperature, top_p, logit_bias,
//!   seed, ...) used with near-identical inputs;
//! - screening hits (inputs the screener blocked or flagged) and refusals;
//! - total output tokens over `output_window_ms` (extraction by volume).
//!
//! A request that continues the conversation of one of the identity's recent requests
//! ([`Event::conversation`]: it holds that request's conversation followed by the model's
//! answer) is a conversation step, not a probe: it is not marked a near-duplicate or a
//! small edit of the window's inputs. A conversation state continued more than `BRANCHES` times is being
//! forked, and its further continuations are judged like any other input. A step is
//! compared with the conversation's last [`ASKED`] user messages instead: a conversation
//! grown by small edits of one question (or of two alternated) is marked like a sweep. A
//! request whose history this
//! identity never sent (not even with other system or assistant texts) is judged on
//! that history's user and tool texts too ([`Event::history`]): a probe buried in a
//! fabricated earlier message is still a probe. System texts and assistant texts that are
//! not answers the gateway returned ([`Event::context`]) are judged too, with dates and
//! times masked ([`context_simhash`]): a probe moved into the system prompt or into a
//! made-up answer is still a probe, a constant or clock-stamped system prompt is not.
//!
//! Each alert kind has an action in [`MonitorConfig::actions`] (alert, throttle, block via
//! the kill switch) and a per-identity cooldown. Memory is bounded: at most `max_events`
//! events per identity and `max_identities` identities (at the bound, the least
//! recently seen sixteenth is dropped in one pass).

use crate::alert::{Alert, AlertAction, AlertKind, Severity};
use std::collections::{HashMap, VecDeque};

/// Limits and actions of the monitor.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MonitorConfig {
    /// Sliding window for rates and shares, milliseconds.
    pub window_ms: u64,
    /// Fewest requests in the window before shares are judged.
    pub min_requests: usize,
    /// A second, longer window for the near-duplicate and small-edit shares, so probing
    /// slower than `min_requests` per window is judged too (0 turns it off). Inputs are
    /// still compared with those of the last `window_ms`; the shares add up per window.
    pub long_window_ms: u64,
    /// Fewest requests in the long window before its shares are judged.
    pub long_min_requests: usize,
    /// Rate alert when the window holds more than `rate_factor` × baseline requests...
    pub rate_factor: f64,
    /// ...and more than this many (so quiet identities do not alert on small bursts).
    pub rate_floor: usize,
    /// Ceiling before the identity has a baseline (`baseline_windows` windows of history).
    pub rate_ceiling_new: usize,
    /// Windows of history before the baseline is trusted.
    pub baseline_windows: u32,
    /// SimHash distance (bits) for "near-duplicate".
    pub dup_hamming: u32,
    /// Near-duplicate share that alerts.
    pub dup_share: f64,
    /// SimHash distance (bits) for "small edit".
    pub sweep_hamming: u32,
    /// Small-edit share that alerts.
    pub sweep_share: f64,
    /// Distinct parameter tuples with near-identical inputs that alert.
    pub param_distinct: usize,
    /// Screening blocks/flags in the window that alert.
    pub screening_hits: usize,
    /// Refusals in the window that alert.
    pub refusals: usize,
    /// Window for output volume, milliseconds.
    pub output_window_ms: u64,
    /// Output tokens over `output_window_ms` that alert.
    pub output_tokens: u64,
    /// At most one alert per identity and kind per this many milliseconds.
    pub cooldown_ms: u64,
    /// Most events kept per identity.
    pub max_events: usize,
    /// Most identities tracked.
    pub max_identities: usize,
    /// Action per alert kind (kinds not listed: alert).
    pub actions: Vec<(AlertKind, AlertAction)>,
    /// Judge system texts and assistant texts the gateway did not return
    /// ([`Event::context`]). Off by default: a system prompt re-rendered per request with
    /// an end user's details (a shared key in front of many users) reads as small edits
    /// of itself, which would throttle a busy application; on, a probe moved into the
    /// system prompt or into a made-up answer is judged like an input.
    pub judge_context: bool,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            window_ms: 60_000,
            min_requests: 20,
            long_window_ms: 3_600_000,
            long_min_requests: 60,
            rate_factor: 5.0,
            rate_floor: 60,
            rate_ceiling_new: 600,
            baseline_windows: 10,
            dup_hamming: 3,
            dup_share: 0.5,
            sweep_hamming: 10,
            sweep_share: 0.8,
            param_distinct: 8,
            screening_hits: 5,
            refusals: 10,
            output_window_ms: 3_600_000,
            output_tokens: 500_000,
            cooldown_ms: 300_000,
            max_events: 2048,
            max_identities: 100_000,
            actions: vec![
                (AlertKind::NearDuplicates, AlertAction::Throttle),
                (AlertKind::InputSweep, AlertAction::Throttle),
                (AlertKind::ParameterSweep, AlertAction::Throttle),
                (AlertKind::OutputVolume, AlertAction::Throttle),
            ],
            judge_context: false,
        }
    }
}

impl MonitorConfig {
    fn action(&self, kind: AlertKind) -> AlertAction {
        self.actions
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, a)| *a)
            .unwrap_or(AlertAction::Alert)
    }
}

/// Sampling parameters of a request (those an extraction attack sweeps).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SamplingParams {
    /// `temperature`.
    pub temperature: Option<f32>,
    /// `top_p`.
    pub top_p: Option<f32>,
    /// `top_k`.
    pub top_k: Option<u32>,
    /// `seed`.
    pub seed: Option<u64>,
    /// A hash of `logit_bias` (0 when absent).
    pub logit_bias_hash: u64,
}

impl SamplingParams {
    fn key(&self) -> u64 {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        let mut mix = |v: u64| h = (h ^ v).wrapping_mul(0x0000_0100_0000_01b3);
        mix(self
            .temperature
            .map_or(u64::MAX, |t| u64::from(t.to_bits())));
        mix(self.top_p.map_or(u64::MAX, |t| u64::from(t.to_bits())));
        mix(self.top_k.map_or(u64::MAX, u64::from));
        mix(self.seed.unwrap_or(u64::MAX));
        mix(self.logit_bias_hash);
        h
    }
}

/// One completed (or refused) request as the monitor sees it.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// Milliseconds since the epoch (injected clock).
    pub at_ms: u64,
    /// Who sent it.
    pub identity: &'a str,
    /// The input text (only its SimHash is kept): the newest turn's user and tool texts.
    pub input: &'a str,
    /// The user and tool texts before the newest turn, when the request carries a
    /// history (empty otherwise; the gateway passes at most the first and the last
    /// [`SIM_RAW`] bytes, all that the fingerprint reads). When that history is not one
    /// this identity sent ([`Conversation::said_before_answer`] matches none of its
    /// recent requests), its SimHash is judged and kept beside the input's.
    pub history: &'a str,
    /// The newest turn holds a user message, not only tool results: a conversation step
    /// is then compared with the conversation's previous user message.
    pub asks: bool,
    /// Sampling parameters.
    pub params: SamplingParams,
    /// Output tokens returned.
    pub output_tokens: u64,
    /// The model (or the gateway) refused.
    pub refused: bool,
    /// Screening blocked or flagged the input.
    pub screening_hit: bool,
    /// Where the request stands in a conversation, when it is one.
    pub conversation: Option<Conversation>,
    /// The request's system texts and the model's answers it sends back (each at most
    /// [`CONTEXT_CLIP`] bytes from each end): one that is neither an answer the gateway
    /// returned to this identity ([`Event::answers`]) nor a text this identity sent
    /// before is judged against its recent ones, so a probe moved out of the user's
    /// turn is still seen ([`ContextText`]).
    pub context: &'a [ContextText<'a>],
    /// Keyed hashes of the answer texts returned for this request (remembered, so the
    /// next step sending them back is not judged on them).
    pub answers: &'a [u64],
}

/// A system text of a request, or an assistant text it sends back.
#[derive(Debug, Clone, Copy)]
pub struct ContextText<'a> {
    /// The text (or its two ends, see [`CONTEXT_CLIP`]).
    pub text: &'a str,
    /// A keyed hash of the whole text, with the key of [`Event::answers`].
    pub key: u64,
    /// The model's text (an assistant message, a tool call it made), not a system text.
    pub assistant: bool,
}

/// Hashes that tell a conversation's next step from an independent request. Clients send
/// the whole conversation back with every request, so the request after `r` holds `r`'s
/// conversation, then the model's answer, then the newest turn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Conversation {
    /// The conversation up to the model's last answer in this request (None when it
    /// holds no answer: a first turn).
    pub before_answer: Option<u64>,
    /// The whole conversation of this request.
    pub whole: u64,
    /// Its user and tool texts up to the model's last answer (None without an answer):
    /// a history whose other texts changed (a system prompt with a clock in it, an
    /// answer the client re-rendered) was still said by this identity.
    pub said_before_answer: Option<u64>,
    /// The user and tool texts of the whole conversation.
    pub said: u64,
}

/// A request's conversation is remembered (per identity) for this many later requests,
/// so several conversations on one key (a team's key, an agent running tools in
/// parallel) are each seen continuing.
const CONVERSATIONS: usize = 64;

/// A conversation state continued more often than this is being forked for probing, not
/// retried or regenerated: the next continuations count as independent requests.
const BRANCHES: u8 = 3;

/// Raw bytes of a long input normalised for its SimHash: this much of its head and of its
/// tail (invisible padding can make the raw text several times longer than what it says).
pub const SIM_RAW: usize = 16 * 1024;

/// A conversation step's user message shorter than this (bytes) is not compared with
/// the previous ones: "continue", "go on", "yes" are how people talk on, not a sweep.
const MIN_ASK: usize = 20;

/// A conversation step's user message is compared with this many of the conversation's
/// previous user messages (two templates alternated are each a small edit of the one
/// before the last).
const ASKED: usize = 4;

/// A context text ([`Event::context`]) longer than twice this is read at its two ends
/// (this many bytes each): all the masked SimHash reads of a plain text.
pub const CONTEXT_CLIP: usize = 2048;

/// Bytes of context text fingerprinted per request at most (the rest is not judged).
pub const CONTEXT_BUDGET: usize = 32 * 1024;

/// Distinct context texts remembered per identity.
const CONTEXTS: usize = 64;

/// Answers returned per identity whose keyed hashes are remembered.
const ANSWERS: usize = 128;

/// The SimHashes of a conversation's last [`ASKED`] user messages, oldest first, and its
/// last user message shorter than [`MIN_ASK`] bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Asked {
    sims: [u64; ASKED],
    n: u8,
    short: [u8; MIN_ASK - 1],
    short_len: u8,
}

/// Whether `a` and `b` (short user messages) are one template with a number changed: the
/// same length, one or two bytes apart, each a digit on both sides (`SKU 10001?` then
/// `SKU 10002?`; not `go north` then `go south`), and neither a continuation phrase.
fn template_edit(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diffs = 0;
    for (x, y) in a.iter().zip(b) {
        if !x.eq_ignore_ascii_case(y) {
            if !(x.is_ascii_digit() && y.is_ascii_digit()) {
                return false;
            }
            diffs += 1;
        }
    }
    let plain =
        |t: &[u8]| std::str::from_utf8(t).is_ok_and(|t| !crate::heuristics::is_continuation(t));
    matches!(diffs, 1 | 2) && plain(a) && plain(b)
}

impl Asked {
    /// These, with `text` as the last short message when it is one.
    fn with_short(mut self, text: &str) -> Self {
        if let Some(dst) = self.short.get_mut(..text.len()) {
            dst.copy_from_slice(text.as_bytes());
            // `text` fit in the MIN_ASK - 1 bytes, so its length fits in a u8.
            self.short_len = u8::try_from(text.len()).unwrap_or(0);
        }
        self
    }

    /// The last short user message.
    fn short(&self) -> &[u8] {
        self.short
            .get(..usize::from(self.short_len))
            .unwrap_or_default()
    }

    /// These, then `sim` (the oldest dropped when full).
    fn with(mut self, sim: u64) -> Self {
        let n = usize::from(self.n);
        if n < ASKED {
            self.sims[n] = sim;
            self.n += 1;
        } else {
            self.sims.rotate_left(1);
            self.sims[ASKED - 1] = sim;
        }
        self
    }

    fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.sims.iter().take(usize::from(self.n)).copied()
    }
}

/// Where a request stands among the identity's recent requests.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Place {
    /// It continues one of them (within `BRANCHES`): the SimHashes of that
    /// conversation's last user messages.
    Step(Asked),
    /// Its history was sent by this identity, but it is not a step (a fork past
    /// `BRANCHES`, or a history whose system or assistant texts changed).
    Known,
    /// Its history (if any) is not one this identity sent.
    Unknown,
}

/// A recent request's conversation, remembered to recognise the next step.
#[derive(Debug, Clone, Copy)]
struct Remembered {
    /// [`Conversation::whole`].
    whole: u64,
    /// [`Conversation::said`].
    said: u64,
    /// How often it was continued.
    continued: u8,
    /// SimHashes of the conversation's last user messages.
    asked: Asked,
}

/// A context text judged recently ([`Event::context`]).
#[derive(Debug, Clone, Copy)]
struct ContextSeen {
    /// Keyed hash of its latest rendering (an exact repeat skips the SimHash).
    key: u64,
    /// Its masked SimHash.
    sim: u64,
    /// When it was last sent.
    at_ms: u64,
}

/// 64-bit SimHash of byte 3-gram shingles of the input after [`crate::normalize::fold`]
/// (NFKC, invisible characters removed, confusables folded, lower-cased, whitespace
/// collapsed), over the head and tail 1 KiB of that text.
pub fn simhash(text: &str) -> u64 {
    sim_of(&shingled(text))
}

/// [`simhash`] of `text` with dates and times masked (`10:05:17`, `2026-11-28`,
/// `28/11/2026`, month and weekday names and the day and year numbers beside them): a
/// system prompt with a clock in it is the same prompt at every request.
pub fn context_simhash(text: &str) -> u64 {
    let mut s = shingled(text);
    mask_clock(&mut s);
    sim_of(&s)
}

/// The bytes [`simhash`] shingles: the folded text, lower-cased, whitespace runs as one
/// space, its head and tail 1 KiB when longer than 2 KiB.
fn shingled(text: &str) -> Vec<u8> {
    // ASCII text without vertical tabs is its own fold up to case and whitespace runs,
    // which the shingling below folds anyway (only U+000B is whitespace to `fold` and
    // not to `is_ascii_whitespace`): most prompts skip the copy and the second pass.
    let folded = if text.is_ascii() && !text.contains('\u{b}') {
        std::borrow::Cow::Borrowed(text)
    } else if text.len() <= 2 * SIM_RAW {
        std::borrow::Cow::Owned(crate::normalize::fold(text))
    } else {
        let (head, tail) = crate::normalize::head_and_tail(text, SIM_RAW);
        let mut f = crate::normalize::fold(head);
        f.push(' ');
        f.push_str(&crate::normalize::fold(tail));
        std::borrow::Cow::Owned(f)
    };
    let b = folded.as_bytes();
    let take = |r: &[u8], out: &mut Vec<u8>| {
        let mut space = true;
        for &c in r {
            if c.is_ascii_whitespace() {
                if !space {
                    out.push(b' ');
                    space = true;
                }
            } else {
                out.push(c.to_ascii_lowercase());
                space = false;
            }
        }
    };
    let mut s = Vec::with_capacity(2048);
    if b.len() <= 2048 {
        take(b, &mut s);
    } else {
        take(b.get(..1024).unwrap_or_default(), &mut s);
        take(b.get(b.len() - 1024..).unwrap_or_default(), &mut s);
    }
    s
}

fn sim_of(s: &[u8]) -> u64 {
    let mut v = [0i32; 64];
    for w in s.windows(3) {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for &c in w {
            h = (h ^ u64::from(c)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        h = (h ^ (h >> 31)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 29;
        for (i, slot) in v.iter_mut().enumerate() {
            *slot += if (h >> i) & 1 == 1 { 1 } else { -1 };
        }
    }
    v.iter().enumerate().fold(
        0u64,
        |acc, (i, &x)| if x > 0 { acc | (1 << i) } else { acc },
    )
}

/// Words of an input read for shared word runs ([`word_runs`]); a longer input is not
/// judged on them (its varying part is larger than any padding).
const RUN_WORDS: usize = 64;

/// Words in one run shingle.
const RUN_N: usize = 4;

/// Inputs whose run shingles are remembered per identity (the last `window_ms` of them).
const RUN_INPUTS: usize = 128;

/// Fewest words in the longest stretch of an input covered by run shingles of the
/// window's earlier inputs for it to read as a padded template (three shingles in a row).
const RUN_MIN: usize = 6;

/// Most words of an input outside the covered stretches for it to read as a padded
/// template: a few filler words around the template, not new content.
const PAD_MAX: usize = 6;

/// The word-run shingles of `s` ([`shingled`] text): a hash per [`RUN_N`] consecutive
/// words of its first [`RUN_WORDS`] words (a word is a run of letters and digits, any
/// non-ASCII byte counting as a letter; a word with a digit in it reads as `#`, so a
/// changed number does not break a run), and how many words `s` holds in all.
fn word_runs(s: &[u8]) -> (Vec<u32>, usize) {
    let mut words: Vec<u64> = Vec::with_capacity(RUN_WORDS);
    let mut total = 0usize;
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let (mut inside, mut digit) = (false, false);
    let end = |h: u64, digit: bool, words: &mut Vec<u64>, total: &mut usize| {
        *total += 1;
        if words.len() < RUN_WORDS {
            words.push(if digit { u64::from(b'#') } else { h });
        }
    };
    for &c in s {
        if c.is_ascii_alphanumeric() || c >= 0x80 {
            if !inside {
                h = 0xcbf2_9ce4_8422_2325;
                inside = true;
                digit = false;
            }
            digit |= c.is_ascii_digit();
            h = (h ^ u64::from(c)).wrapping_mul(0x0000_0100_0000_01b3);
        } else if inside {
            end(h, digit, &mut words, &mut total);
            inside = false;
        }
    }
    if inside {
        end(h, digit, &mut words, &mut total);
    }
    let runs = words
        .windows(RUN_N)
        .map(|w| {
            let mut h = 0x9e37_79b9_7f4a_7c15u64;
            for &x in w {
                h = (h ^ x).wrapping_mul(0x94d0_49bb_1331_11eb);
                h ^= h >> 31;
            }
            // The high half: the mix above leaves it the best spread.
            (h >> 32) as u32
        })
        .collect();
    (runs, total)
}

/// The word-run shingles of an identity's recent inputs ([`RUN_INPUTS`] at most, within
/// `window_ms`), each input's once, and how many of those inputs hold each shingle.
#[derive(Debug, Clone, Default)]
struct RunIndex {
    inputs: VecDeque<(u64, Box<[u32]>)>,
    counts: HashMap<u32, u32, RunHasher>,
}

/// Hasher of [`RunIndex::counts`]: its keys are already hashes of the words (keyed by
/// nothing an attacker cannot compute, but a flood of colliding runs only costs the
/// attacker's own identity its lookups, bounded by [`RUN_INPUTS`] × [`RUN_WORDS`]), so
/// one multiply spreads them over the table instead of SipHash's rounds.
#[derive(Debug, Clone, Copy, Default)]
struct RunHasher(u64);

impl std::hash::BuildHasher for RunHasher {
    type Hasher = RunHasher;
    fn build_hasher(&self) -> RunHasher {
        RunHasher(0)
    }
}

impl std::hash::Hasher for RunHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

impl RunIndex {
    fn pop(&mut self) {
        if let Some((_, runs)) = self.inputs.pop_front() {
            for r in runs.iter() {
                if let Some(c) = self.counts.get_mut(r) {
                    *c -= 1;
                    if *c == 0 {
                        self.counts.remove(r);
                    }
                }
            }
        }
    }

    /// Drops the inputs sent before `from`.
    fn expire(&mut self, from: u64) {
        while self.inputs.front().is_some_and(|(t, _)| *t < from) {
            self.pop();
        }
    }

    /// Whether an input with these run shingles and `total` words reads as a padded
    /// template: a stretch of at least [`RUN_MIN`] words covered by shingles of earlier
    /// inputs, with at most [`PAD_MAX`] words (and no more than it covers) outside the
    /// covered stretches. A template with a number changed and a few random words
    /// around it is one; an instruction before new content (a document to translate, a
    /// context and a question) or another question on the same topic is not.
    fn padded(&self, runs: &[u32], total: usize) -> bool {
        if total > RUN_WORDS || runs.is_empty() || self.counts.is_empty() {
            return false;
        }
        let mut covered = [false; RUN_WORDS];
        for (i, r) in runs.iter().enumerate() {
            if self.counts.contains_key(r) {
                for c in covered.iter_mut().skip(i).take(RUN_N) {
                    *c = true;
                }
            }
        }
        let (mut n, mut run, mut longest) = (0usize, 0usize, 0usize);
        for &c in covered.iter().take(total) {
            if c {
                n += 1;
                run += 1;
                longest = longest.max(run);
            } else {
                run = 0;
            }
        }
        let outside = total - n;
        longest >= RUN_MIN && outside <= PAD_MAX && outside <= n
    }

    /// Remembers an input's run shingles (each once).
    fn push(&mut self, at_ms: u64, mut runs: Vec<u32>) {
        if self.inputs.len() >= RUN_INPUTS {
            self.pop();
        }
        runs.sort_unstable();
        runs.dedup();
        for &r in &runs {
            *self.counts.entry(r).or_insert(0) += 1;
        }
        self.inputs.push_back((at_ms, runs.into_boxed_slice()));
    }
}

/// Month and weekday names (lower case; abbreviations too).
const CALENDAR: [&str; 40] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "mon",
    "tue",
    "tues",
    "wed",
    "thu",
    "thur",
    "thurs",
    "fri",
    "sat",
];

/// Whether `w` (a run of lower-case letters) names a month or a weekday.
fn calendar_word(w: &[u8]) -> bool {
    w == b"sun" || CALENDAR.iter().any(|c| c.as_bytes() == w)
}

/// Whether the run of digits and separators `c` (starting and ending with a digit) is a
/// time (a colon before exactly two digits: `9:05`, `10:05:17.250`, `2026-11-28t10:05`)
/// or a date (three numbers joined by one `-`, `/` or `.`, each of one, two or four
/// digits: a four-digit year first or last, else at least two of two digits).
fn clock_like(c: &[u8]) -> bool {
    let digit = |i: usize| c.get(i).is_some_and(u8::is_ascii_digit);
    let time = (0..c.len()).any(|i| c[i] == b':' && digit(i + 1) && digit(i + 2) && !digit(i + 3));
    if time {
        return true;
    }
    let Some(sep) = c.iter().copied().find(|b| !b.is_ascii_digit()) else {
        return false;
    };
    if !matches!(sep, b'-' | b'/' | b'.') || c.iter().any(|&b| !b.is_ascii_digit() && b != sep) {
        return false;
    }
    let mut lens = [0usize; 3];
    for (i, g) in c.split(|&b| b == sep).enumerate() {
        match lens.get_mut(i) {
            Some(l) => *l = g.len(),
            None => return false,
        }
    }
    match lens {
        [4, 1 | 2, 1 | 2] | [1 | 2, 1 | 2, 4] => true,
        [a, b, c] => {
            [a, b, c].iter().all(|l| matches!(l, 1 | 2))
                && [a, b, c].iter().filter(|&&l| l == 2).count() >= 2
        }
    }
}

/// Replaces dates and times in `s` (lower case, single spaces) by `#`, in place: runs of
/// digits and `:` `/` `.` `-` `t` `+` between digits that are [`clock_like`] (with an
/// `am`/`pm`/`z` right after), month and weekday names, and numbers of one, two or
/// four digits (with an ordinal suffix) next to a masked piece, e.g. `28th november
/// 2026`. Other numbers stay: a swept product number is not a clock.
fn mask_clock(s: &mut Vec<u8>) {
    let n = s.len();
    let word_end = |s: &[u8], i: usize| {
        let mut j = i;
        while j < s.len() && s[j].is_ascii_alphanumeric() {
            j += 1;
        }
        j
    };
    // Whether the number token s[i..j] (digits, then maybe letters) is a day or a year.
    let day_or_year = |t: &[u8]| {
        let d = t.iter().take_while(|b| b.is_ascii_digit()).count();
        let rest = &t[d..];
        (matches!(d, 1 | 2) && (rest.is_empty() || matches!(rest, b"st" | b"nd" | b"rd" | b"th")))
            || (d == 4 && rest.is_empty())
    };
    // Whether a calendar word follows s[j..] past spaces, commas and periods.
    let calendar_next = |s: &[u8], mut j: usize| {
        while j < s.len() && matches!(s[j], b' ' | b',' | b'.') {
            j += 1;
        }
        let k = word_end(s, j);
        k > j && calendar_word(&s[j..k])
    };
    let (mut r, mut w) = (0usize, 0usize);
    // Whether the last token written was a mask, with only spaces, commas and periods
    // written since.
    let mut after_mask = false;
    while r < n {
        let c = s[r];
        let token_start = r == 0 || !s[r - 1].is_ascii_alphanumeric();
        if c.is_ascii_digit() && token_start {
            // The run of digits and separators between digits.
            let mut j = r;
            while j < n
                && (s[j].is_ascii_digit()
                    || matches!(s[j], b':' | b'/' | b'.' | b'-' | b't' | b'+')
                        && j + 1 < n
                        && s[j + 1].is_ascii_digit()
                        && s[j - 1].is_ascii_digit())
            {
                j += 1;
            }
            // Letters (or digits) glued on after the run: `th`, `am`, `z`.
            let k = word_end(s, j);
            let masked = if clock_like(&s[r..j]) {
                let mut e = if matches!(&s[j..k], b"" | b"am" | b"pm" | b"z") {
                    k
                } else {
                    j
                };
                if e == j && s.get(j) == Some(&b' ') {
                    let k2 = word_end(s, j + 1);
                    if matches!(&s[j + 1..k2], b"am" | b"pm" | b"utc" | b"gmt") {
                        e = k2;
                    }
                }
                Some(e)
            } else if s[r..j].iter().all(u8::is_ascii_digit)
                && day_or_year(&s[r..k])
                && (after_mask || calendar_next(s, k))
            {
                Some(k)
            } else {
                None
            };
            if let Some(e) = masked {
                s[w] = b'#';
                w += 1;
                r = e;
                after_mask = true;
                continue;
            }
            // Not a date: copy the token as it is.
            let e = k.max(j);
            s.copy_within(r..e, w);
            w += e - r;
            r = e;
            after_mask = false;
            continue;
        }
        if c.is_ascii_lowercase() && token_start {
            let k = word_end(s, r);
            if calendar_word(&s[r..k]) {
                s[w] = b'#';
                w += 1;
                r = k;
                after_mask = true;
                continue;
            }
            s.copy_within(r..k, w);
            w += k - r;
            r = k;
            after_mask = false;
            continue;
        }
        if !matches!(c, b' ' | b',' | b'.') {
            after_mask = false;
        }
        s[w] = c;
        w += 1;
        r += 1;
    }
    s.truncate(w);
}

/// The SimHashes of an identity's window grouped by value: each distinct SimHash once,
/// with how many events carry it and their distinct sampling-parameter keys. A lookup
/// scans the distinct values (one for a caller repeating one prompt, at most
/// `max_events` otherwise) instead of every event, and answers exactly what a scan over
/// all events would (`index_matches_the_scan` in the tests).
#[derive(Debug, Clone, Default)]
struct SimIndex {
    /// Distinct SimHashes, densely packed for the scan.
    sims: Vec<u64>,
    /// Per entry of `sims`: events with that SimHash and their (parameter key, count).
    groups: Vec<(u32, Vec<(u64, u32)>)>,
    /// Position in `sims` of each distinct SimHash.
    at: HashMap<u64, usize>,
}

/// What the window says about a new input.
#[derive(Debug, Clone, PartialEq)]
struct Scan {
    /// Some earlier input is within `dup_hamming` bits.
    dup: bool,
    /// Some earlier input is within `sweep_hamming` bits.
    near: bool,
    /// Distinct parameter keys: the new one, then those of the near-duplicates.
    params_near: Vec<u64>,
}

impl SimIndex {
    /// Whether an event in the window has exactly this SimHash.
    fn contains(&self, sim: u64) -> bool {
        self.at.contains_key(&sim)
    }

    fn insert(&mut self, sim: u64, params: u64) {
        let i = *self.at.entry(sim).or_insert_with(|| {
            self.sims.push(sim);
            self.groups.push((0, Vec::new()));
            self.sims.len() - 1
        });
        let Some((n, ps)) = self.groups.get_mut(i) else {
            return;
        };
        *n += 1;
        match ps.iter_mut().find(|(p, _)| *p == params) {
            Some((_, c)) => *c += 1,
            None => ps.push((params, 1)),
        }
    }

    fn remove(&mut self, sim: u64, params: u64) {
        let Some(&i) = self.at.get(&sim) else {
            return;
        };
        let Some((n, ps)) = self.groups.get_mut(i) else {
            return;
        };
        if let Some(j) = ps.iter().position(|(p, _)| *p == params) {
            ps[j].1 -= 1;
            if ps[j].1 == 0 {
                ps.swap_remove(j);
            }
        }
        *n = n.saturating_sub(1);
        if *n > 0 {
            return;
        }
        self.at.remove(&sim);
        self.sims.swap_remove(i);
        self.groups.swap_remove(i);
        // The last distinct SimHash moved into position i.
        if let Some(&moved) = self.sims.get(i) {
            self.at.insert(moved, i);
        }
    }

    fn scan(&self, sim: u64, pkey: u64, [dup_t, sweep_t]: [u32; 2]) -> Scan {
        // Branch-free first pass (the common answer is "nothing within either
        // threshold"); parameters are collected only when some value is a near-duplicate.
        let (mut dups, mut near) = (0usize, false);
        for &s in &self.sims {
            let d = (s ^ sim).count_ones();
            dups += usize::from(d <= dup_t);
            near |= d <= sweep_t;
        }
        let mut params_near = vec![pkey];
        if dups > 0 {
            for (&s, (_, ps)) in self.sims.iter().zip(&self.groups) {
                if (s ^ sim).count_ones() <= dup_t {
                    for (p, _) in ps {
                        if !params_near.contains(p) {
                            params_near.push(*p);
                        }
                    }
                }
            }
        }
        Scan {
            dup: dups > 0,
            near,
            params_near,
        }
    }
}

#[derive(Debug, Clone)]
struct Seen {
    at_ms: u64,
    sim: u64,
    /// The SimHash of an unknown history judged beside the input, kept in the index too.
    hist: Option<u64>,
    params: u64,
    dup: bool,
    near: bool,
    refused: bool,
    hit: bool,
}

#[derive(Debug, Clone, Default)]
struct IdentityState {
    events: VecDeque<Seen>,
    /// (window index, output tokens) per window for output volume.
    output: VecDeque<(u64, u64)>,
    /// Current window index and its request count (for the baseline).
    bucket: Option<(u64, u64)>,
    baseline: f64,
    windows_seen: u32,
    last_alert: HashMap<AlertKind, u64>,
    last_seen: u64,
    /// How many of `events` are marked dup, near, refused, hit (kept as events come and
    /// go, so a request does not rescan the window for each share).
    counts: [usize; 4],
    /// The SimHashes and parameter keys of `events`, for the near-duplicate lookups.
    sims: SimIndex,
    /// The conversations of recent requests, newest last.
    conversations: VecDeque<Remembered>,
    /// Per window index over `long_window_ms`: requests, near-duplicates, small edits
    /// (saturating); and their sums.
    long: VecDeque<(u64, [u16; 3])>,
    long_sum: [u64; 3],
    /// Context texts judged recently (system prompts, answers not the gateway's), newest
    /// last.
    contexts: VecDeque<ContextSeen>,
    /// Keyed hashes of answers returned to this identity, newest last.
    answers: VecDeque<u64>,
    /// Word-run shingles of the window's inputs, for templates padded with filler.
    runs: RunIndex,
}

impl Seen {
    fn marks(&self) -> [bool; 4] {
        [self.dup, self.near, self.refused, self.hit]
    }
}

impl IdentityState {
    fn pop_event(&mut self) {
        if let Some(e) = self.events.pop_front() {
            for (c, m) in self.counts.iter_mut().zip(e.marks()) {
                *c -= usize::from(m);
            }
            self.sims.remove(e.sim, e.params);
            if let Some(h) = e.hist {
                self.sims.remove(h, e.params);
            }
        }
    }

    /// The clock went back to `now`: what was recorded later than `now` is taken as
    /// recorded at `now` (order kept), so windows and cooldowns run from here in elapsed
    /// time instead of stalling until the clock is back where it was.
    fn clock_stepped_back(&mut self, now: u64, widx: u64) {
        for e in &mut self.events {
            e.at_ms = e.at_ms.min(now);
        }
        for (w, _) in &mut self.output {
            *w = (*w).min(widx);
        }
        for (w, _) in &mut self.long {
            *w = (*w).min(widx);
        }
        if let Some((w, _)) = &mut self.bucket {
            *w = (*w).min(widx);
        }
        for t in self.last_alert.values_mut() {
            *t = (*t).min(now);
        }
        for (t, _) in &mut self.runs.inputs {
            *t = (*t).min(now);
        }
    }

    /// Where `c` stands among the recent requests' conversations (counting a
    /// continuation); remembers `c`'s own conversation either way, with `asked` (the
    /// SimHash of its newest user message, if it has one) or else the one it continues.
    fn place(&mut self, c: Conversation, asked: Option<(u64, &str)>) -> Place {
        let mut place = Place::Unknown;
        let mut inherited = Asked::default();
        if let Some(r) = c
            .before_answer
            .and_then(|h| self.conversations.iter_mut().find(|r| r.whole == h))
        {
            r.continued = r.continued.saturating_add(1);
            inherited = r.asked;
            place = if r.continued <= BRANCHES {
                Place::Step(r.asked)
            } else {
                Place::Known
            };
        } else if c
            .said_before_answer
            .is_some_and(|h| self.conversations.iter().any(|r| r.said == h))
        {
            place = Place::Known;
        }
        if !self.conversations.iter().any(|r| r.whole == c.whole) {
            if self.conversations.len() >= CONVERSATIONS {
                self.conversations.pop_front();
            }
            self.conversations.push_back(Remembered {
                whole: c.whole,
                said: c.said,
                continued: 0,
                asked: asked.map_or(inherited, |(a, text)| inherited.with(a).with_short(text)),
            });
        }
        place
    }

    /// Remembers the keyed hash of an answer returned to this identity.
    fn remember_answer(&mut self, key: u64) {
        if self.answers.contains(&key) {
            return;
        }
        if self.answers.len() >= ANSWERS {
            self.answers.pop_front();
        }
        self.answers.push_back(key);
    }

    /// Judges the request's context texts ([`Event::context`]): an answer returned to
    /// this identity and a text it sent before (exactly, or the same after masking dates
    /// and times) are skipped; another is marked (near-duplicate, small edit) when its
    /// masked SimHash is that close to a context text of the last `window_ms` from
    /// `from` on, and remembered.
    fn judge_context(
        &mut self,
        context: &[ContextText<'_>],
        now: u64,
        from: u64,
        [dup_t, sweep_t]: [u32; 2],
    ) -> (bool, bool) {
        let (mut dup, mut near) = (false, false);
        let mut budget = CONTEXT_BUDGET;
        for c in context {
            if c.assistant && self.answers.contains(&c.key) {
                continue;
            }
            if let Some(e) = self.contexts.iter_mut().find(|e| e.key == c.key) {
                e.at_ms = now;
                continue;
            }
            let Some(left) = budget.checked_sub(c.text.len()) else {
                break;
            };
            budget = left;
            let sim = context_simhash(c.text);
            if let Some(e) = self.contexts.iter_mut().find(|e| e.sim == sim) {
                // The same text rendered anew (another date or time in it).
                e.key = c.key;
                e.at_ms = now;
                continue;
            }
            for e in self.contexts.iter().filter(|e| e.at_ms >= from) {
                let d = (e.sim ^ sim).count_ones();
                dup |= d <= dup_t;
                near |= d <= sweep_t;
            }
            if self.contexts.len() >= CONTEXTS {
                // The least recently sent goes (a constant system prompt stays).
                if let Some(i) = (0..self.contexts.len()).min_by_key(|&i| self.contexts[i].at_ms) {
                    self.contexts.remove(i);
                }
            }
            self.contexts.push_back(ContextSeen {
                key: c.key,
                sim,
                at_ms: now,
            });
        }
        (dup, near)
    }

    fn push_event(&mut self, e: Seen) {
        for (c, m) in self.counts.iter_mut().zip(e.marks()) {
            *c += usize::from(m);
        }
        self.sims.insert(e.sim, e.params);
        if let Some(h) = e.hist {
            self.sims.insert(h, e.params);
        }
        self.events.push_back(e);
    }
}

/// The per-identity behaviour monitor.
#[derive(Debug, Clone, Default)]
pub struct Monitor {
    cfg: MonitorConfig,
    ids: HashMap<String, IdentityState>,
    /// Eviction passes so far (each drops a sixteenth of the identities).
    evictions: u64,
}

impl Monitor {
    /// A monitor with `cfg`.
    pub fn new(cfg: MonitorConfig) -> Self {
        Self {
            cfg,
            ids: HashMap::new(),
            evictions: 0,
        }
    }

    /// Number of identities tracked.
    pub fn identities(&self) -> usize {
        self.ids.len()
    }

    /// Makes room for a new identity: drops the least recently seen sixteenth of those
    /// tracked (at least one) in one pass over the map, so a stream of new identities
    /// at the bound costs O(16) per identity amortised, not a scan of the whole map
    /// (100,000 entries by default) for each.
    fn evict_least_recent(&mut self) {
        let n = (self.cfg.max_identities / 16).max(1);
        let mut seen: Vec<(u64, &String)> =
            self.ids.iter().map(|(k, s)| (s.last_seen, k)).collect();
        let doomed: Vec<String> = if seen.len() <= n {
            seen.into_iter().map(|(_, k)| k.clone()).collect()
        } else {
            seen.select_nth_unstable_by_key(n - 1, |&(t, _)| t);
            seen[..n].iter().map(|(_, k)| (*k).clone()).collect()
        };
        for k in doomed {
            self.ids.remove(&k);
        }
        self.evictions += 1;
    }

    /// Drops everything held about `identity` (an administrator lifted its block: the
    /// evidence before that must not block it again).
    pub fn forget(&mut self, identity: &str) {
        self.ids.remove(identity);
    }

    /// Remembers `key` (a keyed hash of an answer text) as returned to `identity`: a
    /// request that sends it back is not judged on it (answers of streams, which end
    /// after the request was recorded).
    pub fn answered(&mut self, identity: &str, key: u64) {
        if let Some(st) = self.ids.get_mut(identity) {
            st.remember_answer(key);
        }
    }

    /// Whether `identity` is tracked.
    pub fn tracks(&self, identity: &str) -> bool {
        self.ids.contains_key(identity)
    }

    /// Records `ev`; returns the alerts it raises (usually none).
    pub fn observe(&mut self, ev: &Event<'_>) -> Vec<Alert> {
        if !self.ids.contains_key(ev.identity) && self.ids.len() >= self.cfg.max_identities {
            self.evict_least_recent();
        }
        let cfg = &self.cfg;
        let st = self.ids.entry(ev.identity.to_owned()).or_default();
        let now = ev.at_ms;
        let widx = now / cfg.window_ms.max(1);
        if now < st.last_seen {
            st.clock_stepped_back(now, widx);
        }
        st.last_seen = now;
        let from = now.saturating_sub(cfg.window_ms);

        // Baseline: per-window request counts, EWMA over completed windows.
        match st.bucket {
            Some((w, c)) if w == widx => st.bucket = Some((w, c + 1)),
            Some((w, c)) => {
                // Close the finished window and any empty ones after it.
                let gap = widx.saturating_sub(w).min(64);
                let mut counts = vec![c as f64];
                counts.extend(std::iter::repeat_n(0.0, gap.saturating_sub(1) as usize));
                for x in counts {
                    st.baseline = if st.windows_seen == 0 {
                        x
                    } else {
                        0.8 * st.baseline + 0.2 * x
                    };
                    st.windows_seen = st.windows_seen.saturating_add(1);
                }
                st.bucket = Some((widx, 1));
            }
            None => st.bucket = Some((widx, 1)),
        }

        let ts = [cfg.dup_hamming, cfg.sweep_hamming];
        while st.events.front().is_some_and(|e| e.at_ms < from) {
            st.pop_event();
        }
        while st.events.len() >= cfg.max_events {
            st.pop_event();
        }
        st.runs.expire(from);
        let folded = shingled(ev.input);
        let sim = sim_of(&folded);
        let (runs, words) = word_runs(&folded);
        let pkey = ev.params.key();
        let Scan {
            mut dup,
            mut near,
            mut params_near,
        } = st.sims.scan(sim, pkey, ts);
        let place = ev.conversation.map_or(Place::Unknown, |c| {
            st.place(c, ev.asks.then_some((sim, ev.input)))
        });
        let mut hist = None;
        match place {
            // A conversation's next step (an agent's next tool result, a chat's next
            // turn) is not a repeat or a small edit of the steps before it, however
            // alike they read: it continues one of them. Its user message is compared
            // with the conversation's previous one instead, unless it is short or the
            // same again ("continue"): a conversation grown by small edits of one
            // question is a sweep. Rate, volume, refusals and parameter sweeps still
            // count every step.
            Place::Step(asked) => {
                let compared =
                    ev.asks && ev.input.len() >= MIN_ASK && !asked.iter().any(|p| p == sim);
                let d = if compared {
                    asked
                        .iter()
                        .map(|p| (p ^ sim).count_ones())
                        .min()
                        .unwrap_or(u32::MAX)
                } else {
                    u32::MAX
                };
                // A short message is compared only with the last short one, for a
                // number changed in one template ("SKU 10001?", "SKU 10002?").
                let edit = ev.asks
                    && ev.input.len() < MIN_ASK
                    && template_edit(asked.short(), ev.input.as_bytes());
                dup = d <= cfg.dup_hamming || edit;
                near = d <= cfg.sweep_hamming || edit;
            }
            Place::Known => {}
            // A history this identity never sent (a first request carries none; a
            // fabricated one may carry the probe while the last message varies): its
            // user and tool texts are judged and kept too. The same history again
            // (exactly: a few-shot application's worked examples, a document asked
            // about in new conversations) is a fixed preamble, not a sweep: the probe
            // would have to be in the newest turn, which is judged anyway.
            Place::Unknown if !ev.history.is_empty() => {
                let h = simhash(ev.history);
                let s = if st.sims.contains(h) {
                    Scan {
                        dup: false,
                        near: false,
                        params_near: Vec::new(),
                    }
                } else {
                    st.sims.scan(h, pkey, ts)
                };
                dup |= s.dup;
                near |= s.near;
                for p in s.params_near {
                    if !params_near.contains(&p) {
                        params_near.push(p);
                    }
                }
                hist = Some(h);
            }
            Place::Unknown => {}
        }
        // A template around a changing slot, padded with a few filler words that
        // dilute its SimHash (random words, never the same twice), still shares its
        // word runs with the window's inputs: a small edit too. A conversation's step
        // is judged against its own previous messages above instead.
        if !matches!(place, Place::Step(_)) && st.runs.padded(&runs, words) {
            near = true;
        }
        st.runs.push(now, runs);
        // System prompts and answers the gateway did not return, wherever they are: a
        // probe moved out of the user's turn is judged too.
        if cfg.judge_context {
            let (cdup, cnear) = st.judge_context(ev.context, now, from, ts);
            dup |= cdup;
            near |= cnear;
            for &a in ev.answers {
                st.remember_answer(a);
            }
        }
        st.push_event(Seen {
            at_ms: now,
            sim,
            hist,
            params: pkey,
            dup,
            near,
            refused: ev.refused,
            hit: ev.screening_hit,
        });
        // Long-window shares per window index.
        if cfg.long_window_ms > 0 {
            let marks = [true, dup, near];
            let long_from = now.saturating_sub(cfg.long_window_ms) / cfg.window_ms.max(1);
            match st.long.back_mut() {
                Some((w, c)) if *w == widx => {
                    for (c, m) in c.iter_mut().zip(marks) {
                        *c = c.saturating_add(u16::from(m));
                    }
                }
                _ => st.long.push_back((widx, marks.map(u16::from))),
            }
            for (t, m) in st.long_sum.iter_mut().zip(marks) {
                *t += u64::from(m);
            }
            while let Some(&(w, c)) = st.long.front() {
                if w >= long_from {
                    break;
                }
                st.long.pop_front();
                for (t, c) in st.long_sum.iter_mut().zip(c) {
                    *t = t.saturating_sub(u64::from(c));
                }
            }
        }
        // Output volume per window index.
        let out_from = now.saturating_sub(cfg.output_window_ms) / cfg.window_ms.max(1);
        match st.output.back_mut() {
            Some((w, t)) if *w == widx => *t += ev.output_tokens,
            _ => st.output.push_back((widx, ev.output_tokens)),
        }
        while st.output.front().is_some_and(|(w, _)| *w < out_from) {
            st.output.pop_front();
        }

        let n = st.events.len();
        let [dups, nears, refusals, hits] = st.counts;
        let share = |k: usize| -> f64 { k as f64 / n.max(1) as f64 };
        let mut found: Vec<(AlertKind, f64, f64, String)> = Vec::new();
        // An alert kind still in its cooldown is not reported: skip building its detail
        // (the loop below checks the cooldown again and records the new alert time).
        let cooling = |kind: AlertKind| {
            st.last_alert
                .get(&kind)
                .is_some_and(|&last| now.saturating_sub(last) < cfg.cooldown_ms)
        };
        let rate_limit = if st.windows_seen >= cfg.baseline_windows {
            (st.baseline * cfg.rate_factor).max(cfg.rate_floor as f64)
        } else {
            cfg.rate_ceiling_new as f64
        };
        if n as f64 > rate_limit && !cooling(AlertKind::RateSpike) {
            found.push((
                AlertKind::RateSpike,
                n as f64,
                rate_limit,
                format!(
                    "{n} requests in the window; baseline {:.1} per window",
                    st.baseline
                ),
            ));
        }
        if n >= cfg.min_requests {
            let d = share(dups);
            if d >= cfg.dup_share && !cooling(AlertKind::NearDuplicates) {
                found.push((
                    AlertKind::NearDuplicates,
                    d,
                    cfg.dup_share,
                    format!("{:.0}% of {n} inputs are near-duplicates", d * 100.0),
                ));
            }
            let s = share(nears);
            if s >= cfg.sweep_share && d < cfg.dup_share && !cooling(AlertKind::InputSweep) {
                found.push((
                    AlertKind::InputSweep,
                    s,
                    cfg.sweep_share,
                    format!("{:.0}% of {n} inputs differ by small edits", s * 100.0),
                ));
            }
        }
        // The same shares over the long window, for probing too slow for the short one
        // (which judges first when it has enough requests). The sums may undercount a
        // bucket that saturated, never overcount.
        let [long_n, long_dups, long_nears] = st.long_sum;
        let long_shares = cfg.long_window_ms > 0
            && n < cfg.min_requests
            && long_n >= cfg.long_min_requests as u64;
        if long_shares {
            let lshare = |k: u64| k as f64 / long_n.max(1) as f64;
            let d = lshare(long_dups);
            let mins = cfg.long_window_ms / 60_000;
            if d >= cfg.dup_share && !cooling(AlertKind::NearDuplicates) {
                found.push((
                    AlertKind::NearDuplicates,
                    d,
                    cfg.dup_share,
                    format!(
                        "{:.0}% of {long_n} inputs in the last {mins} min are near-duplicates",
                        d * 100.0
                    ),
                ));
            }
            let s = lshare(long_nears);
            if s >= cfg.sweep_share && d < cfg.dup_share && !cooling(AlertKind::InputSweep) {
                found.push((
                    AlertKind::InputSweep,
                    s,
                    cfg.sweep_share,
                    format!(
                        "{:.0}% of {long_n} inputs in the last {mins} min differ by small edits",
                        s * 100.0
                    ),
                ));
            }
        }
        if params_near.len() >= cfg.param_distinct && !cooling(AlertKind::ParameterSweep) {
            found.push((
                AlertKind::ParameterSweep,
                params_near.len() as f64,
                cfg.param_distinct as f64,
                format!(
                    "{} distinct sampling-parameter sets for near-identical inputs",
                    params_near.len()
                ),
            ));
        }
        if hits >= cfg.screening_hits && !cooling(AlertKind::ScreeningHits) {
            found.push((
                AlertKind::ScreeningHits,
                hits as f64,
                cfg.screening_hits as f64,
                format!("{hits} inputs blocked or flagged by screening"),
            ));
        }
        if refusals >= cfg.refusals && !cooling(AlertKind::RepeatedRefusals) {
            found.push((
                AlertKind::RepeatedRefusals,
                refusals as f64,
                cfg.refusals as f64,
                format!("{refusals} refusals"),
            ));
        }
        let tokens: u64 = st.output.iter().map(|(_, t)| t).sum();
        if tokens >= cfg.output_tokens && !cooling(AlertKind::OutputVolume) {
            found.push((
                AlertKind::OutputVolume,
                tokens as f64,
                cfg.output_tokens as f64,
                format!(
                    "{tokens} output tokens in {} s",
                    cfg.output_window_ms / 1000
                ),
            ));
        }

        let mut alerts = Vec::new();
        for (kind, value, threshold, detail) in found {
            if let Some(&last) = st.last_alert.get(&kind)
                && now.saturating_sub(last) < cfg.cooldown_ms
            {
                continue;
            }
            st.last_alert.insert(kind, now);
            let action = cfg.action(kind);
            alerts.push(Alert {
                at_ms: now,
                identity: ev.identity.to_owned(),
                kind,
                severity: if action == AlertAction::Alert {
                    Severity::Warning
                } else {
                    Severity::Critical
                },
                action,
                value,
                threshold,
                window_s: match kind {
                    AlertKind::OutputVolume => cfg.output_window_ms / 1000,
                    AlertKind::NearDuplicates | AlertKind::InputSweep if long_shares => {
                        cfg.long_window_ms / 1000
                    }
                    _ => cfg.window_ms / 1000,
                },
                detail,
            });
        }
        alerts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The scan the index replaces: every event in the window, one by one.
    fn scan_brute(events: &VecDeque<Seen>, sim: u64, pkey: u64, ts: [u32; 2]) -> Scan {
        let mut r = Scan {
            dup: false,
            near: false,
            params_near: vec![pkey],
        };
        for e in events {
            let d = (e.sim ^ sim).count_ones();
            if d <= ts[0] {
                r.dup = true;
                if !r.params_near.contains(&e.params) {
                    r.params_near.push(e.params);
                }
            }
            if d <= ts[1] {
                r.near = true;
            }
        }
        r
    }

    fn sorted(mut r: Scan) -> Scan {
        r.params_near.sort_unstable();
        r
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// The index answers exactly what the scan over all events answers, after any
        /// sequence of arrivals and evictions, for any thresholds (indexed or not).
        #[test]
        fn index_matches_the_scan(
            bases in proptest::collection::vec(any::<u64>(), 1..5),
            dup_t in prop_oneof![0u32..16, 16u32..70],
            sweep_t in prop_oneof![0u32..16, 16u32..70],
            ops in proptest::collection::vec(
                (0u8..4, 0usize..5, proptest::collection::vec(0u32..64, 0..14), 0u64..5),
                1..200,
            ),
        ) {
            let ts = [dup_t, sweep_t];
            let mut st = IdentityState::default();
            for (op, base, flips, param) in ops {
                if op == 0 {
                    st.pop_event();
                    continue;
                }
                let sim = flips
                    .iter()
                    .fold(bases[base % bases.len()], |s, &i| s ^ (1u64 << i));
                let want = sorted(scan_brute(&st.events, sim, param, ts));
                let got = sorted(st.sims.scan(sim, param, ts));
                prop_assert_eq!(&got, &want);
                st.push_event(
                    Seen {
                        at_ms: 0,
                        sim,
                        hist: None,
                        params: param,
                        dup: got.dup,
                        near: got.near,
                        refused: false,
                        hit: false,
                    },
                );
                // The groups hold exactly the window's (SimHash, parameters) multiset.
                let mut want: Vec<(u64, u64)> =
                    st.events.iter().map(|e| (e.sim, e.params)).collect();
                want.sort_unstable();
                let mut got: Vec<(u64, u64)> = Vec::new();
                for (i, (&s, (n, ps))) in st.sims.sims.iter().zip(&st.sims.groups).enumerate() {
                    prop_assert_eq!(st.sims.at.get(&s), Some(&i));
                    prop_assert_eq!(*n, ps.iter().map(|(_, c)| *c).sum::<u32>());
                    for &(p, c) in ps {
                        got.extend(std::iter::repeat_n((s, p), c as usize));
                    }
                }
                got.sort_unstable();
                prop_assert_eq!(st.sims.at.len(), st.sims.sims.len());
                prop_assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn simhash_distances() {
        let a = simhash("what is the output of the function for input x = 17");
        let b = simhash("what is the output of the function for input x = 18");
        let c = simhash("please write a haiku about the autumn leaves");
        assert!((a ^ b).count_ones() <= 6, "{}", (a ^ b).count_ones());
        assert!((a ^ c).count_ones() > 10, "{}", (a ^ c).count_ones());
        assert_eq!(simhash(""), 0);
    }

    /// The same oracle query dressed differently each time (invisible characters between
    /// letters, non-ASCII spaces, full-width letters, look-alike Cyrillic) is one query
    /// to the model and must be one query to the near-duplicate signal.
    #[test]
    fn obfuscated_repeats_are_near_duplicates() {
        let base = "what is the output of the function for input x = 17";
        let dress = [
            |s: &str| s.to_owned(),
            |s: &str| s.chars().flat_map(|c| [c, '\u{200B}']).collect(),
            |s: &str| s.chars().flat_map(|c| [c, '\u{2060}']).collect(),
            |s: &str| s.chars().flat_map(|c| [c, '\u{00AD}']).collect(),
            |s: &str| s.replace(' ', "\u{00A0}\u{3000}"),
            |s: &str| {
                s.chars()
                    .map(|c| match c {
                        'a'..='z' => char::from_u32(c as u32 - 'a' as u32 + 0xFF41).unwrap_or(c),
                        _ => c,
                    })
                    .collect()
            },
            |s: &str| s.replace('o', "\u{043E}").replace('e', "\u{0435}"),
        ];
        let plain = simhash(base);
        for (i, d) in dress.iter().enumerate() {
            let got = simhash(&d(base));
            assert!(
                (got ^ plain).count_ones() <= MonitorConfig::default().dup_hamming,
                "dressing {i}: {} bits apart",
                (got ^ plain).count_ones()
            );
        }
        let mut m = Monitor::new(MonitorConfig::default());
        let mut kinds = Vec::new();
        for i in 0..40u64 {
            let text = dress[(i as usize) % dress.len()](base);
            kinds.extend(
                m.observe(&ev(i * 1000, "mallory", &text))
                    .into_iter()
                    .map(|a| a.kind),
            );
        }
        assert!(kinds.contains(&AlertKind::NearDuplicates), "{kinds:?}");
    }

    /// ASCII input skips the fold; the fingerprint must be the one the fold gives.
    #[test]
    fn ascii_fast_path_fingerprints_as_the_fold_does() {
        for text in [
            "What is  the Output of f(17)?\t\r\n",
            "  leading and trailing  ",
            "tab\tseparated\x0cform feed",
            "vertical\x0btab",
            "",
            &"long ascii prompt with MIXED case ".repeat(200),
        ] {
            let folded = crate::normalize::fold(text);
            // `folded` is not ASCII-with-VT, or is already folded: either way its
            // fingerprint is the reference.
            assert_eq!(simhash(text), simhash(&folded), "{text:?}");
        }
    }

    fn ev<'a>(at_ms: u64, identity: &'a str, input: &'a str) -> Event<'a> {
        Event {
            at_ms,
            identity,
            input,
            history: "",
            asks: true,
            params: SamplingParams::default(),
            output_tokens: 10,
            refused: false,
            screening_hit: false,
            conversation: None,
            context: &[],
            answers: &[],
        }
    }

    /// Steps of one conversation (each continuing the one before) are never repeats,
    /// however alike; a state continued more than `BRANCHES` times, a conversation pushed
    /// out of the last `CONVERSATIONS`, and requests without one are judged as inputs.
    #[test]
    fn conversation_steps_are_not_repeats_but_forks_and_strangers_are() {
        let cfg = MonitorConfig {
            min_requests: 5,
            ..MonitorConfig::default()
        };
        let conv = |before: Option<u64>, whole: u64| {
            Some(Conversation {
                before_answer: before,
                whole,
                ..Conversation::default()
            })
        };
        let marks = |m: &Monitor, who: &str| m.ids[who].counts;
        let mut m = Monitor::new(cfg.clone());
        // A chain: step k continues step k - 1; step 20 is also sent twice (a retry).
        for k in 0..40u64 {
            let e = Event {
                conversation: conv(k.checked_sub(1), k),
                ..ev(k * 10, "agent", "The file has been updated.")
            };
            m.observe(&e);
            if k == 20 {
                m.observe(&Event {
                    at_ms: k * 10 + 1,
                    ..e
                });
            }
        }
        let [dups, nears, ..] = marks(&m, "agent");
        // The retry is a second continuation of step 19's state, within BRANCHES.
        assert_eq!((dups, nears), (0, 0));
        // One state forked: the first BRANCHES continuations are steps, the rest repeats.
        let mut m = Monitor::new(cfg.clone());
        m.observe(&Event {
            conversation: conv(None, 1),
            ..ev(0, "fork", "hello")
        });
        for i in 0..10u64 {
            m.observe(&Event {
                conversation: conv(Some(1), 100 + i),
                ..ev(10 + i, "fork", "What is the price of SKU-1?")
            });
        }
        let [dups, ..] = marks(&m, "fork");
        assert_eq!(dups, 10 - usize::from(BRANCHES));
        // A state pushed out by CONVERSATIONS newer ones is not continued.
        let mut m = Monitor::new(cfg.clone());
        for i in 0..=CONVERSATIONS as u64 {
            m.observe(&Event {
                conversation: conv(None, 1000 + i),
                ..ev(
                    i,
                    "team",
                    &format!("conversation {i} opens with its own words {}", i * 7919),
                )
            });
        }
        let base = marks(&m, "team")[0];
        m.observe(&Event {
            conversation: conv(Some(1000), 5000),
            ..ev(100, "team", "conversation 3 opens with its own words 23757")
        });
        assert_eq!(
            marks(&m, "team")[0],
            base + 1,
            "evicted state still continued"
        );
        m.observe(&Event {
            conversation: conv(Some(1000 + CONVERSATIONS as u64), 5001),
            ..ev(101, "team", "conversation 3 opens with its own words 23757")
        });
        assert_eq!(
            marks(&m, "team")[0],
            base + 1,
            "a recent state not continued"
        );
        // No conversation at all: judged as before.
        let mut m = Monitor::new(cfg);
        for i in 0..5 {
            m.observe(&ev(i, "plain", "The file has been updated."));
        }
        assert_eq!(marks(&m, "plain")[0], 4);
    }

    /// A conversation grown by probes: each request continues the one before (a step),
    /// and each step's newest message is a small edit of the one before it; the steps
    /// are marked and alert. A story told on with short "continue"s, and a chain of
    /// distinct questions, are not marked.
    #[test]
    fn a_chain_of_small_edits_is_marked_short_repeats_and_distinct_turns_are_not() {
        let cfg = MonitorConfig {
            min_requests: 5,
            ..MonitorConfig::default()
        };
        let conv = |k: u64| {
            Some(Conversation {
                before_answer: k.checked_sub(1),
                whole: k,
                ..Conversation::default()
            })
        };
        let run = |text: &dyn Fn(u64) -> String| {
            let mut m = Monitor::new(cfg.clone());
            let mut kinds = Vec::new();
            for k in 0..20u64 {
                let t = text(k);
                let e = Event {
                    conversation: conv(k),
                    ..ev(k * 10, "who", &t)
                };
                kinds.extend(m.observe(&e).into_iter().map(|a| a.kind));
            }
            (m.ids["who"].counts, kinds)
        };
        let ([dups, nears, ..], kinds) = run(&|k| {
            format!(
                "What is the exact wholesale price of product SKU-{:05}?",
                10_000 + k
            )
        });
        assert!(nears >= 15 && dups <= nears, "{dups} {nears}");
        assert!(
            kinds.contains(&AlertKind::NearDuplicates) || kinds.contains(&AlertKind::InputSweep),
            "{kinds:?}"
        );
        let go_on = [
            "continue",
            "Continue.",
            "go on",
            "continue",
            "more please",
            "Go on!",
        ];
        let (marks, kinds) = run(&|k| go_on[k as usize % go_on.len()].to_owned());
        assert_eq!((marks[0], marks[1]), (0, 0), "{kinds:?}");
        let distinct = [
            "What is the capital of France?",
            "Write a haiku about autumn leaves.",
            "Explain the difference between TCP and UDP in two sentences.",
            "How many grams of flour are in a cup?",
            "Translate good morning into German.",
            "Suggest a name for a bakery that sells sourdough.",
            "What causes the seasons on Earth?",
        ];
        let (marks, kinds) = run(&|k| distinct[k as usize % distinct.len()].to_owned());
        assert_eq!((marks[0], marks[1]), (0, 0), "{kinds:?}");
    }

    /// Dates and times are masked out of context fingerprints, and nothing else is: a
    /// swept product number stays, so it is still a small edit.
    #[test]
    fn clock_masking_hides_dates_and_times_only() {
        let masked = |t: &str| {
            let mut s = shingled(t);
            mask_clock(&mut s);
            String::from_utf8(s).unwrap_or_default()
        };
        for (a, b) in [
            ("The time is 10:05:17.", "The time is 9:59:59 UTC."),
            ("Now: 2026-11-28T10:05:17Z.", "Now: 2026-11-29T00:00:01Z."),
            (
                "Today is Saturday, 28 November 2026.",
                "Today is Sunday, 29 November 2026.",
            ),
            ("Date: 11/28/2026, 3:04 pm", "Date: 12/1/2026, 11:59 am"),
            (
                "It is Nov 28th, 2026 at 10:05",
                "It is Dec 1st, 2026 at 10:06",
            ),
            ("Heute ist der 28.11.2026", "Heute ist der 01.12.2026"),
        ] {
            assert_eq!(masked(a), masked(b), "{a:?} / {b:?}");
            assert_eq!(context_simhash(a), context_simhash(b));
        }
        for (a, b) in [
            (
                "What is the price of SKU-10000?",
                "What is the price of SKU-10001?",
            ),
            ("Answer for item 17 only.", "Answer for item 18 only."),
            (
                "Use version 1.2.3 of the API.",
                "Use version 1.2.4 of the API.",
            ),
            ("x = 17", "x = 18"),
        ] {
            assert_ne!(masked(a), masked(b), "{a:?} / {b:?}");
        }
        assert_eq!(
            masked("sku-10001 at 10:05 on 2026-11-28"),
            "sku-10001 at # on #"
        );
    }

    /// A probe moved out of the user's turn: into the system prompt, or into an
    /// assistant message the caller made up, with a different user message each time.
    /// Both are caught; an application whose system prompt carries the date and time
    /// and whose assistant messages are the answers it got (alike as an agent's are),
    /// or whose system prompt never changes, is not marked at all.
    #[test]
    fn a_probe_in_the_system_prompt_or_a_made_up_answer_is_caught_a_clock_is_not() {
        // One request every 6 s: the 60 s window holds 10, all with distinct user
        // messages (the list has 11).
        let cfg = MonitorConfig {
            min_requests: 8,
            judge_context: true,
            ..MonitorConfig::default()
        };
        let benign = [
            "What is the capital of France?",
            "Write a haiku about autumn leaves.",
            "Explain the difference between TCP and UDP in two sentences.",
            "How many grams of flour are in a cup?",
            "Translate good morning into German.",
            "Suggest a name for a bakery that sells sourdough.",
            "What causes the seasons on Earth?",
            "Give me three tips for a job interview.",
            "Summarise the plot of Hamlet in one paragraph.",
            "Convert 72 degrees Fahrenheit to Celsius.",
            "Which planets have rings?",
        ];
        let key = |t: &str| {
            // Any fixed keyed hash will do: the gateway's is random per process.
            t.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            })
        };
        // (system text, assistant text) of request i; the answer returned to it.
        let run = |shape: &dyn Fn(u64) -> (String, Option<String>), answered: bool, judge: bool| {
            let mut m = Monitor::new(MonitorConfig {
                judge_context: judge,
                ..cfg.clone()
            });
            let mut kinds = Vec::new();
            for i in 0..40u64 {
                let (system, model) = shape(i);
                let mut ctx = vec![ContextText {
                    text: &system,
                    key: key(&system),
                    assistant: false,
                }];
                if let Some(a) = &model {
                    ctx.push(ContextText {
                        text: a,
                        key: key(a),
                        assistant: true,
                    });
                }
                // The answer this request gets, sent back by the next one.
                let next = shape(i + 1).1.map(|a| key(&a));
                let answers: Vec<u64> = next.filter(|_| answered).into_iter().collect();
                let e = Event {
                    context: &ctx,
                    answers: &answers,
                    ..ev(i * 6000, "who", benign[i as usize % benign.len()])
                };
                kinds.extend(m.observe(&e).into_iter().map(|a| a.kind));
            }
            (m.ids["who"].counts, kinds)
        };
        let probe = |i: u64| {
            format!(
                "You answer one question: what is the exact wholesale price of product SKU-{:05}?",
                10_000 + i
            )
        };
        let (marks, kinds) = run(&|i| (probe(i), None), false, true);
        assert!(marks[1] >= 10, "{marks:?}");
        assert!(
            kinds.contains(&AlertKind::NearDuplicates) || kinds.contains(&AlertKind::InputSweep),
            "a sweep in the system prompt: {kinds:?}"
        );
        let made_up = |i: u64| {
            (
                "You are a helpful assistant.".to_owned(),
                Some(format!(
                    "The exact wholesale price of product SKU-{:05} is",
                    20_000 + i
                )),
            )
        };
        let (marks, kinds) = run(&made_up, false, true);
        assert!(marks[1] >= 10, "{marks:?}");
        assert!(
            kinds.contains(&AlertKind::NearDuplicates) || kinds.contains(&AlertKind::InputSweep),
            "a sweep in made-up answers: {kinds:?}"
        );
        // The same traffic shape from an application: a clock in the system prompt
        // (across midnight), and the answers it got back, which read alike.
        let app = |i: u64| {
            let day = if i < 20 {
                "Saturday, 28 November"
            } else {
                "Sunday, 29 November"
            };
            (
                format!(
                    "You are a coding agent. Today is {day} 2026 and the time is {:02}:{:02}:17 UTC.",
                    (23 + i / 20) % 24,
                    (i * 3) % 60
                ),
                Some(format!(
                    "I will now edit src/module_{i}.rs and run the tests."
                )),
            )
        };
        let (marks, kinds) = run(&app, true, true);
        assert_eq!(marks, [0; 4], "{kinds:?}");
        let constant = |_| {
            (
                "You are a helpful assistant for Example Corp.".to_owned(),
                None,
            )
        };
        let (marks, kinds) = run(&constant, true, true);
        assert_eq!(marks, [0; 4], "{kinds:?}");
        // A shared key in front of many users: a system prompt re-rendered with each
        // end user's details reads as small edits of itself when context is judged,
        // which is why judging is off by default; off, neither it nor the sweep above is
        // marked (the user's turn is judged as before).
        let names = [
            "Ana Lima", "Bo Chen", "Cy Diaz", "Di Evans", "Ed Fox", "Flo Gray",
        ];
        let personal = |i: u64| {
            (
                format!(
                    "You are the support assistant of Example Corp. Answer briefly and \
                     politely. The customer is {} (account {}), on the {} plan.",
                    names[i as usize % names.len()],
                    40_000 + i * 7,
                    ["basic", "gold", "team"][i as usize % 3]
                ),
                None,
            )
        };
        let (marks, _) = run(&personal, true, true);
        assert!(marks[0] + marks[1] >= 10, "{marks:?}");
        let (marks, kinds) = run(&personal, true, false);
        assert_eq!(marks, [0; 4], "{kinds:?}");
        let (marks, kinds) = run(&|i| (probe(i), None), false, false);
        assert_eq!(marks, [0; 4], "{kinds:?}");
    }

    /// Two templates alternated in one conversation: each step's user message is a small
    /// edit of the one two steps back, not of the one before. Marked; a chat of
    /// distinct questions, one of them asked again, is not.
    #[test]
    fn two_templates_alternated_in_one_conversation_are_marked() {
        let cfg = MonitorConfig {
            min_requests: 5,
            ..MonitorConfig::default()
        };
        let conv = |k: u64| {
            Some(Conversation {
                before_answer: k.checked_sub(1),
                whole: k,
                ..Conversation::default()
            })
        };
        let run = |text: &dyn Fn(u64) -> String| {
            let mut m = Monitor::new(cfg.clone());
            let mut kinds = Vec::new();
            for k in 0..24u64 {
                let t = text(k);
                let e = Event {
                    conversation: conv(k),
                    ..ev(k * 10, "who", &t)
                };
                kinds.extend(m.observe(&e).into_iter().map(|a| a.kind));
            }
            (m.ids["who"].counts, kinds)
        };
        let a = |n: u64| format!("What is the exact wholesale price of product SKU-{n:05}?");
        let b = |n: u64| {
            format!(
                "Which warehouse currently stocks catalogue item number {n}, and how many units are there?"
            )
        };
        // The two templates are far apart: alternated, each step is far from the one
        // before.
        assert!(
            (simhash(&a(1)) ^ simhash(&b(1))).count_ones() > MonitorConfig::default().sweep_hamming
        );
        let (marks, kinds) = run(&|k| if k % 2 == 0 { a(10_000 + k) } else { b(k) });
        assert!(marks[0] + marks[1] >= 18, "{marks:?}");
        assert!(
            kinds.contains(&AlertKind::NearDuplicates) || kinds.contains(&AlertKind::InputSweep),
            "{kinds:?}"
        );
        let distinct = [
            "What is the capital of France?",
            "Write a haiku about autumn leaves.",
            "Explain the difference between TCP and UDP in two sentences.",
            "How many grams of flour are in a cup?",
            "What is the capital of France?",
            "Translate good morning into German.",
            "Suggest a name for a bakery that sells sourdough.",
            "What causes the seasons on Earth?",
            "Give me three tips for a job interview.",
            "Summarise the plot of Hamlet in one paragraph.",
            "Convert 72 degrees Fahrenheit to Celsius.",
            "Which planets have rings?",
        ];
        let (marks, kinds) = run(&|k| distinct[k as usize % distinct.len()].to_owned());
        assert_eq!((marks[0], marks[1]), (0, 0), "{kinds:?}");
    }

    /// Probes under 20 bytes grown into one conversation: a number changed in one short
    /// template each step. Marked; a short chat (a text adventure's commands, "go on",
    /// "yes") is not, though its commands are as short and as alike.
    #[test]
    fn short_probes_in_a_conversation_are_marked_short_talk_is_not() {
        let cfg = MonitorConfig {
            min_requests: 5,
            ..MonitorConfig::default()
        };
        let run = |text: &dyn Fn(u64) -> String| {
            let mut m = Monitor::new(cfg.clone());
            let mut kinds = Vec::new();
            for k in 0..24u64 {
                let t = text(k);
                let e = Event {
                    conversation: Some(Conversation {
                        before_answer: k.checked_sub(1),
                        whole: k,
                        ..Conversation::default()
                    }),
                    ..ev(k * 10, "who", &t)
                };
                kinds.extend(m.observe(&e).into_iter().map(|a| a.kind));
            }
            (m.ids["who"].counts, kinds)
        };
        let (marks, kinds) = run(&|k| format!("SKU {} price?", 10_000 + k));
        assert!(marks[0] >= 20, "{marks:?}");
        assert!(kinds.contains(&AlertKind::NearDuplicates), "{kinds:?}");
        let talk = [
            "go north",
            "go south",
            "take lamp",
            "go east",
            "go west",
            "open door",
            "yes",
            "look",
            "go on",
            "continue",
            "no",
            "option 2",
            "go up",
            "go down",
        ];
        let (marks, kinds) = run(&|k| talk[k as usize % talk.len()].to_owned());
        assert_eq!((marks[0], marks[1]), (0, 0), "{kinds:?}");
        assert!(template_edit(b"SKU 10001?", b"sku 10002?"));
        assert!(!template_edit(b"go north", b"go south"));
        assert!(!template_edit(b"SKU 10001?", b"SKU 10001?"));
        assert!(!template_edit(b"SKU 10001?", b"SKU 1000?"));
    }

    /// Probing at 3 requests a minute never fills the 60 s window's `min_requests`, but
    /// the long window's shares catch it; the same pace of distinct prompts does not.
    #[test]
    fn slow_probing_is_judged_over_the_long_window() {
        let benign = [
            "What is the capital of France?",
            "Write a haiku about autumn leaves.",
            "Explain the difference between TCP and UDP in two sentences.",
            "How many grams of flour are in a cup?",
            "Translate good morning into German.",
            "Suggest a name for a bakery that sells sourdough.",
            "What causes the seasons on Earth?",
            "Give me three tips for a job interview.",
            "Summarise the plot of Hamlet in one paragraph.",
            "Convert 72 degrees Fahrenheit to Celsius.",
            "Which planets have rings?",
            "Recommend a book about the history of mathematics.",
        ];
        let run = |cfg: MonitorConfig, text: &dyn Fn(u64) -> String| {
            let mut m = Monitor::new(cfg);
            let mut first = None;
            for i in 0..180u64 {
                let t = text(i);
                for a in m.observe(&ev(i * 20_000, "who", &t)) {
                    first.get_or_insert((i, a));
                }
            }
            first
        };
        let probe = |i: u64| {
            format!(
                "What is the exact wholesale price of product SKU-{:05}?",
                10_000 + i
            )
        };
        let (i, a) = run(MonitorConfig::default(), &probe).expect("slow sweep never alerted");
        assert!(
            matches!(a.kind, AlertKind::NearDuplicates | AlertKind::InputSweep),
            "{a:?}"
        );
        assert_eq!(a.window_s, 3600);
        assert_eq!(i + 1, 60, "alerted once long_min_requests inputs were in");
        let off = MonitorConfig {
            long_window_ms: 0,
            ..MonitorConfig::default()
        };
        assert!(run(off, &probe).is_none(), "the short window alone saw it");
        let mixed = |i: u64| benign[i as usize % benign.len()].to_owned();
        assert!(run(MonitorConfig::default(), &mixed).is_none());
    }

    #[test]
    fn padded_templates_are_small_edits_new_content_and_other_questions_are_not() {
        let runs = |t: &str| word_runs(&shingled(t));
        // A number changed does not break a run; words are counted past the 64 read.
        assert_eq!(
            runs("What is the price of SKU 90017?").0,
            runs("what is the PRICE of sku-90042").0
        );
        assert_eq!(runs(&"word ".repeat(100)).1, 100);
        assert_eq!(runs(&"word ".repeat(100)).0.len(), RUN_WORDS - RUN_N + 1);
        let mut ix = RunIndex::default();
        let (r, _) = runs("plorn What is the price of SKU 90001? steaxou brail");
        ix.push(0, r);
        let padded = |ix: &RunIndex, t: &str| {
            let (r, n) = runs(t);
            ix.padded(&r, n)
        };
        // New filler words on either side, the SimHash far from the first probe's.
        let probe = "gairtou mesal What is the price of SKU 90002? dounix";
        assert!(
            (simhash(probe) ^ simhash("plorn What is the price of SKU 90001? steaxou brail"))
                .count_ones()
                > 10
        );
        assert!(padded(&ix, probe));
        assert!(padded(&ix, "What is the price of SKU 90003? a b c d e f"));
        // Too much outside the template, a reworded question, a short template.
        assert!(!padded(
            &ix,
            "What is the price of SKU 90003? a b c d e f g"
        ));
        assert!(!padded(&ix, "How much does SKU 90004 cost at the moment?"));
        assert!(!padded(&ix, "price of SKU 90005 please"));
        // An instruction before new content.
        let mut app = RunIndex::default();
        let (r, _) = runs(
            "Translate the following text into French: The train to Lyon leaves at nine from platform four.",
        );
        app.push(0, r);
        assert!(!padded(
            &app,
            "Translate the following text into French: Please remember to water the plants while we are away next week."
        ));
        // Memory: the last RUN_INPUTS inputs, and only those of the window.
        for i in 0..300u64 {
            let (r, _) = runs(&format!("request {i} about topic {} and more", i % 7));
            app.push(i, r);
        }
        assert_eq!(app.inputs.len(), RUN_INPUTS);
        let total: usize = app.inputs.iter().map(|(_, r)| r.len()).sum();
        assert_eq!(
            app.counts.values().map(|&c| c as usize).sum::<usize>(),
            total
        );
        app.expire(290);
        assert_eq!(app.inputs.len(), 10);
        app.expire(1_000);
        assert!(app.counts.is_empty());
    }

    #[test]
    fn window_counts_follow_the_events() {
        let cfg = MonitorConfig {
            max_events: 64,
            window_ms: 5_000,
            ..MonitorConfig::default()
        };
        let mut m = Monitor::new(cfg);
        let mut t = 0u64;
        for i in 0..600u64 {
            // Bursts (evictions by max_events), pauses (expiry by time), repeats (dups).
            t += if i % 97 == 0 { 4_000 } else { 7 };
            let text = format!("question {} about topic {}", i % 5, (i / 40) * 7919);
            let mut e = ev(t, "carol", &text);
            e.refused = i % 3 == 0;
            e.screening_hit = i % 11 == 0;
            m.observe(&e);
            let st = &m.ids["carol"];
            let count = |f: fn(&Seen) -> bool| st.events.iter().filter(|e| f(e)).count();
            assert_eq!(
                st.counts,
                [
                    count(|e| e.dup),
                    count(|e| e.near),
                    count(|e| e.refused),
                    count(|e| e.hit)
                ],
                "after event {i}"
            );
        }
    }

    #[test]
    fn refusals_and_cooldown() {
        let mut m = Monitor::new(MonitorConfig::default());
        let mut alerts = Vec::new();
        for i in 0..30u64 {
            let text = format!("distinct question number {i} about topic {}", i * 7919);
            let mut e = ev(i * 1000, "bob", &text);
            e.refused = true;
            alerts.extend(m.observe(&e));
        }
        let kinds: Vec<_> = alerts.iter().map(|a| a.kind).collect();
        assert_eq!(
            kinds
                .iter()
                .filter(|k| **k == AlertKind::RepeatedRefusals)
                .count(),
            1,
            "{kinds:?}"
        );
    }

    /// The wall clock steps back an hour (an NTP correction, a VM restored) while a
    /// caller keeps probing the guardrails: the monitor must alert again once the
    /// cooldown has passed in elapsed time, not stay silent until the clock catches up.
    #[test]
    fn a_clock_stepping_back_does_not_silence_alerts() {
        let mut m = Monitor::new(MonitorConfig::default());
        let t0 = 10 * 3_600_000u64;
        let refused = |m: &mut Monitor, at: u64, i: u64| {
            let text = format!("distinct question number {i} about topic {}", i * 7919);
            let mut e = ev(at, "bob", &text);
            e.refused = true;
            m.observe(&e)
                .into_iter()
                .filter(|a| a.kind == AlertKind::RepeatedRefusals)
                .count()
        };
        let mut before = 0;
        for i in 0..30u64 {
            before += refused(&mut m, t0 + i * 1000, i);
        }
        assert_eq!(before, 1);
        // One hour back; ten minutes (two cooldowns) of refusals, one every 2 s.
        let back = t0 + 30_000 - 3_600_000;
        let mut after = 0;
        for i in 0..300u64 {
            after += refused(&mut m, back + i * 2000, 100 + i);
        }
        assert!(
            after >= 1,
            "no alert in 10 minutes after the clock stepped back"
        );
    }

    #[test]
    fn identities_are_bounded() {
        let cfg = MonitorConfig {
            max_identities: 10,
            ..MonitorConfig::default()
        };
        let mut m = Monitor::new(cfg);
        for i in 0..100u64 {
            let id = format!("id{i}");
            m.observe(&ev(i, &id, "hello"));
        }
        assert_eq!(m.identities(), 10);
    }

    #[test]
    fn new_identities_at_the_bound_evict_in_batches_least_recent_first() {
        let cfg = MonitorConfig {
            max_identities: 1_600,
            ..MonitorConfig::default()
        };
        let mut m = Monitor::new(cfg);
        let mut t = 0u64;
        for i in 0..6_400u64 {
            t += 1;
            m.observe(&ev(t, &format!("id{i}"), "hello"));
            // One identity stays active throughout: never the least recently seen.
            if i % 50 == 0 {
                t += 1;
                m.observe(&ev(t, "alice", "hello again"));
            }
        }
        assert!(m.identities() <= 1_600);
        assert!(m.tracks("alice"), "the active identity was evicted");
        assert!(m.tracks("id6399") && !m.tracks("id0"));
        // 4,800 and more arrivals past the bound, a hundred per pass: no scan per arrival.
        assert!(
            m.evictions <= 6_400 / 100,
            "{} eviction passes",
            m.evictions
        );
    }

    #[test]
    fn rate_against_own_baseline() {
        let mut m = Monitor::new(MonitorConfig::default());
        // 20 minutes at 10 requests per minute: baseline ~10. Distinct requests (a
        // template with a counter would be a slow sweep, which the long window reports).
        let words = [
            "river", "budget", "quantum", "recipe", "lantern", "protocol", "harvest", "violin",
            "glacier", "ledger", "orbit", "pastry", "canyon", "thesis", "harbor", "meadow",
        ];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut t = 0u64;
        for _ in 0..200u64 {
            let text: Vec<&str> = (0..8)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    words[(x % words.len() as u64) as usize]
                })
                .collect();
            let text = text.join(" ");
            assert!(m.observe(&ev(t, "carol", &text)).is_empty(), "{text}");
            t += 6_000;
        }
        // Then 100 requests in 20 s: 10× the baseline.
        let mut kinds = Vec::new();
        for i in 0..100u64 {
            let text = format!("burst {i} asks about subject {}", i * 104_729);
            kinds.extend(
                m.observe(&ev(t, "carol", &text))
                    .into_iter()
                    .map(|a| a.kind),
            );
            t += 200;
        }
        assert!(kinds.contains(&AlertKind::RateSpike), "{kinds:?}");
    }

    #[test]
    fn output_volume() {
        let cfg = MonitorConfig {
            output_tokens: 10_000,
            ..MonitorConfig::default()
        };
        let mut m = Monitor::new(cfg);
        let mut alerts = Vec::new();
        for i in 0..50u64 {
            let text = format!("write me a long essay on subject {}", i * 7);
            let mut e = ev(i * 30_000, "dave", &text);
            e.output_tokens = 400;
            alerts.extend(m.observe(&e).into_iter().map(|a| (i, a.kind, a.action)));
        }
        // 25 × 400 tokens reach the budget; the alert repeats once per 5-minute cooldown
        // (every 10 events) while the volume stays above it.
        assert_eq!(
            alerts,
            [24, 34, 44].map(|i| (i, AlertKind::OutputVolume, AlertAction::Throttle))
        );
    }
}
