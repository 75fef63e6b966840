//! The screening API the gateway and `warden screen` call.
//!
//! `score = sigmoid(model logit + Σ rule weights)`; the verdict compares the score with
//! the route's thresholds for the content's role. The default thresholds come from the
//! model card (`model/screen-model.json`), calibrated on the validation splits only.

use crate::Error;
use crate::heuristics::{Heuristics, RuleHit};
use crate::model::LinearModel;
use crate::normalize::{NormStats, normalize, undecorated, zero_width_as_space};

/// The logit a bare conversational continuation or a short wordless message is scored
/// at, at most (score 0.018:
/// below every calibrated flag threshold, and below the transformer tier's uncertainty
/// band (from 0.03), so that tier does not re-score it either).
const CONTINUATION_LOGIT: f64 = -4.0;

/// The committed weights (see `model/screen-model.json` for how they were made).
const WEIGHTS: &[u8] = include_bytes!("../model/screen-model.bin");
/// The embedded linear model's bytes (the transformer tier checks its blend was fitted
/// with them).
#[cfg(feature = "transformer")]
pub(crate) const LINEAR_WEIGHTS: &[u8] = WEIGHTS;

/// At most this many texts of one [`Screener::screen_parts`] call go through the
/// transformer tier (each costs tens of milliseconds of CPU); later in-band texts keep
/// their heuristic + linear score, as without the tier.
pub const MAX_ENCODER_RUNS_PER_CALL: usize = 8;
/// The committed model card.
const CARD: &str = include_str!("../model/screen-model.json");

/// Where a piece of text sits in a request. Everything that reaches the model is
/// screened, including tool output and retrieved documents (indirect injection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Operator-written system prompt.
    System,
    /// End-user message.
    User,
    /// Earlier assistant turns sent back by the client.
    Assistant,
    /// Tool or function results.
    Tool,
    /// Retrieved documents (RAG context, web pages, files).
    Retrieved,
}

impl Role {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
            Role::Retrieved => "retrieved",
        }
    }
}

/// What to do with a request.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Forward.
    Pass,
    /// Forward, log and alert.
    Flag,
    /// Refuse (4xx with the rule ids), no upstream call.
    Block,
}

impl Action {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pass => "pass",
            Action::Flag => "flag",
            Action::Block => "block",
        }
    }
}

/// Score thresholds: `score >= block` blocks, else `score >= flag` flags.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Thresholds {
    /// Block at or above.
    pub block: f64,
    /// Flag at or above.
    pub flag: f64,
}

impl Thresholds {
    /// Decision for `score`.
    pub fn decide(&self, score: f64) -> Action {
        if score >= self.block {
            Action::Block
        } else if score >= self.flag {
            Action::Flag
        } else {
            Action::Pass
        }
    }
}

/// Per-route screening policy: thresholds per role, and which roles are screened.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RoutePolicy {
    /// Thresholds for every role without its own entry.
    pub default: Thresholds,
    /// Role-specific thresholds (for example stricter for retrieved content).
    #[serde(default)]
    pub per_role: Vec<(Role, Thresholds)>,
    /// Roles that are not screened at all (empty by default: everything is screened).
    #[serde(default)]
    pub skip_roles: Vec<Role>,
    /// Highest action this route may take: `flag` turns blocks into flags (monitor mode).
    pub max_action: Action,
}

impl RoutePolicy {
    /// Thresholds for `role`.
    pub fn thresholds(&self, role: Role) -> Thresholds {
        self.per_role
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, t)| *t)
            .unwrap_or(self.default)
    }
}

/// Result of screening one text.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Verdict {
    /// Probability-like score in [0, 1].
    pub score: f64,
    /// Decision under the policy used.
    pub verdict: Action,
    /// Rules that fired (rule ids are stable).
    pub rules: Vec<RuleHit>,
    /// The role the text was screened as.
    pub role: Role,
    /// What normalisation removed or decoded.
    pub normalization: NormStats,
}

/// Model card: how the weights were made and the calibrated thresholds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ModelCard {
    /// Format tag.
    pub format: String,
    /// Thresholds calibrated on validation data.
    pub thresholds: Thresholds,
    /// Everything else the trainer recorded (datasets and hashes, command, metrics).
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

