#!/usr/bin/env bash
# Gateway overhead: a zero-delay mock OpenAI upstream on loopback, measured directly,
# through nginx (plain proxy_pass with keepalive), through the LiteLLM proxy, and through
# Warden with everything on (TLS 1.3, API key, Cedar, limits, validation, minimisation,
# audit into the tamper-evident log). Load generator: wrk.
# Prints added p50/p99 at concurrency 1 and the highest RPS keeping p99 < 10 ms.
# Usage: bench/gateway.sh [seconds-per-run]   (needs: apt-get install wrk nginx;
#        LiteLLM is installed into bench/out/litellm-venv on first run)
# BENCH_MODE=sse asks every path for a streamed answer ("stream": true; the mock answers
# with a short SSE stream, which Warden minimises and screens event by event); the
# default, json, asks for a whole JSON completion.
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-8}
MODE=${BENCH_MODE:-json}
case "$MODE" in json|sse) ;; *) echo "BENCH_MODE must be json or sse" >&2; exit 2 ;; esac
OUT=bench/out/gateway; rm -rf "$OUT"; mkdir -p "$OUT"
command -v wrk >/dev/null || { echo "wrk missing: apt-get install wrk" >&2; exit 2; }
command -v nginx >/dev/null || { echo "nginx missing: apt-get install nginx" >&2; exit 2; }
# BENCH_PROFILE=dev measures the unoptimised debug build (only when time is short; the
# numbers then overstate Warden's overhead).
if [ "${BENCH_PROFILE:-release}" = dev ]; then
  cargo build -q -p warden -p warden-gateway --bin warden --example mock_upstream; BIN=target/debug
else
  cargo build -q --release -p warden -p warden-gateway --bin warden --example mock_upstream; BIN=target/release
fi
MOCK=$BIN/examples/mock_upstream
# BENCH_SKIP_LITELLM=1 leaves LiteLLM out (its install takes minutes). WARDEN_BENCH_BIN=PATH
# serves with another warden binary (to compare two builds alternately in one sitting).
LITELLM=$([ "${BENCH_SKIP_LITELLM:-0}" = 1 ] && echo 0 || echo 1)
if [ "$LITELLM" = 1 ] && [ ! -x bench/out/litellm-venv/bin/litellm ]; then
  python3 -m venv bench/out/litellm-venv
  bench/out/litellm-venv/bin/pip install -q 'litellm[proxy]'
fi
PIDS=()
# Wait for them: the gateway publishes its audit log on the way out.
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
wait_port() { for _ in $(seq 1 300); do (echo >/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.2; done; echo "port $1 never opened" >&2; exit 2; }

# Upstream.
$MOCK 19100 2>/dev/null & PIDS+=($!); wait_port 19100

# nginx: plain, and with TLS 1.3 (the same certificate as Warden's) for a like-for-like row.
H="$OUT/home"
# shellcheck source=bench/gateway-home.sh
. bench/gateway-home.sh
KEY=$(gateway_home "$H" 19443 19444 19100 $BIN)
nginx_conf "$OUT" "$H" 19100 19101 19103
nginx -c "$PWD/$OUT/nginx.conf" -g 'daemon off;' & PIDS+=($!); wait_port 19101

# LiteLLM.
if [ "$LITELLM" = 1 ]; then
cat > "$OUT/litellm.yaml" <<YML
model_list:
  - model_name: bench
    litellm_params: { model: openai/bench, api_base: "http://127.0.0.1:19100/v1", api_key: "none" }
YML
LKEY=sk-bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
LITELLM_MASTER_KEY=$LKEY bench/out/litellm-venv/bin/litellm --config "$OUT/litellm.yaml" --port 19102 --host 127.0.0.1 >"$OUT/litellm.log" 2>&1 & PIDS+=($!); wait_port 19102
fi

# Warden, full policy (home made above).
WARDEN_LOG=warn "${WARDEN_BENCH_BIN:-$BIN/warden}" --home "$H" serve >"$OUT/warden.log" 2>&1 & PIDS+=($!); wait_port 19443

BODY='{"model":"bench","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}'
[ "$MODE" = sse ] && BODY='{"model":"bench","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16,"stream":true}'
cat > "$OUT/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("AUTH")
done = function(summary, latency, requests)
  io.write(string.format("RESULT %.1f %.3f %.3f %d\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout))
end
LUA
run() { # url conns -> "rps p50ms p99ms"; answers that were not 2xx (or failed) are reported
  local auth=$KEY; [ "$1" = "${URL[litellm]}" ] && auth=${LKEY:-}
  local r; r=$(AUTH=$auth nice -n 10 wrk -t1 -c"$2" -d"${D}s" --timeout 10s -s "$OUT/post.lua" "$1" 2>/dev/null | awk '/^RESULT/ {print $2, $3, $4, $5}')
  read -r rps p50 p99 bad <<<"$r"
  [ "${bad:-0}" -gt 0 ] && echo "WARNING: $1 at c=$2: $bad answers were not 2xx or failed (counted in RPS)" >&2
  echo "$rps $p50 $p99"
}
declare -A URL=(
  [direct]=http://127.0.0.1:19100/v1/chat/completions
  [nginx]=http://127.0.0.1:19101/v1/chat/completions
  [nginx-tls]=https://localhost:19103/v1/chat/completions
  [litellm]=http://127.0.0.1:19102/v1/chat/completions
  [warden]=https://localhost:19443/v1/chat/completions
)
declare -A P50 P99 BEST
PATHS="direct nginx nginx-tls"; [ "$LITELLM" = 1 ] && PATHS="$PATHS litellm"; PATHS="$PATHS warden"
for t in $PATHS; do
  # Warm-up (LiteLLM's first requests take seconds; an empty run prints no result).
  D=3 run "${URL[$t]}" 1 >/dev/null || true
  read -r _ p50 p99 < <(run "${URL[$t]}" 1)
  P50[$t]=$p50; P99[$t]=$p99
  best=0
  for c in 1 2 4 8 16 32 64; do
    read -r rps _ q99 < <(run "${URL[$t]}" "$c")
    if awk "BEGIN{exit !($q99 < 10)}"; then best=$(awk "BEGIN{print ($rps > $best) ? $rps : $best}"); else break; fi
  done
  BEST[$t]=$best
done
echo
echo "| path | p50 ms | p99 ms | added p50 ms | added p99 ms | max RPS (p99 < 10 ms) | RPS vs nginx | RPS vs nginx TLS | RPS vs LiteLLM |"
echo "|---|---|---|---|---|---|---|---|---|"
for t in $PATHS; do
  awk -v t="$t" -v a="${P50[$t]}" -v b="${P99[$t]}" -v da="${P50[direct]}" -v db="${P99[direct]}" \
      -v r="${BEST[$t]}" -v rn="${BEST[nginx]}" -v rt="${BEST[nginx-tls]}" -v rl="${BEST[litellm]:-0}" 'BEGIN{
    printf "| %s | %.3f | %.3f | %.3f | %.3f | %.0f | %.2f× | %.2f× | %s |\n", t, a, b, a-da, b-db, r, (rn>0? r/rn : 0),
      (rt>0? r/rt : 0), (rl>0 ? sprintf("%.1f×", r/rl) : "n/a") }'
done
echo
echo "(${BENCH_PROFILE:-release} build; wrk -t1, ${D}s per run, mock upstream $MODE mode; Warden: TLS 1.3 + API key + Cedar + limits + validation + minimisation + audit log; nginx-tls: TLS 1.3 proxy_pass; the others plain HTTP)"
