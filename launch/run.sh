#!/usr/bin/env bash
# Installs the package into a virtualenv and runs the main job on the embedded default.
set -euo pipefail
# No extras (an empty first argument: `source` without one would give setup.sh this script's
# arguments, the flags meant for the run).
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh" ""
cd "$ROOT"
exec "$PY" -m alexnet_jax.main --config=configs/fashion_mnist.py \
  --workdir="${WORKDIR:-$ROOT/workdir/fashion_mnist}" "$@"
