#!/usr/bin/env bash
# Durable append throughput and time-to-acknowledge of the audit log (warden-tlog),
# for 1 KiB entries with 1, 16 and 256 concurrent writers, next to this machine's raw
# fdatasync rate (the floor every durable log pays), and full verification time.
#   bench/tlog.sh [ENTRIES] [VERIFY_ENTRIES]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
NV=${2:-1000000}
nice -n 10 cargo build --release -q -p warden
W=target/release/warden
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export WARDEN_HOME="$T/home"
$W audit keygen bench.example/audit >/dev/null
python3 -c "
import json,sys
pad='x'*1000
for i in range($N): sys.stdout.write(json.dumps({'i':i,'pad':pad})+'\n')" > "$T/entries.jsonl"

# Raw fdatasync rate: 4 KiB writes with O_DSYNC on the same file system.
start=$(date +%s.%N)
dd if=/dev/zero of="$T/dsync" bs=4k count=500 oflag=dsync status=none
end=$(date +%s.%N)
FSYNC=$(python3 -c "print(round(500/($end-$start)))")

printf '| writers | entries | durable appends/s | p50 ack (ms) | p99 ack (ms) |\n|---:|---:|---:|---:|---:|\n'
for w in 1 16 256; do
  rm -rf "$WARDEN_HOME/audit"
  n=$N; [ "$w" = 1 ] && n=$(( N < 2000 ? N : 2000 ))
  s=$(head -n "$n" "$T/entries.jsonl" | $W audit append --writers "$w" --stats 2>&1 >/dev/null | tail -1)
  eval "$(echo "$s" | tr ' ' '\n' | grep -E '^(appends_per_s|p50_ms|p99_ms)=')"
  printf '| %s | %s | %s | %s | %s |\n' "$w" "$n" "$appends_per_s" "$p50_ms" "$p99_ms"
done
echo
echo "raw fdatasync (dd oflag=dsync, 4 KiB): $FSYNC/s"

# The code's own ceiling without a disk: the same runs on tmpfs (NOT durable; shows how
# much of the cost above is the disk's).
if [ -d /dev/shm ]; then
  S=$(mktemp -d /dev/shm/tlog-bench.XXXXXX)
  echo
  printf '| writers (tmpfs, not durable) | entries | appends/s | p50 ack (ms) | p99 ack (ms) |\n|---:|---:|---:|---:|---:|\n'
  for w in 1 16 256; do
    rm -rf "$S/audit"
    s=$(head -n "$N" "$T/entries.jsonl" | $W audit append --log "$S/audit" --writers "$w" --stats 2>&1 >/dev/null | tail -1)
    eval "$(echo "$s" | tr ' ' '\n' | grep -E '^(appends_per_s|p50_ms|p99_ms)=')"
    printf '| %s | %s | %s | %s | %s |\n' "$w" "$N" "$appends_per_s" "$p50_ms" "$p99_ms"
  done
  rm -rf "$S"
fi

# Verification of a large log of small JSON entries. Built on tmpfs when available
# (appending a million entries durably on a slow disk takes minutes), then copied to
# the disk and verified there.
B=$T; [ -d /dev/shm ] && B=$(mktemp -d /dev/shm/tlog-build.XXXXXX)
python3 -c "
import sys
for i in range($NV): sys.stdout.write('{\"i\":%d}\n' % i)" | $W audit append --log "$B/big" --writers 256 >/dev/null
rm -rf "$WARDEN_HOME/audit"
cp -r "$B/big" "$WARDEN_HOME/audit"
[ "$B" != "$T" ] && rm -rf "$B"
start=$(date +%s.%N)
$W audit verify >/dev/null
end=$(date +%s.%N)
echo "verify $NV entries (every bundle, tile and the signature): $(python3 -c "print(round($end-$start,2))") s"
