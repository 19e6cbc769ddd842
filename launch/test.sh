#!/usr/bin/env bash
# Installs the package with its test extras into a virtualenv and runs the test suite on CPU.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh" test
cd "$ROOT"
# The multi-device tests need 8 CPU devices; tests/conftest.py sets this before jax starts.
export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"
exec "$PY" -m pytest -q -ra "$@"
