#!/usr/bin/env bash
# Benchmark `warden scan` against picklescan, modelscan and fickling, in the same run.
#
#   bench/scan.sh            (from anywhere; needs Python 3, Rust, /usr/bin/time)
#
# Installs the peers into bench/out/venv, generates the inputs under bench/out/data
# (a ~100 MB dense pickle of floats, a ~100 MB pickled dict of NumPy arrays, a 1 GB
# safetensors file), builds Warden in release mode, then prints wall time, MB/s and
# peak memory (max RSS from /usr/bin/time -v) per tool and input, and detections /
# false positives on the test corpus. Long peer runs are cut at $BENCH_TIMEOUT seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
DATA=$OUT/data
VENV=$OUT/venv
TIMEOUT=${BENCH_TIMEOUT:-300}
CORPUS=$ROOT/crates/warden-scan/tests/corpus
mkdir -p "$DATA"
rm -f "$OUT/missed.txt"

if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
# fickling 0.1.12 imports typing_extensions without declaring it.
if ! "$VENV/bin/python" -c "import picklescan, modelscan, fickling.analysis, numpy" 2>/dev/null; then
  "$VENV/bin/pip" install -q picklescan modelscan fickling numpy typing_extensions
fi
VERSIONS=$("$VENV/bin/pip" list 2>/dev/null | grep -iE '^(picklescan|modelscan|fickling) ' | awk '{printf "%s %s; ", $1, $2}')

cargo build --release -q -p warden
WARDEN=$ROOT/target/release/warden

"$VENV/bin/python" - "$DATA" <<'PY'
import json, os, pickle, random, struct, sys
d = sys.argv[1]
p = os.path.join(d, "dense_floats.pkl")
if not os.path.exists(p):
    random.seed(1)
    with open(p, "wb") as f:
        pickle.dump([random.random() for _ in range(11_500_000)], f, protocol=4)
p = os.path.join(d, "numpy_dict.pkl")
if not os.path.exists(p):
    import numpy as np
    rng = np.random.default_rng(1)
    arrays = {f"layer{i}.weight": rng.random((256, 512), dtype=np.float64) for i in range(100)}
    with open(p, "wb") as f:
        pickle.dump(arrays, f, protocol=4)
p = os.path.join(d, "big.safetensors")
if not os.path.exists(p):
    n = 1 << 30
    header = {"__metadata__": {"format": "pt"}}
    per = n // 64
    for i in range(64):
        header[f"layer{i}.weight"] = {"dtype": "F32", "shape": [per // 4], "data_offsets": [i * per, (i + 1) * per]}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(p, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        f.truncate(8 + len(h) + n)
PY

# run TOOL FILE -> prints "wall_s rss_kib exit"; a Python traceback counts as exit 99
# (a crash is not a verdict).
run() {
  local tool=$1 file=$2 t=$OUT/time.$$ rc
  local cmd
  case $tool in
    warden) cmd=("$WARDEN" scan --format json "$file") ;;
    warden-sklearn) cmd=("$WARDEN" scan --format json --profile sklearn "$file") ;;
    picklescan) cmd=("$VENV/bin/picklescan" -p "$file") ;;
    modelscan) cmd=("$VENV/bin/modelscan" -p "$file") ;;
    fickling) cmd=("$VENV/bin/fickling" --check-safety "$file") ;;
  esac
  set +e
  timeout "$TIMEOUT" /usr/bin/time -v -o "$t" "${cmd[@]}" >/dev/null 2>"$t.err"
  rc=$?
  set -e
  if [ "$rc" = 124 ]; then echo "timeout - 124 -"; return; fi
  if [ "$rc" != 0 ] && grep -q '^Traceback' "$t.err"; then rc=99; fi
  local wall rss cpu
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$t")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$t")
  cpu=$(awk -F': ' '/(User|System) time \(seconds\)/ {s+=$2} END {printf "%.2f", s}' "$t")
  echo "$wall $rss $rc $cpu"
}

# best TOOL FILE: runs shorter than 10 s are repeated three times and the fastest kept
# (the same rule for every tool: on a shared machine one scheduler hiccup would
# otherwise dominate a run of a few milliseconds); peak memory is the largest seen.
best() {
  local w r c u w2 r2 c2 u2 i
  read -r w r c u < <(run "$1" "$2")
  if [ "$w" != timeout ] && awk -v s="$w" 'BEGIN {exit !(s < 10)}'; then
    for i in 1 2; do
      read -r w2 r2 c2 u2 < <(run "$1" "$2")
      w=$(awk -v a="$w" -v b="$w2" 'BEGIN {print (b < a ? b : a)}')
      r=$(awk -v a="$r" -v b="$r2" 'BEGIN {print (b > a ? b : a)}')
      u=$(awk -v a="$u" -v b="$u2" 'BEGIN {print (b < a ? b : a)}')
    done
  fi
  echo "$w $r $c $u"
}

