//! Why does a text score what it scores? For each argument: the screener's score and
//! rules, the model's bias and mean feature weight, and, per word, how much the logit
//! drops when that word is removed (occlusion).
//!
//! ```text
//! cargo run --release -p warden-screen --example explain_screen -- "Answer in French."
//! ```

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    reason = "a developer tool run by hand"
)]

use warden_screen::Screener;
use warden_screen::model::LinearModel;
use warden_screen::normalize::normalize;

const WEIGHTS: &[u8] = include_bytes!("../model/screen-model.bin");

fn main() {
    let screener = Screener::embedded().unwrap();
    let model = LinearModel::from_bytes(WEIGHTS).unwrap();
    for text in std::env::args().skip(1) {
        let (score, rules, _) = screener.score(&text);
        let norm = normalize(&text).text;
        let logit = model.logit(&norm);
        let ids: Vec<&str> = rules.iter().map(|r| r.id.as_str()).collect();
        println!(
            "{text:?}\n  score {score:.4}  logit {logit:.3} (bias {:.3})  rules {ids:?}",
            model.bias()
        );
        let words: Vec<&str> = norm.split_whitespace().collect();
        let mut drops: Vec<(f32, &str)> = words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let rest: Vec<&str> = words
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, w)| *w)
                    .collect();
                (logit - model.logit(&rest.join(" ")), *w)
            })
            .collect();
        drops.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (d, w) in drops.iter().take(8) {
            println!("    {d:+.3}  {w}");
        }
    }
}