/// The embedded model card's calibrated thresholds (without loading the weights).
pub fn card_thresholds() -> Result<Thresholds, Error> {
    let card: ModelCard = serde_json::from_str(CARD)
        .map_err(|e| Error::Model(format!("embedded model card: {e}")))?;
    Ok(card.thresholds)
}

/// Heuristics plus the linear model. Build once and share (`Arc`); `screen_text` takes
/// `&self` and allocates only what one text needs.
#[derive(Debug, Clone)]
pub struct Screener {
    heuristics: Heuristics,
    model: LinearModel,
    card: ModelCard,
    policy: RoutePolicy,
    #[cfg(feature = "transformer")]
    transformer: Option<std::sync::Arc<crate::transformer::Transformer>>,
}

impl Screener {
    /// The embedded model with its calibrated thresholds.
    pub fn embedded() -> Result<Self, Error> {
        let card: ModelCard = serde_json::from_str(CARD)
            .map_err(|e| Error::Model(format!("embedded model card: {e}")))?;
        Self::from_parts(LinearModel::from_bytes(WEIGHTS)?, card)
    }

    /// A screener from a model and card (for trainers and tests).
    pub fn from_parts(model: LinearModel, card: ModelCard) -> Result<Self, Error> {
        let policy = RoutePolicy {
            default: card.thresholds,
            per_role: Vec::new(),
            skip_roles: Vec::new(),
            max_action: Action::Block,
        };
        Ok(Self {
            heuristics: Heuristics::new()?,
            model,
            card,
            policy,
            #[cfg(feature = "transformer")]
            transformer: None,
        })
    }

    /// Adds the transformer tier: texts whose heuristic + linear score falls in its band
    /// are re-scored by the blend, and the default policy takes the head card's
    /// validation-calibrated thresholds.
    #[cfg(feature = "transformer")]
    #[must_use]
    pub fn with_transformer(mut self, t: std::sync::Arc<crate::transformer::Transformer>) -> Self {
        self.policy.default = t.card().thresholds;
        self.transformer = Some(t);
        self
    }

    /// Whether the transformer tier is on.
    pub fn has_transformer(&self) -> bool {
        #[cfg(feature = "transformer")]
        return self.transformer.is_some();
        #[cfg(not(feature = "transformer"))]
        false
    }

    /// The model card.
    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    /// Default policy (calibrated thresholds, everything screened, blocking allowed).
    pub fn default_policy(&self) -> &RoutePolicy {
        &self.policy
    }

    /// Raw score and rules of `text`, without a decision.
    pub fn score(&self, text: &str) -> (f64, Vec<RuleHit>, NormStats) {
        self.score_budgeted(text, &mut 1)
    }

    /// [`Self::score`], running the transformer tier only while `encoder_budget` > 0
    /// (decremented per run).
    fn score_budgeted(
        &self,
        text: &str,
        encoder_budget: &mut usize,
    ) -> (f64, Vec<RuleHit>, NormStats) {
        let (logit, rules, stats, normalized) = self.linear(text);
        let score = 1.0 / (1.0 + (-logit).exp());
        #[cfg(feature = "transformer")]
        let score = self.rescore(&normalized, logit, score, encoder_budget);
        #[cfg(not(feature = "transformer"))]
        let _ = (encoder_budget, normalized);
        (score, rules, stats)
    }

