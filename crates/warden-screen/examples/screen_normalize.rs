//! Text side of the encoder fine-tuning (`scripts/finetune_screen_encoder.py`): reads JSON
//! lines with a `text` field on stdin and writes, per line, the heuristic + linear logit
//! and the screener's normalised text (what the transformer tier's encoder reads):
//!
//! ```text
//! cargo run --release -p warden-screen --example screen_normalize < texts.jsonl > out.jsonl
//! ```

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a developer tool run by a script: it stops on bad input"
)]

use std::io::{BufRead, Write};
use warden_screen::Screener;
use warden_screen::normalize::normalize;

fn main() {
    let screener = Screener::embedded().expect("screener");
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in std::io::stdin().lock().lines() {
        let v: serde_json::Value = serde_json::from_str(&line.expect("stdin")).expect("JSON line");
        let text = v["text"].as_str().expect("a text field");
        let row = serde_json::json!({
            "logit": screener.linear_logit(text),
            "text": normalize(text).text,
        });
        writeln!(out, "{row}").expect("stdout");
    }
}
