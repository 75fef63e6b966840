#!/usr/bin/env bash
# Vault throughput: seal and unseal a large file with Warden's sealed format (AES-256-GCM,
# 1 MiB segments, parallel), side by side with `age` (X25519 + ChaCha20-Poly1305) on the
# same file, and `openssl speed -evp aes-256-gcm` as the single-core AES-GCM limit.
# Peak memory from /usr/bin/time. Inputs live in tmpfs (/dev/shm, or $BENCH_DIR) and output
# goes to /dev/null, so the disk is not what is measured (at most 2 files of SIZE_MIB at
# once; removed at the end).
#
#   bench/vault.sh              # 2 GiB
#   SIZE_MIB=512 bench/vault.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-2048}
OUT=${BENCH_DIR:-/dev/shm/warden-vault-bench}
mkdir -p "$OUT"
trap 'rm -rf "$OUT"' EXIT
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
    /usr/bin/time -f "%e %U %S %M" -o "$OUT/time.txt" "$@" > /dev/null 2>/dev/null
    line=$(tail -1 "$OUT/time.txt")
    line=${line//%/}
    if [ -z "$best" ] || awk -v a="${line%% *}" -v b="${best%% *}" 'BEGIN{exit !(a<b)}'; then best=$line; fi
  done
  echo "$best"
}

[ -f "$OUT/age.key" ] || age-keygen -o "$OUT/age.key" 2>/dev/null
RCPT=$(age-keygen -y "$OUT/age.key")
declare -A R
R[seal1]=$(RAYON_NUM_THREADS=1 run "$BIN" seal "$IN" /dev/null)
R[sealN]=$(RAYON_NUM_THREADS=$CORES run "$BIN" seal "$IN" /dev/null)
R[age_enc]=$(run age -r "$RCPT" -o /dev/null "$IN")
R[cat]=$(run cat "$IN")
"$BIN" seal "$IN" "$OUT/plain.sealed" >/dev/null
R[unseal1]=$(RAYON_NUM_THREADS=1 run "$BIN" unseal "$OUT/plain.sealed" /dev/null)
R[unsealN]=$(RAYON_NUM_THREADS=$CORES run "$BIN" unseal "$OUT/plain.sealed" /dev/null)
rm -f "$OUT/plain.sealed"
age -r "$RCPT" -o "$OUT/plain.age" "$IN"
R[age_dec]=$(run age -d -i "$OUT/age.key" -o /dev/null "$OUT/plain.age")
rm -f "$OUT/plain.age"

echo "Vault throughput, $((BYTES / 1048576)) MiB file in tmpfs, output to /dev/null, $CORES cores, load average $(cut -d' ' -f1 /proc/loadavg) ($(date -u +%Y-%m-%d))"
echo "openssl speed -evp aes-256-gcm (1 MiB blocks, 1 core): $(awk -v o="$OSSL" 'BEGIN{printf "%.2f", o/1073741824}') GiB/s"
echo
echo "Per-core figures divide by the CPU time (user+sys) the process used, so they hold on a"
echo "busy machine; wall GiB/s does not. They include reading the input, which openssl speed"
echo "does not do: reading alone (cat to /dev/null) runs at $(read -r s u y _ <<< "${R[cat]}"; awk -v b="$BYTES" -v u="$u" -v y="$y" 'BEGIN{printf "%.2f", b/(u+y+0.001)/1073741824}') GiB per CPU second here."
echo
echo "| operation | tool | threads | wall GiB/s | GiB/s per core used | % of openssl 1-core | × age (per core) | × age (wall) | peak RSS MiB |"
echo "|---|---|---|---|---|---|---|---|---|"
row() { # label tool threads key agekey
  local r=${R[$4]} a=${R[$5]}
  read -r s u y rss <<< "$r"
  read -r as au ay _ <<< "$a"
  awk -v b="$BYTES" -v s="$s" -v u="$u" -v y="$y" -v rss="$rss" -v o="$OSSL" \
    -v as="$as" -v au="$au" -v ay="$ay" -v l="$1" -v t="$2" -v n="$3" 'BEGIN{
      G=1073741824; if (u < 0.01) u = 0.01;
      pu=b/u/G; pc=b/(u+y)/G; ac=b/(au+ay)/G;
      printf "| %s | %s | %s | %.2f | %.2f | %.0f%% | %.1f× | %.1f× | %.0f |\n",
        l, t, n, b/s/G, pc, 100*pc*G/o, pc/ac, as/s, rss/1024 }'
}
row seal warden "1" seal1 age_enc
row seal warden "$CORES" sealN age_enc
row unseal warden "1" unseal1 age_dec
row unseal warden "$CORES" unsealN age_dec
row encrypt age "Go runtime" age_enc age_enc
row decrypt age "Go runtime" age_dec age_dec
