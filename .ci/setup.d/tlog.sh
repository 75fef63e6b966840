#!/usr/bin/env bash
# warden-tlog interop peer: tlog-scales, an independent Python implementation of C2SP
# tlog-tiles / tlog-checkpoint / signed-note / tlog-proof (reader, writer, signer).
set -euo pipefail
if ! "$VENV/bin/python" -c "import tlog_scales.writer, tlog_scales.reader" >/dev/null 2>&1; then
  pip_install "tlog-scales==0.0.3"
fi
