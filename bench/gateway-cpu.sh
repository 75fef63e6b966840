#!/usr/bin/env bash
# Native CPU (user + system, all threads) per request of the given `warden` binary, as
# part 2 of bench/gateway-instr.sh, so two builds can be run alternately on a noisy
# machine. Needs the mock upstream built (bench/gateway-instr.sh builds it).
# Usage: bench/gateway-cpu.sh WARDEN_BINARY [REQUESTS] [CONNECTIONS]   (10000, 4)
# WARDEN_BINARY may also be `nginx` or `nginx-tls`: the same client through nginx (one
# worker, plain proxy_pass with keepalive, as in bench/gateway.sh; nginx-tls terminates
# TLS 1.3 with the same certificate), CPU of the master and its worker, for a yardstick.
# GW_CPU_STRACE=1 counts system calls per request (strace -c) instead of CPU time.
# GW_CPU_OUT=DIR puts the gateway's home (and so its audit log) in DIR instead of
# bench/out/gateway-cpu, e.g. /dev/shm/gwcpu to see what the log's fsyncs cost.
set -euo pipefail
WB=${1:?usage: bench/gateway-cpu.sh WARDEN_BINARY [REQUESTS] [CONNECTIONS]}; N=${2:-10000}; C=${3:-4}
case "$WB" in nginx|nginx-tls) NGINX=$WB ;; *) NGINX=; WB=$(realpath "$WB") ;; esac
cd "$(dirname "$0")/.."
BIN=target/release
OUT=${GW_CPU_OUT:-bench/out/gateway-cpu}; rm -rf "$OUT"; mkdir -p "$OUT"
# shellcheck source=bench/gateway-home.sh
. bench/gateway-home.sh
PIDS=()
# Wait for them: the gateway publishes its audit log on the way out.
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
wait_port() { for _ in $(seq 1 600); do (echo >/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.2; done; exit 2; }
UP=19300 PORT=19643 APORT=19644
bench_gateway_env $UP $PORT $APORT
# BENCH_MODE=sse asks for the mock's SSE stream ("stream": true) instead of a JSON answer.
STREAM=$([ "${BENCH_MODE:-json}" = sse ] && echo stream || true)
client() { python3 bench/gateway_client.py "$URL" "$KEY" "$H/tls.pem" "$1" "$C" $STREAM; }
if [ -n "$NGINX" ]; then
  nginx_conf "$OUT" "$H" $UP 19645 19646
  nginx -c "$PWD/$OUT/nginx.conf" -g 'daemon off;' & WPID=$!; PIDS+=($WPID)
  wait_port 19645
  if [ "$NGINX" = nginx ]; then URL=http://127.0.0.1:19645/v1/chat/completions; else URL=https://localhost:19646/v1/chat/completions; fi
else
  WARDEN_LOG=warn $WB --home "$H" serve >"$OUT/warden.log" 2>&1 & WPID=$!; PIDS+=($WPID)
  wait_port $PORT
fi
client 500 >/dev/null
TICK=$(getconf CLK_TCK)
# Context switches of all the gateway's threads (a thread that blocks and is woken
# again costs two; the count is far steadier than CPU time on a shared machine).
# The process and, for nginx, its worker (its children; Warden has none).
procs() { echo "$WPID"; pgrep -P "$WPID" || true; }
switches() { for p in $(procs); do cat /proc/"$p"/task/*/status 2>/dev/null; done | awk '/^(non)?voluntary_ctxt_switches/ {n += $2} END {print n}'; }
cpu() { for p in $(procs); do awk '{print $14, $15}' /proc/"$p"/stat; done | awk '{u += $1; s += $2} END {print u, s}'; }
read -r u0 s0 < <(cpu)
x0=$(switches)
if [ -n "${GW_CPU_STRACE:-}" ]; then
  # System calls per request instead (strace slows every call, so no CPU figures).
  strace -c -f -o "$OUT/strace.txt" -p "$(procs | paste -sd,)" 2>/dev/null & SP=$!
  sleep 1
  client "$N" >/dev/null
  kill -INT "$SP"; wait "$SP" || true
  awk -v n="$N" -v b="$WB" '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" {
      c[$NF] = $4 } END { printf "%s system calls per request:", b;
      for (k in c) if (c[k] / n >= 0.05) printf " %s %.2f", k, c[k] / n; printf "\n" }' "$OUT/strace.txt"
  exit 0
fi
client "$N" >/dev/null
sleep 0.5
read -r u1 s1 < <(cpu)
x1=$(switches)
awk -v n="$N" -v t="$TICK" -v u="$((u1-u0))" -v s="$((s1-s0))" -v x="$((x1-x0))" -v b="$WB" 'BEGIN{ printf "%s user %.1f us sys %.1f us total %.1f us switches/request %.2f\n", b, u/t/n*1e6, s/t/n*1e6, (u+s)/t/n*1e6, x/n }'