    /// The heuristic + linear logit (rules included) of `text`, its rules, what
    /// normalisation found and the normalised text scored. A text with zero-width
    /// characters is scored with them removed and with them read as spaces (invisible
    /// characters in place of spaces glue the words together once removed), a text whose
    /// Latin letters are thick with diacritics also without them
    /// ([`crate::normalize::undecorated`]); the highest logit wins.
    fn linear(&self, text: &str) -> (f64, Vec<RuleHit>, NormStats, String) {
        let n = normalize(text);
        let score = |t: &str, stats: &NormStats| {
            let rules = self.heuristics.check(t, stats);
            let logit = f64::from(self.model.logit(t))
                + rules.iter().map(|r| f64::from(r.weight)).sum::<f64>();
            (logit, rules)
        };
        let (mut logit, mut rules) = score(&n.text, &n.stats);
        let mut scored = None;
        // Other readings, each scored with the original statistics (the invisible
        // characters and diacritics were there).
        let plain = undecorated(text);
        let spaced = zero_width_as_space(text);
        let plain_spaced = plain.as_deref().and_then(zero_width_as_space);
        for other in [spaced, plain, plain_spaced].into_iter().flatten() {
            let s = normalize(&other);
            let (l, r) = score(&s.text, &n.stats);
            if l > logit {
                (logit, rules, scored) = (l, r, Some(s.text));
            }
        }
        // A whole message that only keeps the conversation going ("continue", "go on")
        // says nothing to screen: the n-gram model's reading of it is its training
        // data's bias, not evidence (see `heuristics::is_continuation`).
        if rules.is_empty() && crate::heuristics::is_continuation(&n.text) {
            logit = logit.min(CONTINUATION_LOGIT);
        }
        // Likewise a short message without a letter ("...", "---", "42", "👍", an empty
        // one), unless normalisation removed or decoded something from it.
        if rules.is_empty()
            && n.stats.invisible() == 0
            && n.stats.decoded() == 0
            && crate::heuristics::is_wordless(&n.text)
        {
            logit = logit.min(CONTINUATION_LOGIT);
        }
        (logit, rules, n.stats, scored.unwrap_or(n.text))
    }

    /// The heuristic + linear logit (rules included) of `text`: what the transformer
    /// tier's blend takes as its first input.
    pub fn linear_logit(&self, text: &str) -> f64 {
        self.linear(text).0
    }

    /// The transformer tier on an uncertain score.
    /// - It may lower a score only for text it read entirely: a text longer than the
    ///   encoder's token budget keeps the higher of the two (padding placed before an
    ///   injection must not buy a lower score).
    /// - Fails closed: an encoder error or a non-finite logit scores 1.0.
    #[cfg(feature = "transformer")]
    fn rescore(&self, normalized: &str, logit: f64, score: f64, budget: &mut usize) -> f64 {
        match &self.transformer {
            Some(t) if t.in_band(score) && *budget > 0 => {
                *budget -= 1;
                match t.head(normalized) {
                    Ok(h) if h.truncated => t.blend(logit, h.logit).max(score),
                    Ok(h) => t.blend(logit, h.logit),
                    Err(_) => 1.0,
                }
            }
            _ => score,
        }
    }

    /// Screens `text` in `role` under the default policy.
    pub fn screen_text(&self, text: &str, role: Role) -> Verdict {
        self.screen_with(text, role, &self.policy)
    }

    /// Screens `text` in `role` under `policy`.
    pub fn screen_with(&self, text: &str, role: Role, policy: &RoutePolicy) -> Verdict {
        self.screen_budgeted(text, role, policy, &mut 1)
    }

    fn screen_budgeted(
        &self,
        text: &str,
        role: Role,
        policy: &RoutePolicy,
        encoder_budget: &mut usize,
    ) -> Verdict {
        if policy.skip_roles.contains(&role) {
            return Verdict {
                score: 0.0,
                verdict: Action::Pass,
                rules: Vec::new(),
                role,
                normalization: NormStats::default(),
            };
        }
        let (score, rules, normalization) = self.score_budgeted(text, encoder_budget);
        let verdict = policy.thresholds(role).decide(score).min(policy.max_action);
        Verdict {
            score,
            verdict,
            rules,
            role,
            normalization,
        }
    }

