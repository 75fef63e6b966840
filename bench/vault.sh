#!/usr/bin/env bash
# Vault throughput: seal and unseal a large file with Warden's sealed format (AES-256-GCM,
# 1 MiB segments, parallel), side by side with `age` (X25519 + ChaCha20-Poly1305) on the
# same file, and `openssl speed -evp aes-256-gcm` as the single-core AES-GCM limit.
# Peak memory from /usr/bin/time. Output goes to /dev/null so the disk is not measured;
# inputs are read from the page cache (warmed first).
#
#   bench/vault.sh              # 2 GiB
#   SIZE_MIB=512 bench/vault.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-2048}
OUT=bench/out/vault
mkdir -p "$OUT"
for t in age age-keygen openssl /usr/bin/time; do
  command -v "$t" >/dev/null || { echo "missing $t: run .ci/setup (apt: age, openssl, time)" >&2; exit 2; }
done
cargo build --release -q -p warden-vault --example vault_bench
BIN=target/release/examples/vault_bench
IN="$OUT/plain.bin"
if [ ! -f "$IN" ] || [ "$(stat -c %s "$IN")" != "$((SIZE_MIB * 1048576))" ]; then
  head -c "$((SIZE_MIB * 1048576))" /dev/urandom > "$IN"
fi
BYTES=$(stat -c %s "$IN")
CORES=$(nproc)

# Single-core AES-256-GCM limit (1 MiB blocks), bytes/s.
OSSL=$(openssl speed -evp aes-256-gcm -bytes 1048576 -seconds 3 2>/dev/null \
  | awk 'tolower($1) ~ /aes-256-gcm/ {v=$NF; sub(/k$/,"",v); print v*1000}' | tail -1)

# run NAME CMD...: prints "seconds cpu_percent max_rss_kib" of the best of 3 runs.
run() {
  local best="" line
  for _ in 1 2 3; do
    cat "$IN" > /dev/null
    line=$( { /usr/bin/time -f "%e %P %M" "$@" > /dev/null 2>/dev/null; } 2>&1 | tail -1 )
    line=${line//%/}
    if [ -z "$best" ] || awk -v a="${line%% *}" -v b="${best%% *}" 'BEGIN{exit !(a<b)}'; then best=$line; fi
  done
  echo "$best"
}

age-keygen -o "$OUT/age.key" 2>/dev/null || true
RCPT=$(age-keygen -y "$OUT/age.key")
"$BIN" seal "$IN" "$OUT/plain.sealed" >/dev/null
age -r "$RCPT" -o "$OUT/plain.age" "$IN"

declare -A R
R[seal1]=$(RAYON_NUM_THREADS=1 run "$BIN" seal "$IN" /dev/null)
R[sealN]=$(RAYON_NUM_THREADS=$CORES run "$BIN" seal "$IN" /dev/null)
R[unseal1]=$(RAYON_NUM_THREADS=1 run "$BIN" unseal "$OUT/plain.sealed" /dev/null)
R[unsealN]=$(RAYON_NUM_THREADS=$CORES run "$BIN" unseal "$OUT/plain.sealed" /dev/null)
R[age_enc]=$(run age -r "$RCPT" -o /dev/null "$IN")
R[age_dec]=$(run age -d -i "$OUT/age.key" -o /dev/null "$OUT/plain.age")

gib() { awk -v b="$BYTES" -v s="$1" 'BEGIN{printf "%.2f", b/s/1073741824}'; }
echo "Vault throughput, $((BYTES / 1048576)) MiB file, $CORES cores ($(date -u +%Y-%m-%d))"
echo "openssl speed -evp aes-256-gcm (1 MiB blocks, 1 core): $(awk -v o="$OSSL" 'BEGIN{printf "%.2f", o/1073741824}') GiB/s"
echo
echo "| operation | tool | threads | GiB/s | CPU % | GiB/s per core used | % of openssl 1-core | × age | peak RSS MiB |"
echo "|---|---|---|---|---|---|---|---|---|"
row() { # label tool threads key agekey
  local r=${R[$4]} a=${R[$5]}
  local s=${r%% *} rest=${r#* }; local cpu=${rest%% *} rss=${rest#* }
  local as=${a%% *}
  awk -v b="$BYTES" -v s="$s" -v cpu="$cpu" -v rss="$rss" -v o="$OSSL" -v as="$as" \
    -v l="$1" -v t="$2" -v n="$3" 'BEGIN{
      g=b/s/1073741824; pc=(cpu>0)? g/(cpu/100) : g;
      printf "| %s | %s | %s | %.2f | %d | %.2f | %.0f%% | %.1f× | %.0f |\n",
        l, t, n, g, cpu, pc, 100*pc*1073741824/o, as/s, rss/1024 }'
}
row seal warden "1" seal1 age_enc
row seal warden "$CORES" sealN age_enc
row unseal warden "1" unseal1 age_dec
row unseal warden "$CORES" unsealN age_dec
row encrypt age "(Go runtime)" age_enc age_enc
row decrypt age "(Go runtime)" age_dec age_dec
