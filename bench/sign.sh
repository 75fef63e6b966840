#!/usr/bin/env bash
# Benchmark: Warden sign/verify against the OpenSSF reference tool (`model_signing`)
# and the hashing floor (`openssl dgst -sha256`), on the same data, in one run.
#
#   bench/sign.sh            # data under bench/out/ (kept between runs)
#   RUNS=3 bench/sign.sh     # best of 3 (default 2)
#
# Data sets: a 1 GiB directory (4 large files + 500 small ones), a 2 GiB single file,
# and 5000 small files (16 KiB each). Files are random, written once, then read from
# the page cache by every tool (a warm-up pass reads them first), so the numbers
# compare CPU work, not the disk. Needs .ci/setup (model_signing in .venv) and openssl.
# Prints a Markdown table of wall times and ratios; paste it into README.md
# ("Signing").
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
OUT="$ROOT/bench/out"
RUNS="${RUNS:-2}"
VENV="${WARDEN_TEST_VENV:-$ROOT/.venv}"
MS="$VENV/bin/model_signing"
[ -x "$MS" ] || { echo "model_signing not found in $VENV: run .ci/setup" >&2; exit 2; }
command -v openssl >/dev/null || { echo "openssl not found: run .ci/setup" >&2; exit 2; }

cargo build --release -q -p warden
WARDEN="$ROOT/target/release/warden"

mkdir -p "$OUT"
# Data, created once.
if [ ! -f "$OUT/dir1g.done" ]; then
  rm -rf "$OUT/dir1g"; mkdir -p "$OUT/dir1g/small"
  for i in 1 2 3 4; do head -c $((240 << 20)) /dev/urandom > "$OUT/dir1g/large-$i.bin"; done
  for i in $(seq 1 500); do head -c $((128 << 10)) /dev/urandom > "$OUT/dir1g/small/f$i.bin"; done
  touch "$OUT/dir1g.done"
fi
if [ ! -f "$OUT/file2g.done" ]; then
  head -c $((2 << 30)) /dev/urandom > "$OUT/file2g.bin"; touch "$OUT/file2g.done"
fi
if [ ! -f "$OUT/small5k.done" ]; then
  rm -rf "$OUT/small5k"; mkdir -p "$OUT/small5k"
  for d in $(seq 1 50); do
    mkdir -p "$OUT/small5k/d$d"
    for i in $(seq 1 100); do head -c 16384 /dev/urandom > "$OUT/small5k/d$d/f$i.bin"; done
  done
  touch "$OUT/small5k.done"
fi

KEYS="$OUT/keys"; mkdir -p "$KEYS"
[ -f "$KEYS/k.pem" ] || openssl ecparam -name prime256v1 -genkey -noout -out "$KEYS/k.pem"
[ -f "$KEYS/k.pub" ] || openssl ec -in "$KEYS/k.pem" -pubout -out "$KEYS/k.pub" 2>/dev/null

# best_of CMD...: prints "wall cpu" (seconds, best wall time of $RUNS runs; cpu is
# user+sys of that run).
best_of() {
  local best="" bestcpu="" tf
  tf=$(mktemp)
  for _ in $(seq 1 "$RUNS"); do
    /usr/bin/time -o "$tf" -f "%e %U %S" "$@" >/dev/null 2>&1
    read -r wall user sys < <(tail -1 "$tf")
    local cpu; cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN{printf "%.2f", u+s}')
    if [ -z "$best" ] || awk -v a="$wall" -v b="$best" 'BEGIN{exit !(a<b)}'; then
      best=$wall; bestcpu=$cpu
    fi
  done
  rm -f "$tf"
  echo "$best $bestcpu"
}

warm() { find "$1" -type f -print0 | xargs -0 cat >/dev/null; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "-" }'; }

row() { # name path extra-warden-args...
  local name=$1 path=$2; shift 2
  local sig_w="$OUT/$name.warden.sig" sig_m="$OUT/$name.ms.sig"
  warm "$path"
  read -r ws wsc < <(best_of "$WARDEN" sign "$path" --key "$KEYS/k.pem" --signature "$sig_w" "$@")
  read -r wv wvc < <(best_of "$WARDEN" verify "$path" --signature "$sig_w" --public-key "$KEYS/k.pub")
  read -r ms msc < <(best_of "$MS" sign key "$path" --private_key "$KEYS/k.pem" --signature "$sig_m")
  read -r mv mvc < <(best_of "$MS" verify key "$path" --signature "$sig_m" --public_key "$KEYS/k.pub")
  read -r os osc < <(best_of sh -c "find '$path' -type f -print0 | xargs -0 openssl dgst -sha256")
  # Sanity: each tool accepts the other's signature (files mode only: the reference
  # CLI cannot verify shards).
  if [ $# -eq 0 ]; then
    "$MS" verify key "$path" --signature "$sig_w" --public_key "$KEYS/k.pub" >/dev/null
    "$WARDEN" verify "$path" --signature "$sig_m" --public-key "$KEYS/k.pub" >/dev/null
  fi
  local mode="files"; [ $# -gt 0 ] && mode="shards"
  printf '| %s (%s) | %s / %s | %s / %s | %s | **%sx** / **%sx** | %s / %s / %s | %s |\n' \
    "$name" "$mode" "$ws" "$wv" "$ms" "$mv" "$os" \
    "$(ratio "$ms" "$ws")" "$(ratio "$mv" "$wv")" \
    "$wvc" "$mvc" "$osc" "$(ratio "$wvc" "$osc")"
}

echo "cores: $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); best of $RUNS; page cache warm"
echo
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| data | warden sign / verify, wall s | model_signing sign / verify, wall s | openssl dgst, wall s | warden speed-up sign / verify | CPU s (user+sys) for verify: warden / model_signing / openssl | warden CPU ÷ openssl CPU |"
echo "|---|---|---|---|---|---|---|"
row dir1g "$OUT/dir1g"
row small5k "$OUT/small5k"
row file2g "$OUT/file2g.bin"
row file2g "$OUT/file2g.bin" --shards