    /// Screens every part of a request; returns the worst verdict (highest action, then
    /// highest score) and its index. With the transformer tier, at most
    /// [`MAX_ENCODER_RUNS_PER_CALL`] parts run the encoder and screening stops at the
    /// first part that blocks.
    ///
    /// With two or more screened parts, their texts joined by newlines (what the model
    /// reads: engines join content parts and templates join messages) are screened too,
    /// around each seam only ([`SEAM`] bytes either side, see [`Seams`]: the model scores
    /// 512-byte windows and the rules are shorter, so text further from a seam was
    /// already judged with its own part, and the join costs at most about twice
    /// `SEAM` per seam instead of a second pass over every part),
    /// under the thresholds of the present role with the highest block threshold, so an
    /// injection split across parts is seen whole and the join is never judged more
    /// strictly than one of its parts would be. Its verdict, when it takes a stronger
    /// action than every part's, is returned with the index one past the last part and
    /// that role.
    pub fn screen_parts<'a>(
        &self,
        parts: impl IntoIterator<Item = (Role, &'a str)>,
        policy: &RoutePolicy,
    ) -> Option<(usize, Verdict)> {
        let mut worst: Option<(usize, Verdict)> = None;
        let mut budget = MAX_ENCODER_RUNS_PER_CALL;
        let mut seams = Seams::default();
        let mut screened = 0usize;
        let mut n = 0usize;
        // The present role with the highest block threshold.
        let mut lax: Option<(Role, Thresholds)> = None;
        for (i, (role, text)) in parts.into_iter().enumerate() {
            n = i + 1;
            if !policy.skip_roles.contains(&role) {
                seams.push(text);
                screened += 1;
                let t = policy.thresholds(role);
                if lax.is_none_or(|(_, l)| t.block > l.block) {
                    lax = Some((role, t));
                }
            }
            // Once a part blocks, the request is refused: with the transformer tier on,
            // screening the rest would only spend CPU.
            if self.has_transformer()
                && worst
                    .as_ref()
                    .is_some_and(|(_, w)| w.verdict == Action::Block)
            {
                break;
            }
            let v = self.screen_budgeted(text, role, policy, &mut budget);
            let replace = match &worst {
                None => true,
                Some((_, w)) => (v.verdict, v.score) > (w.verdict, w.score),
            };
            if replace {
                worst = Some((i, v));
            }
        }
        let blocked = worst
            .as_ref()
            .is_some_and(|(_, w)| w.verdict == Action::Block);
        if let Some((role, t)) = lax
            && screened > 1
            && !(blocked && self.has_transformer())
        {
            let joint = RoutePolicy {
                default: t,
                per_role: Vec::new(),
                skip_roles: Vec::new(),
                max_action: policy.max_action,
            };
            for seam in seams.finish() {
                let v = self.screen_budgeted(&seam, role, &joint, &mut budget);
                // Only a stronger action: a part that reaches it names itself better.
                if worst.as_ref().is_none_or(|(_, w)| v.verdict > w.verdict) {
                    worst = Some((n, v));
                }
            }
        }
        worst
    }
}

/// Bytes of each part, either side of a seam between two parts, that the joined
/// screening reads (at least the linear model's 512-byte window).
pub const SEAM: usize = 1024;

/// The texts around the seams between consecutive parts, joined by newlines: a part
/// up to `2 × SEAM` long is taken whole (so an injection spread over several short
/// messages is read whole); of a longer one, its first `SEAM` bytes end the current
/// text and its last `SEAM` bytes start the next. Texts holding a single part (no seam)
/// are dropped.
#[derive(Debug, Default)]
pub struct Seams {
    done: Vec<String>,
    cur: String,
    parts_in_cur: usize,
}

impl Seams {
    /// Adds the next part.
    pub fn push(&mut self, text: &str) {
        if self.parts_in_cur > 0 {
            self.cur.push('\n');
        }
        self.parts_in_cur += 1;
        if text.len() <= 2 * SEAM {
            self.cur.push_str(text);
            return;
        }
        let (head, tail) = crate::normalize::head_and_tail(text, SEAM);
        self.cur.push_str(head);
        let full = std::mem::replace(&mut self.cur, tail.to_owned());
        if self.parts_in_cur > 1 {
            self.done.push(full);
        }
        self.parts_in_cur = 1;
    }

    /// The texts to screen, each spanning at least one seam.
    pub fn finish(mut self) -> Vec<String> {
        if self.parts_in_cur > 1 {
            self.done.push(self.cur);
        }
        self.done
    }
}
