#!/usr/bin/env bash
# Where the gateway's per-request CPU goes, in numbers that a busy machine does not blur:
#  1. user-space instructions per request of `warden serve` (everything on: TLS 1.3, API
#     key, Cedar, limits, validation, minimisation, audit log) under valgrind's callgrind,
#     counted over exactly REQUESTS keep-alive requests after a warm-up, with the top
#     functions (inclusive) in bench/out/gateway-instr/top.txt;
#  2. CPU time (user + system, all threads, from /proc) per request of the same gateway
#     running natively, which also counts the kernel's share (TLS records, sockets, the
#     audit log's fsyncs) that callgrind does not see.
# Usage: [BENCH_MODE=sse] bench/gateway-instr.sh [REQUESTS] [CONNECTIONS]   (defaults 2000 and 4)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
C=${2:-4}
command -v valgrind >/dev/null || { echo "valgrind missing: apt-get install valgrind" >&2; exit 2; }
BIN=target/release
cargo build -q --release -p warden -p warden-gateway --bin warden --example mock_upstream
OUT=bench/out/gateway-instr; rm -rf "$OUT"; mkdir -p "$OUT"
# shellcheck source=bench/gateway-home.sh
. bench/gateway-home.sh
PIDS=()
# Wait for them: the gateway publishes its audit log on the way out.
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
wait_port() { for _ in $(seq 1 600); do (echo >/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.2; done; echo "port $1 never opened" >&2; exit 2; }
UP=19200 PORT=19543 APORT=19544
bench_gateway_env $UP $PORT $APORT
# BENCH_MODE=sse asks for the mock's SSE stream ("stream": true) instead of a JSON answer.
STREAM=$([ "${BENCH_MODE:-json}" = sse ] && echo stream || true)
client() { python3 bench/gateway_client.py "$URL" "$KEY" "$H/tls.pem" "$1" "$C" $STREAM; }

# 1. Instructions (callgrind).
WARDEN_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" \
  $BIN/warden --home "$H" serve >"$OUT/warden-cg.log" 2>&1 & VPID=$!; PIDS+=($VPID)
wait_port $PORT
client 200
callgrind_control -z $VPID >/dev/null
client "$N"
callgrind_control -d $VPID >/dev/null
sleep 1
kill $VPID; wait $VPID 2>/dev/null || true
DUMP=$(ls "$OUT"/cg.out.* | sort -V | head -1)
IR=$(callgrind_annotate "$DUMP" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1; exit}')
{ callgrind_annotate --inclusive=yes "$DUMP" 2>/dev/null || true; } > "$OUT/annotate.txt"; head -80 "$OUT/annotate.txt" > "$OUT/top.txt"

# 2. CPU time natively (the same measurement as bench/gateway-cpu.sh, on this build).
kill "${PIDS[@]}" 2>/dev/null || true; PIDS=()
awk -v ir="$IR" -v n="$N" -v c="$C" 'BEGIN{
  printf "instructions/request (user space, callgrind, %d requests, %d connections): %.0f\n", n, c, ir/n }'
printf 'CPU/request (native, %d requests): ' "$((N * 10))"
bench/gateway-cpu.sh "$BIN/warden" "$((N * 10))" "$C" | sed 's/^[^ ]* //'
echo "top functions: $OUT/top.txt"
