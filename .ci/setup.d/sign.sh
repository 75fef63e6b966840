#!/usr/bin/env bash
# warden-sign interop tests: the OpenSSF Model Signing reference tool (`model_signing`
# CLI and Python API, with pyOpenSSL for its certificate verifier) in $VENV, and the
# openssl CLI (SEC1 key generation in one test; hashing floor in bench/sign.sh).
# Idempotent: does nothing when everything is present.
set -euo pipefail
if ! command -v openssl >/dev/null 2>&1; then
  apt_install openssl
fi
if ! "$VENV/bin/python" -c 'import model_signing, OpenSSL' >/dev/null 2>&1 \
   || [ ! -x "$VENV/bin/model_signing" ]; then
  pip_install 'model-signing>=1.1,<2' pyOpenSSL
fi
