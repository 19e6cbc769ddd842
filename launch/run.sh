#!/usr/bin/env bash
# Installs the package into a virtualenv and runs the main job on the embedded default.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"
exec "$PY" -m alexnet_jax.summary --config=configs/paper.py "$@"
