#!/usr/bin/env bash
# Installs the package with its test and export extras into a virtualenv and runs the test suite
# on CPU (the PyTorch export test runs where torch is installed, and skips otherwise).
# `--lowest` first: in .venv-lowest, the package's dependencies at the lowest versions it allows.
set -euo pipefail
if [ "${1:-}" = "--lowest" ]; then
  shift
  export ALEXNET_LOWEST=1
fi
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh" test,export
cd "$ROOT"
# The multi-device tests need 8 CPU devices; tests/conftest.py sets this before jax starts.
export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"
# One test worker per core this process may run on, at most 4 (each holds a jax of its own);
# `-n 0` after these runs the suite in one process.
WORKERS="$(nproc)"
exec "$PY" -m pytest -q -ra --numprocesses="$(( WORKERS < 4 ? WORKERS : 4 ))" "$@"