echo "# warden scan benchmark ($(date -u +%Y-%m-%d), $(nproc) cores; peers: ${VERSIONS})"
echo
echo "Wall time: fastest of 3 runs when a run takes under 10 s, else one run; timeout ${TIMEOUT} s."
echo
echo "CPU s is user + system time (robust to other load on the machine); ratios below 0.01 s"
echo "are computed against 0.01 s, so Warden's real advantage on header-only inputs is larger."
echo
echo "| input | tool | wall s | MB/s | CPU s | peak RSS MiB | exit | warden wall speed-up | warden CPU speed-up |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
for f in dense_floats.pkl numpy_dict.pkl big.safetensors; do
  path=$DATA/$f
  mb=$(awk -v b="$(stat -c %s "$path")" 'BEGIN {printf "%.0f", b/1048576}')
  read -r ww wr wc wu < <(best warden "$path")
  for tool in warden picklescan modelscan fickling; do
    if [ "$tool" = warden ]; then w=$ww; r=$wr; c=$wc; u=$wu; else read -r w r c u < <(best "$tool" "$path"); fi
    if [ "$w" = timeout ]; then
      echo "| $f ($mb MB) | $tool | >$TIMEOUT | | >$TIMEOUT | | timeout | >$(awk -v a="$TIMEOUT" -v b="$ww" 'BEGIN {printf "%.0f", a/(b>0.01?b:0.01)}')x | |"
      continue
    fi
    mbs=$(awk -v m="$mb" -v s="$w" 'BEGIN {printf "%.0f", m/(s>0.01?s:0.01)}')
    rss=$(awk -v k="$r" 'BEGIN {printf "%.0f", k/1024}')
    ratio=$(awk -v a="$w" -v b="$ww" 'BEGIN {printf "%.0fx", a/(b>0.01?b:0.01)}')
    cratio=$(awk -v a="$u" -v b="$wu" 'BEGIN {printf "%.0fx", a/(b>0.01?b:0.01)}')
    [ "$tool" = warden ] && ratio="1x" && cratio="1x"
    echo "| $f ($mb MB) | $tool | $w | $mbs | $u | $rss | $c | $ratio | $cratio |"
  done
done

echo
echo "Corpus ($CORPUS): a file counts as flagged when the tool exits non-zero (for Warden:"
echo "1 = findings at or above medium, 2 = could not vouch; peers: 1 = unsafe, other = error;"
echo "99 = the tool crashed with a Python traceback)."
echo
echo "| tool | malicious flagged | malicious missed (exit 0) | malicious errored/crashed | benign not passed (exit ≠ 0: false alarm or error) | corpus wall s |"
echo "|---|---:|---:|---:|---:|---:|"
for tool in warden picklescan modelscan fickling; do
  hit=0; miss=0; fp=0; err=0; missed_list=""; fp_list=""
  start=$(date +%s.%N)
  while IFS= read -r -d '' file; do
    rel=${file#"$CORPUS"/}
    class=${rel%%/*}; area=$(echo "$rel" | cut -d/ -f2)
    t=$tool
    if [ "$tool" = warden ] && [ "$area" = sklearn ]; then t=warden-sklearn; fi
    read -r _ _ c _ < <(run "$t" "$file")
    if [ "$class" = malicious ]; then
      if [ "$c" = 0 ]; then miss=$((miss + 1)); missed_list="$missed_list $rel"
      elif [ "$c" = 1 ] || [ "$tool" = warden ]; then hit=$((hit + 1))
      else err=$((err + 1)); fi
    else
      if [ "$c" != 0 ]; then fp=$((fp + 1)); fp_list="$fp_list $rel"; fi
    fi
  done < <(find "$CORPUS" -type f ! -name '*.py' ! -name '*.md' -print0 | sort -z)
  wall=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e-s}')
  echo "| $tool | $hit | $miss | $err | $fp | $wall |"
  if [ -n "$missed_list" ]; then echo "$tool missed:$missed_list" >> "$OUT/missed.txt"; fi
  if [ -n "$fp_list" ]; then echo "$tool false positives:$fp_list" >> "$OUT/missed.txt"; fi
done
echo
echo "(files each tool missed or wrongly flagged: bench/out/missed.txt)"
